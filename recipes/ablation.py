"""The paper's classification claims at convergence, at small scale, resumable.

For one backbone, each variant and seed is a ``recipes.train_classifier`` run trained
until its validation loss stops improving (the rate 10x lower after 2 epochs without
gain, stop after ``--stop-patience``; at most ``--max-epochs``; no plateau counts
before the loss has fallen ``--start-gain`` below its first epoch's, since
mnist-scenes runs sit at chance level for a few epochs), then tested on the
centre crop, the full image and 10 views:

  * no SPP (pool5), single-size: conv5 pooled to 6x6 (flattened at 112 px);
  * SPP, single-size;
  * SPP, multi-size (alternating): epochs alternate between the two sizes (the
    paper's 224/180, here ``--large``/``--small``);
  * SPP, multi-size (random): each epoch at a random size in [small, large];
  * SPP, multi-size (alternating, enlarged): the controlled variant. The same
    ``--large`` crop alternates with itself enlarged by the same ratio,
    ``round(large * large / small)`` (139 for 112/90), and is tested at ``--large``
    like the single-size run. At 90 px the conv5 map of ZF-5 is 4x4, below the
    pyramid's finest level (6x6); at 112 and 139 it is 6x6 and 7x7. Only the second
    size changes against the alternating run, and only a second size is added against
    the single-size run;
  * SPP, multi-size (alternating), levels 4,2,1: the alternating run with a pyramid
    whose finest level fits the 4x4 map, so that no bin repeats a cell at 90 px.
    Only the pyramid changes against the alternating run.

Every finished run is appended to ``--results``/ablation-<backbone>.json (a list
``runs``: variant, seed, epochs, validation curve, test error per view) at once, so
one command finishes over several sittings: a recorded run is skipped, and a run cut
off mid-training resumes from its own backup (``train_classifier``'s). The summary
(mean ± std, each seed, epochs to plateau, a verdict per claim) goes to stdout and,
with ``--markdown``, to that file; ``--plot`` draws every run's validation curve and
each variant's test errors seed by seed as a PNG.

    python -m recipes.ablation --backbone zf5 --seeds 0,1,2 --max-train 3000 \\
        --markdown docs/ablation.md
    python -m recipes.ablation --backbone convnet5 --variants spp-single,spp-alternate ...
    python -m recipes.ablation --backbone zf5 --variants spp-alternate-enlarged ...  # same file
    python -m recipes.ablation --backbone zf5 --summary-only --plot ablation-zf5.png
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

from recipes import arguments

# name -> (slug, train_classifier flags); {large} and {small} are the sizes, {enlarged}
# is the large crop enlarged by large/small.
VARIANTS = {
    "no SPP (pool5), single-size": ("pool", ["--head", "pool", "--sizes", "{large}"]),
    "SPP, single-size": ("spp-single", ["--head", "spp", "--sizes", "{large}"]),
    "SPP, multi-size (alternating)": (
        "spp-alternate",
        ["--head", "spp", "--sizes", "{large},{small}", "--size-mode", "alternate"],
    ),
    "SPP, multi-size (random)": (
        "spp-random",
        ["--head", "spp", "--sizes", "{small},{large}", "--size-mode", "random"],
    ),
    "SPP, multi-size (alternating, enlarged)": (
        "spp-alternate-enlarged",
        ["--head", "spp", "--sizes", "{large},{enlarged}", "--size-mode", "alternate", "--crop", "{large}"],
    ),
    "SPP, multi-size (alternating), levels 4,2,1": (
        "spp-alternate-levels421",
        ["--head", "spp", "--levels", "4,2,1", "--sizes", "{large},{small}", "--size-mode", "alternate"],
    ),
}
VIEWS = ("center", "full", "ten_view")
# Each a train_classifier --seed; a seed twice would train one run twice.
_seeds = arguments.int_list(minimum=0, maximum=2**32 - 1)


def seed_list(text):
    seeds = _seeds(text)
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"takes comma-separated distinct seeds; got {text!r}")
    return seeds


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="zf5", choices=["zf5", "convnet5", "overfeat5", "overfeat7"])
    p.add_argument("--variants", default="all", help=f"'all' or slugs: {', '.join(s for s, _ in VARIANTS.values())}")
    p.add_argument("--seeds", type=seed_list, default="0,1,2")
    p.add_argument("--max-epochs", type=arguments.positive_int, default=40)
    p.add_argument(
        "--stop-patience",
        type=arguments.nonnegative_int,
        default=4,
        help="epochs without gain (a rate drop included; 0: run every --max-epochs)",
    )
    p.add_argument(
        "--start-gain",
        type=arguments.fraction,
        default=0.05,
        help="no plateau counts before the validation loss has fallen this fraction below its first epoch's",
    )
    p.add_argument("--large", type=arguments.positive_int, default=112)
    p.add_argument("--small", type=arguments.positive_int, default=90)
    p.add_argument("--width", type=arguments.positive_float, default=0.25)
    p.add_argument("--max-train", type=arguments.positive_int, default=None, help="the first N training examples")
    p.add_argument(
        "--results", type=arguments.output_dir, default="benchmarks/results", help="folder of ablation-<backbone>.json"
    )
    p.add_argument(
        "--out",
        type=arguments.output_dir,
        default="outputs/ablation",
        help="the runs' folders (models, backups, curves)",
    )
    p.add_argument(
        "--markdown", type=arguments.output_file, default=None, help="also write the summary to this Markdown file"
    )
    p.add_argument(
        "--plot",
        type=arguments.output_file,
        default=None,
        help="also draw the validation curves and test errors to this PNG",
    )
    p.add_argument("--summary-only", action="store_true", help="train nothing: summarise what is recorded")
    p.add_argument("extra", nargs=argparse.REMAINDER, help="after --: more train_classifier arguments")
    args = p.parse_args(argv)
    slugs = {slug: name for name, (slug, _) in VARIANTS.items()}
    chosen = list(slugs) if args.variants == "all" else [v for v in args.variants.split(",") if v]
    unknown = [v for v in chosen if v not in slugs]
    if unknown or not chosen:
        p.error(f"--variants: unknown {unknown}; accepted: all or {', '.join(slugs)}")
    args.variant_names = [slugs[v] for v in chosen]
    args.seed_list = list(args.seeds)
    args.extra = [a for a in args.extra if a != "--"]
    return args


def settings_of(args):
    """What every run of one results file shares; a file of other settings is refused."""
    return {
        "backbone": args.backbone,
        "width": args.width,
        "max_epochs": args.max_epochs,
        "stop_patience": args.stop_patience,
        "start_gain": args.start_gain,
        "sizes": [args.large, args.small],
        "max_train": args.max_train,
        "extra": args.extra,
    }


def main(argv=None):
    args = parse_args(argv)
    path = os.path.join(args.results, f"ablation-{args.backbone}.json")
    # A summary trains nothing, so it takes the file's settings, whatever they are.
    record = load_record(path, None if args.summary_only else settings_of(args))
    if not record["runs"] and args.summary_only:
        raise SystemExit(f"--summary-only: {path} records no runs; train some first (without --summary-only).")
    if not args.summary_only:
        check_runs(args)
    started = time.perf_counter()
    for seed in [] if args.summary_only else args.seed_list:
        for name in args.variant_names:
            if any(r["variant"] == name and r["seed"] == seed for r in record["runs"]):
                print(f"== {name}, seed {seed}: recorded in {path}, skipped", flush=True)
                continue
            record["runs"].append(train_one(args, name, seed))
            save_record(path, record)
    table = summarise(record["runs"])
    text = render(table, record["settings"], time.perf_counter() - started)
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text)
    if args.plot and record["runs"]:
        plot(record["runs"], table, record["settings"], args.plot)
    return 0


def train_one(args, name, seed):
    """One run, resumed from its backup if it has one: its entry for ``runs``."""
    slug, _ = VARIANTS[name]
    out = os.path.join(args.out, args.backbone, f"{slug}-seed{seed}")
    results_json = os.path.join(out, "results.json")
    if not os.path.isfile(results_json):
        cmd = [sys.executable, "-m", "recipes.train_classifier", *classifier_arguments(args, name, seed, out)]
        print(f"\n== {name}, seed {seed}: {' '.join(cmd[2:])}", flush=True)
        subprocess.run(cmd, check=True)
    with open(results_json) as f:
        return run_entry(name, seed, json.load(f))


def classifier_arguments(args, name, seed, out):
    """The ``recipes.train_classifier`` command line of one run."""
    _, flags = VARIANTS[name]
    cmd = ["--backbone", args.backbone, "--width", str(args.width)]
    cmd += ["--seed", str(seed), "--epochs", str(args.max_epochs), "--lr-schedule", "plateau"]
    cmd += ["--stop-patience", str(args.stop_patience), "--plateau-start-gain", str(args.start_gain)]
    cmd += ["--views", ",".join(VIEWS), "--out", out, "--verbose", "2"]
    sizes = {"large": args.large, "small": args.small, "enlarged": round(args.large * args.large / args.small)}
    cmd += [a.format(**sizes) for a in flags] + args.extra
    if args.max_train:
        cmd += ["--max-train", str(args.max_train)]
    return cmd


def check_runs(args):
    """Parses every run's command line as train_classifier will, so that a bad flag after
    ``--`` ends the sitting before its first run trains, not after."""
    from recipes import train_classifier

    for name in args.variant_names:
        train_classifier.parse_args(classifier_arguments(args, name, args.seed_list[0], args.out))


def run_entry(name, seed, results):
    """The recorded form of one train_classifier ``results.json``."""
    curve = [
        {
            k: float(row[k])
            for k in ("epoch", "val_loss", "val_accuracy", "learning_rate")
            if row.get(k) not in (None, "")
        }
        for row in results["history"]
    ]
    losses = [row["val_loss"] for row in curve]
    return {
        "variant": name,
        "seed": seed,
        "epochs": len(curve),
        "best_epoch": int(np.argmin(losses)) + 1 if losses else None,
        "validation_curve": curve,
        "test_error_pct": {view: r["top1_error_pct"] for view, r in results["evaluation"].items()},
        "test_examples": next(iter(results["evaluation"].values()))["examples"],
        "train_seconds": results["train_seconds"],
        "train_examples": results["train_examples"],
    }


def load_record(path, settings):
    if not os.path.isfile(path):
        return {"settings": settings, "runs": []}
    with open(path) as f:
        record = json.load(f)
    if settings is not None and record.get("settings") != settings:
        raise SystemExit(
            f"{path} holds runs with other settings ({record.get('settings')}); these are {settings}. "
            "Pass another --results folder, or the same settings."
        )
    return record


def save_record(path, record):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    partial = path + ".partial"
    with open(partial, "w") as f:
        json.dump(record, f, indent=1)
    os.replace(partial, path)  # a kill never leaves half a file


def summarise(runs):
    """``{variant: {view: {mean, std, runs}, epochs: [...], seeds: [...]}}``, in run order."""
    table = {}
    for run in runs:
        row = table.setdefault(run["variant"], {"seeds": [], "epochs": [], "train_seconds": []})
        row["seeds"].append(run["seed"])
        row["epochs"].append(run["epochs"])
        row["train_seconds"].append(run["train_seconds"])
        for view, error in run["test_error_pct"].items():
            row.setdefault(view, {"runs": []})["runs"].append(error)
    for row in table.values():
        for view in VIEWS:
            if view in row:
                errors = row[view]["runs"]
                row[view]["mean"] = float(np.mean(errors))
                row[view]["std"] = float(np.std(errors, ddof=1)) if len(errors) > 1 else 0.0
    return table


def verdicts(table):
    """Each claim of the paper as ``(claim, lower-error variant, other, view, verdict)``."""
    claims = [
        ("SPP improves accuracy", "SPP, single-size", "no SPP (pool5), single-size", "center"),
        ("multi-size training improves accuracy", "SPP, multi-size (alternating)", "SPP, single-size", "center"),
        ("multi-size (random sizes) improves accuracy", "SPP, multi-size (random)", "SPP, single-size", "center"),
        ("the full image beats the centre crop", "SPP, single-size", "SPP, single-size", "full"),
        (
            "multi-size training improves accuracy when no size is below the finest level",
            "SPP, multi-size (alternating, enlarged)",
            "SPP, single-size",
            "center",
        ),
        (
            "the enlarged second size beats the shrunk one",
            "SPP, multi-size (alternating, enlarged)",
            "SPP, multi-size (alternating)",
            "center",
        ),
        (
            "multi-size training improves accuracy when the finest level fits every map",
            "SPP, multi-size (alternating), levels 4,2,1",
            "SPP, single-size",
            "center",
        ),
        (
            "a finest level that fits the 4x4 map helps multi-size training",
            "SPP, multi-size (alternating), levels 4,2,1",
            "SPP, multi-size (alternating)",
            "center",
        ),
    ]
    found = []
    for claim, better, worse, view in claims:
        if better not in table or worse not in table or view not in table[better]:
            continue
        # Seed against seed: both variants start from the same initial weights and data order.
        ours = dict(zip(table[better]["seeds"], table[better][view]["runs"]))
        theirs = dict(zip(table[worse]["seeds"], table[worse]["center"]["runs"]))
        if set(ours) != set(theirs):
            continue
        gains = [theirs[seed] - ours[seed] for seed in sorted(ours)]
        if all(g > 0 for g in gains):
            verdict = "agrees, every seed"
        elif np.mean(gains) > 0:
            verdict = "agrees on the mean, not every seed"
        else:
            verdict = "disagrees"
        found.append((claim, float(np.mean(gains)), gains, verdict))
    return found


def render(table, settings, seconds):
    lines = [
        f"Ablation on backbone {settings['backbone']} (width {settings['width']}), trained to a plateau: at most "
        f"{settings['max_epochs']} epochs, stop after {settings['stop_patience']} without gain "
        f"({seconds / 60:.0f} min this sitting).",
        "",
        "| top-1 error %, mean ± std (each seed) | centre crop | full image | 10 views | epochs (each seed) |",
        "|---|---|---|---|---|",
    ]
    for name, row in table.items():
        cells = [
            f"{row[v]['mean']:.2f} ± {row[v]['std']:.2f} ({', '.join(f'{e:.1f}' for e in row[v]['runs'])})"
            if v in row
            else "n/a (fixed input size)"
            for v in VIEWS
        ]
        lines.append(f"| {name} | {' | '.join(cells)} | {', '.join(map(str, row['epochs']))} |")
    lines += ["", "| claim | gain, points (each seed) | verdict |", "|---|---|---|"]
    for claim, mean, gains, verdict in verdicts(table):
        lines.append(f"| {claim} | {mean:+.2f} ({', '.join(f'{g:+.1f}' for g in gains)}) | {verdict} |")
    return "\n".join(lines) + "\n"


def plot(runs, table, settings, path):
    """Left: each run's validation loss by epoch, one colour per variant. Right: each
    variant's test error per view (``table``, ``summarise(runs)``), one dot per seed
    and a bar at the mean."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {name: plt.get_cmap("tab10")(i) for i, name in enumerate(table)}
    fig, (curves, errors) = plt.subplots(1, 2, figsize=(12, 4.5))
    for run in runs:
        epochs = [row["epoch"] + 1 for row in run["validation_curve"]]
        losses = [row["val_loss"] for row in run["validation_curve"]]
        curves.plot(epochs, losses, color=colours[run["variant"]], alpha=0.8, linewidth=1)
    curves.set(xlabel="epoch", ylabel="validation loss", yscale="log", title="each run (colour: variant)")
    width = 0.8 / len(table)
    for i, (name, row) in enumerate(table.items()):
        for j, view in enumerate(VIEWS):
            if view not in row:
                continue
            x = j + (i - (len(table) - 1) / 2) * width
            errors.bar(
                x, row[view]["mean"], width * 0.9, color=colours[name], alpha=0.5, label=name if j == 0 else None
            )
            errors.plot([x] * len(row[view]["runs"]), row[view]["runs"], "o", color=colours[name], markersize=3)
    errors.set_xticks(range(len(VIEWS)), ["centre crop", "full image", "10 views"])
    errors.set(ylabel="test top-1 error %", title="test error: mean (bar) and each seed (dots)")
    errors.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2)
    fig.suptitle(f"Ablation, {settings['backbone']} (width {settings['width']}), trained to a plateau")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
