#!/usr/bin/env bash
# Creates .venv (Python 3.10+) and installs keras_spp with TensorFlow and the test
# tools. TensorFlow's flavour: KERAS_SPP_TF=cpu|gpu, else gpu where nvidia-smi sees
# a GPU and cpu (the small tensorflow-cpu wheel, no CUDA) elsewhere.
# Versions: those in scripts/constraints.txt (what the test suite passed with);
# KERAS_SPP_LATEST=1 skips them and takes the newest that setup.cfg allows. The
# pins were made on the Python named in the file; on another one they are skipped
# with a warning.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-}
if [ -z "$python" ]; then
  for candidate in python3.11 python3.12 python3.10 python3; do
    if command -v "$candidate" >/dev/null 2>&1; then python=$candidate; break; fi
  done
fi
[ -n "$python" ] || { echo "setup_env: no python3 found; install Python 3.11" >&2; exit 1; }

flavour=${KERAS_SPP_TF:-}
if [ -z "$flavour" ]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then flavour=gpu; else flavour=cpu; fi
fi
case "$flavour" in cpu|gpu) ;; *) echo "setup_env: KERAS_SPP_TF must be cpu or gpu, got '$flavour'" >&2; exit 1;; esac

[ -x .venv/bin/python ] || "$python" -m venv .venv

constraints=scripts/constraints.txt
versions=pinned
if [ "${KERAS_SPP_LATEST:-0}" = 1 ]; then
  versions=latest
else
  pinned_python=$(sed -n 's/^# python //p' "$constraints")
  venv_python=$(.venv/bin/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  if [ "$venv_python" != "$pinned_python" ]; then
    echo "setup_env: $constraints holds versions tested on Python $pinned_python, .venv has $venv_python: installing the newest allowed instead" >&2
    versions=latest
  fi
fi
pins=()
[ "$versions" = pinned ] && pins=(-c "$constraints")

# Reinstall only when the package's requirements, the pins, the flavour or the
# choice of pinned or latest change.
stamp=".venv/.keras_spp-$(cat setup.cfg pyproject.toml scripts/setup_env.sh "$constraints" | sha1sum | cut -c1-12)-$flavour-$versions"
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  if [ "$versions" = latest ]; then upgrade=(--upgrade --upgrade-strategy eager); else upgrade=(); fi
  .venv/bin/python -m pip install --quiet ${upgrade[@]+"${upgrade[@]}"} ${pins[@]+"${pins[@]}"} -e ".[$flavour,test]"
  # TF Serving's request protos (export/client.py). The wheel requires the
  # `tensorflow` distribution, which would install a second TensorFlow over
  # tensorflow-cpu; its real needs (grpcio, protobuf) come with TensorFlow.
  .venv/bin/python -m pip install --quiet ${upgrade[@]+"${upgrade[@]}"} ${pins[@]+"${pins[@]}"} --no-deps "tensorflow-serving-api>=2.16,<2.22"
  rm -f .venv/.keras_spp-*
  touch "$stamp"
fi
.venv/bin/python -c "from keras_spp.data.mnist import ensure_mnist; ensure_mnist()"
