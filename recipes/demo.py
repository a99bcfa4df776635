"""Any image size in, one fixed-length representation out.

Builds a ZF-5 network with the SPP head (random weights: the point is the shapes),
feeds it real photos shipped with scikit-image at several sizes and aspect ratios,
and shows that conv5 changes size with the image while the SPP output does not.
Writes a table to stdout, ``demo.json`` and ``demo.png`` to ``--out``.

    python -m recipes.demo --out outputs/demo
"""

import argparse
import json
import os
import time

import numpy as np

from recipes import arguments

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")
# (name, target (height, width)): squares at the paper's training sizes, the
# full-image view at min side 256, and strongly elongated crops.
VIEWS = (
    ("180x180", (180, 180)),
    ("224x224", (224, 224)),
    ("min side 256", None),
    ("tall 320x160", (320, 160)),
    ("wide 150x450", (150, 450)),
)


def load_photos():
    from skimage import data

    return {name: getattr(data, name)()[..., :3] for name in PHOTOS}


def make_view(image, size):
    import tensorflow as tf

    h, w = image.shape[:2]
    if size is None:
        scale = 256 / min(h, w)
        size = (round(h * scale), round(w * scale))
    else:
        # Centre crop to the target aspect ratio, then resize.
        target = size[0] / size[1]
        ch, cw = (h, round(h / target)) if h / w < target else (round(w * target), w)
        ch, cw = min(ch, h), min(cw, w)
        y, x = (h - ch) // 2, (w - cw) // 2
        image = image[y : y + ch, x : x + cw]
    resized = tf.image.resize(image.astype(np.float32), size, antialias=True)
    return resized.numpy()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--out", type=arguments.output_dir, default="outputs/demo", help="folder for demo.json and demo.png"
    )
    parser.add_argument("--levels", type=arguments.int_list(), default="6,3,2,1", help="pyramid levels, bins per side")
    parser.add_argument("--width", type=arguments.positive_float, default=1.0, help="ZF-5 filter multiplier")
    args = parser.parse_args(argv)
    levels = args.levels

    import keras
    from tqdm import tqdm

    from keras_spp.layers import SpatialPyramidPooling
    from keras_spp.models import backbone

    keras.utils.set_random_seed(0)
    conv = backbone("zf5", width=args.width)
    spp = SpatialPyramidPooling(levels)
    photos = load_photos()
    rows = []
    vectors = {}
    for name, image in tqdm(photos.items(), desc="photos", unit="photo"):
        for view, size in VIEWS:
            x = make_view(image, size)[np.newaxis] / 255.0
            start = time.perf_counter()
            conv5 = conv(x)
            vector = spp(conv5).numpy()[0]
            seconds = time.perf_counter() - start
            rows.append(
                {
                    "photo": name,
                    "view": view,
                    "input": list(x.shape[1:3]),
                    "conv5": list(conv5.shape[1:3]),
                    "length": int(vector.size),
                    "seconds": round(seconds, 4),
                }
            )
            vectors[(name, view)] = (x[0], vector)

    lengths = {row["length"] for row in rows}
    print(f"{'photo':<10} {'view':<14} {'input':>10} {'conv5':>8} {'SPP length':>10} {'ms':>7}")
    for row in rows:
        print(
            f"{row['photo']:<10} {row['view']:<14} {'x'.join(map(str, row['input'])):>10} "
            f"{'x'.join(map(str, row['conv5'])):>8} {row['length']:>10} {row['seconds'] * 1000:>7.1f}"
        )
    expected = conv.output_shape[-1] * sum(n * n for n in levels)
    same = lengths == {expected}
    print(
        f"\n{len(rows)} inputs, {len({tuple(r['input']) for r in rows})} distinct sizes, "
        f"{len({tuple(r['conv5']) for r in rows})} conv5 sizes -> SPP lengths {sorted(lengths)} "
        f"(expected {expected}: {'same for every size' if same else 'MISMATCH'})"
    )

    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "demo.json"), "w") as f:
        json.dump({"levels": levels, "expected_length": expected, "same_length": same, "rows": rows}, f, indent=1)
    _plot(vectors, rows, os.path.join(args.out, "demo.png"))
    print(f"wrote {args.out}/demo.json and {args.out}/demo.png")
    return 0 if same else 1


def _plot(vectors, rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["photo"] for r in rows))
    views = list(dict.fromkeys(r["view"] for r in rows))
    fig, axes = plt.subplots(
        len(names) + 1,
        len(views),
        figsize=(3.2 * len(views), 2.6 * len(names) + 2.2),
        gridspec_kw={"height_ratios": [1] * len(names) + [0.9]},
    )
    biggest = max(max(r["input"]) for r in rows)
    by_key = {(r["photo"], r["view"]): r for r in rows}
    for i, name in enumerate(names):
        for j, view in enumerate(views):
            ax = axes[i, j]
            image, _ = vectors[(name, view)]
            row = by_key[(name, view)]
            # Same pixel scale in every panel, so the sizes can be compared by eye.
            ax.imshow(np.clip(image, 0, 1), extent=(0, image.shape[1], image.shape[0], 0))
            ax.set_xlim(0, biggest)
            ax.set_ylim(biggest, 0)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(
                f"{'x'.join(map(str, row['input']))} -> conv5 {'x'.join(map(str, row['conv5']))}\n"
                f"SPP: {row['length']} values",
                fontsize=8,
            )
            if j == 0:
                ax.set_ylabel(name)
    gs = axes[-1, 0].get_gridspec()
    for ax in axes[-1]:
        ax.remove()
    ax = fig.add_subplot(gs[-1, :])
    strip = np.stack([vectors[(n, v)][1][:1200] for n in names for v in views])
    ax.imshow(strip / (strip.max(axis=1, keepdims=True) + 1e-9), aspect="auto", cmap="magma")
    ax.set_yticks(range(len(strip)))
    ax.set_yticklabels([f"{n} {v}" for n in names for v in views], fontsize=5)
    ax.set_xlabel("first 1200 of the SPP values (level 6, bins (0,0)..) - one row per input, every row the same length")
    fig.suptitle("ZF-5 + spatial pyramid pooling: any input size, one fixed-length vector", fontsize=12)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
