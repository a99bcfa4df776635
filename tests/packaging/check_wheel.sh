#!/usr/bin/env bash
# The wheel as a user installs it, run from outside the checkout (CI: `bash
# scripts/run.sh package`, after set-up made .venv):
#   1. build it from the tracked and untracked-but-not-ignored files (no stale build/);
#   2. check that it holds keras_spp and keras_spp_cli only (recipes/ and export/
#      inside keras_spp_cli, no top-level `recipes` or `export`);
#   3. a fresh venv WITHOUT TensorFlow: Keras, JAX and numpy at the pinned versions,
#      the wheel with --no-deps; a SpatialPyramidPooling layer, RoI pooling and an
#      spp_classifier forward pass on JAX; keras_spp.data's and the command's refusals;
#   4. a venv WITH TensorFlow (.venv's packages, the wheel installed into it):
#      `keras-spp COMMAND --help` for every command, and train-classifier for one
#      epoch on a tiny image folder.
# Everything, pip's cache included, lives in one folder under /tmp, removed at the end
# (KERAS_SPP_KEEP=1 keeps it); KERAS_SPP_PIP_CACHE moves pip's cache (default under
# /tmp, kept between runs so that JAX is downloaded once).
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
python=$repo/.venv/bin/python
[ -x "$python" ] || { echo "check_wheel: no .venv; run bash scripts/setup_env.sh first" >&2; exit 1; }
git rev-parse --is-inside-work-tree >/dev/null 2>&1 \
  || { echo "check_wheel: $repo is not a git checkout; the wheel is built from its tracked files" >&2; exit 1; }
export PIP_CACHE_DIR=${KERAS_SPP_PIP_CACHE:-/tmp/keras_spp-pip-cache}
export PIP_DISABLE_PIP_VERSION_CHECK=1 TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
work=$(mktemp -d /tmp/keras_spp-wheel.XXXXXX)
[ "${KERAS_SPP_KEEP:-0}" = 1 ] || trap 'rm -rf "$work"' EXIT
step() { echo "== check_wheel (${SECONDS}s): $*"; }

