"""The paper's classification ablation at small scale, on the offline default.

Trains, for each seed, three ZF-5 variants with identical everything else:
  * no SPP: the pool5 baseline (conv5 pooled to 6x6), single-size;
  * SPP, single-size;
  * SPP, multi-size (alternating epochs at the two sizes, the paper's 224/180);
and tests each on the centre crop and (SPP only) the full image. Writes
``results.json`` and a Markdown table (mean and spread over seeds) to --out and,
with --markdown, to a docs file.

    python -m recipes.ablation --seeds 0,1,2 --epochs 6 --markdown docs/results.md
"""

import argparse
import json
import os
import re
import subprocess
import sys
import time

import numpy as np

VARIANTS = {
    "no SPP (pool5), single-size": ["--head", "pool", "--sizes", "{large}"],
    "SPP, single-size": ["--head", "spp", "--sizes", "{large}"],
    "SPP, multi-size": ["--head", "spp", "--sizes", "{large},{small}"],
}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--large", type=int, default=112)
    p.add_argument("--small", type=int, default=90)
    p.add_argument("--max-train", type=int, default=None)
    p.add_argument("--out", default="outputs/ablation")
    p.add_argument("--markdown", default=None, help="also write the table to this Markdown file")
    p.add_argument("extra", nargs=argparse.REMAINDER, help="after --: more train_classifier arguments")
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    extra = [a for a in args.extra if a != "--"]
    runs = {}
    started = time.perf_counter()
    for seed in seeds:
        for name, variant in VARIANTS.items():
            out = os.path.join(args.out, f"{_slug(name)}-seed{seed}")
            cmd = [
                sys.executable,
                "-m",
                "recipes.train_classifier",
                "--seed",
                str(seed),
                "--epochs",
                str(args.epochs),
                "--views",
                "center,full",
                "--out",
                out,
                "--verbose",
                "2",
            ]
            cmd += [a.format(large=args.large, small=args.small) for a in variant] + extra
            if args.max_train:
                cmd += ["--max-train", str(args.max_train)]
            print(f"\n== {name}, seed {seed}: {' '.join(cmd[2:])}", flush=True)
            subprocess.run(cmd, check=True)
            with open(os.path.join(out, "results.json")) as f:
                runs.setdefault(name, []).append(json.load(f))
    table = summarise(runs)
    command = "python -m recipes.ablation " + " ".join(argv if argv is not None else sys.argv[1:])
    text = render(table, command, seeds, time.perf_counter() - started)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"table": table, "command": command}, f, indent=1)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text)
    print(text)
    return 0


def summarise(runs):
    table = {}
    for name, results in runs.items():
        row = {}
        for view in ("center", "full"):
            errors = [r["evaluation"][view]["top1_error_pct"] for r in results if view in r["evaluation"]]
            if errors:
                row[view] = {
                    "mean": float(np.mean(errors)),
                    "std": float(np.std(errors, ddof=1)) if len(errors) > 1 else 0.0,
                    "runs": errors,
                }
        row["train_seconds"] = float(np.mean([r["train_seconds"] for r in results]))
        row["examples"] = results[0]["evaluation"]["center"]["examples"]
        table[name] = row
    return table


def render(table, command, seeds, seconds):
    lines = [
        f"Command: `{command}` (seeds {', '.join(map(str, seeds))}; {seconds / 60:.0f} min in all).",
        "",
        "| top-1 error %, mean ± std over seeds (each seed) | centre crop | full image | train s/run |",
        "|---|---|---|---|",
    ]
    for name, row in table.items():
        cells = [
            f"{row[v]['mean']:.2f} ± {row[v]['std']:.2f} ({', '.join(f'{e:.1f}' for e in row[v]['runs'])})"
            if v in row
            else "n/a (fixed input size)"
            for v in ("center", "full")
        ]
        lines.append(f"| {name} | {cells[0]} | {cells[1]} | {row['train_seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def _slug(name):
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


if __name__ == "__main__":
    raise SystemExit(main())
