"""The README's main job, offline: the any-size demo, then SPP-net trained on
mnist-scenes (real MNIST handwriting in scenes of many sizes) with multi-size
training, evaluated on every view.

    python -m recipes.main [--epochs 8] [--out outputs]
"""

import argparse
import os

from recipes import demo
from recipes import train_classifier


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--out", default="outputs")
    args = p.parse_args(argv)
    print("== 1/2: one fixed-length representation for every input size\n", flush=True)
    code = demo.main(["--out", os.path.join(args.out, "demo")])
    if code:
        return code
    print("\n== 2/2: ZF-5 + SPP, multi-size training (112/90) on mnist-scenes\n", flush=True)
    return train_classifier.main(
        ["--dataset", "mnist-scenes", "--backbone", "zf5", "--head", "spp", "--epochs", str(args.epochs),
         "--out", os.path.join(args.out, "classifier"), "--verbose", "2"]
    )


if __name__ == "__main__":
    raise SystemExit(main())