step "build the wheel ($work)"
mkdir "$work/src"
git ls-files -co --exclude-standard -z | tar --null -T - -cf - | tar -xf - -C "$work/src"
"$python" -m pip wheel --quiet --no-deps --no-build-isolation "$work/src" -w "$work/dist"
wheel=$(ls "$work"/dist/keras_spp-*.whl)
"$python" - "$wheel" <<'EOF'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
tops = sorted({n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")})
assert tops == ["keras_spp", "keras_spp_cli"], f"the wheel's top-level names: {tops}"
for needed in ("keras_spp_cli/_commands/recipes/train_classifier.py", "keras_spp_cli/_commands/export/serving_check.py"):
    assert needed in names, f"{needed} is not in the wheel"
entry_points = zipfile.ZipFile(sys.argv[1]).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
assert "keras-spp = keras_spp_cli.cli:main" in entry_points, entry_points
print(f"{len(names)} files; top level: {', '.join(tops)}")
EOF

cd "$work"  # every run below is outside the checkout

step "a venv without TensorFlow: keras, jax[cpu], numpy (scripts/constraints.txt) and the wheel"
"$python" -m venv "$work/notf"
"$work/notf/bin/python" -m pip install --quiet -c "$repo/scripts/constraints.txt" keras "jax[cpu]" numpy
"$work/notf/bin/python" -m pip install --quiet --no-deps "$wheel"
KERAS_BACKEND=jax JAX_PLATFORMS=cpu "$work/notf/bin/python" - <<'EOF'
import importlib.util, sys
assert importlib.util.find_spec("tensorflow") is None, "this venv must not have TensorFlow"
import keras, numpy as np
import keras_spp
from keras_spp.layers import RoiPyramidPooling, SpatialPyramidPooling
from keras_spp.models import backbone, spp_classifier
assert keras.backend.backend() == "jax" and keras_spp.__file__.startswith(sys.prefix), keras_spp.__file__
pooled = SpatialPyramidPooling((4, 2, 1))(np.random.rand(2, 13, 17, 8).astype("float32"))
assert tuple(pooled.shape) == (2, 8 * 21) and type(pooled).__module__.startswith("jax"), type(pooled)
model = spp_classifier(backbone("zf5", width=0.125), num_classes=3, fc_units=16)
for shape in ((1, 100, 120, 3), (2, 161, 97, 3)):
    probabilities = keras.ops.convert_to_numpy(model(np.random.rand(*shape).astype("float32") * 255))
    assert probabilities.shape == (shape[0], 3) and np.allclose(probabilities.sum(-1), 1, atol=1e-5)
boxes = np.array([[0, 0, 30, 40], [8, 8, 60, 90]], "float32")
rois = RoiPyramidPooling((2, 1))(np.random.rand(1, 6, 8, 4).astype("float32"), boxes, np.array([0, 0]))
assert tuple(rois.shape) == (2, 20), rois.shape
try:
    keras_spp.data
except ModuleNotFoundError as e:
    assert str(e).startswith("keras_spp.data needs TensorFlow installed"), e
else:
    raise AssertionError("keras_spp.data imported without TensorFlow")
assert "tensorflow" not in sys.modules
print("JAX without TensorFlow: SpatialPyramidPooling", tuple(pooled.shape), "spp_classifier, RoiPyramidPooling ok")
EOF
"$work/notf/bin/keras-spp" --help | grep -q "train-classifier"
set +e
KERAS_BACKEND=jax "$work/notf/bin/keras-spp" train-classifier --help 2>"$work/refusal.txt"
code=$?
set -e
[ "$code" = 1 ] && grep -q "keras-spp train-classifier: needs TensorFlow" "$work/refusal.txt" || {
  echo "check_wheel: keras-spp train-classifier without TensorFlow gave exit $code:" >&2
  cat "$work/refusal.txt" >&2
  exit 1
}

step "a venv with TensorFlow (.venv's packages) and the wheel"
# `python -m venv --system-site-packages` would add the base interpreter's packages,
# not .venv's: a .pth line adds .venv's site-packages after the venv's own (its .pth
# files, the editable install of this checkout among them, are not run).
"$python" -m venv "$work/tf"
tf_site=$("$work/tf/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
"$python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' >"$tf_site/keras_spp_project_venv.pth"
"$work/tf/bin/python" -m pip install --quiet --no-deps "$wheel"
"$work/tf/bin/python" - <<'EOF'
import importlib.util, sys
import keras_spp, keras_spp_cli
for module in (keras_spp, keras_spp_cli):
    assert module.__file__.startswith(sys.prefix), f"{module.__name__} comes from {module.__file__}"
for generic in ("recipes", "export"):
    assert importlib.util.find_spec(generic) is None, f"the install made a top-level {generic!r}"
EOF
keras_spp=$work/tf/bin/keras-spp
for command in main demo train-classifier ablation train-detector detect export verify client; do
  "$keras_spp" "$command" --help >"$work/help.txt" 2>&1 || { cat "$work/help.txt" >&2; exit 1; }
  grep -q "^usage: keras-spp $command " "$work/help.txt" || { cat "$work/help.txt" >&2; exit 1; }
  echo "keras-spp $command --help: ok"
done
"$work/tf/bin/python" - <<'EOF'
import os, numpy as np
from PIL import Image
rng = np.random.default_rng(0)
for split, count in (("train", 12), ("validation", 6), ("test", 6)):
    for i in range(count):
        label = ("red", "green", "blue")[i % 3]
        image = rng.integers(0, 90, size=(int(rng.integers(40, 90)), int(rng.integers(40, 90)), 3)).astype(np.uint8)
        image[..., i % 3] += 160
        os.makedirs(f"colours/{split}/{label}", exist_ok=True)
        Image.fromarray(image).save(f"colours/{split}/{label}/{i:03d}.png")
EOF
"$keras_spp" train-classifier --dataset folder:colours --width 0.125 --fc-units 16 --levels 2,1 --batch-size 4 \
  --min-side 48 --sizes 40 --epochs 1 --max-eval 6 --views center --out run --verbose 0 >"$work/train.txt" 2>&1 \
  || { tail -30 "$work/train.txt" >&2; exit 1; }
"$work/tf/bin/python" - <<'EOF'
import json, os
results = json.load(open("run/results.json"))
assert [row["epoch"] for row in results["history"]] == [0], results["history"]
assert set(results["evaluation"]) == {"center"} and results["evaluation"]["center"]["examples"] == 6, results
assert results["classes"] == ["blue", "green", "red"], results["classes"]
print(f"keras-spp train-classifier, 1 epoch, run from {os.getcwd()}: centre top-1",
      results["evaluation"]["center"]["top1"])
EOF
[ -s run/model.keras ] || { echo "check_wheel: train-classifier wrote no run/model.keras" >&2; exit 1; }
step "passed"
