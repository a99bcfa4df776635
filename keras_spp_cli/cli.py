"""``keras-spp COMMAND [ARGS]``: runs a recipe or an export tool with ``ARGS``.

The recipes and export tools import each other as ``recipes.x`` and ``export.y``, as
they do when run with ``python -m`` from a checkout. An installed wheel holds them in
``keras_spp_cli/_commands/``; this command puts that folder first on its own path
(and its children's, since ``recipes.ablation`` runs ``python -m
recipes.train_classifier``), so nothing named ``recipes`` or ``export`` lands
in site-packages. From a checkout (or an editable install) the folders beside
``keras_spp_cli/`` are used.
"""

import importlib
import os
import pathlib
import sys

PROG = "keras-spp"

# Command -> (module, one line for the usage). Modules are imported only when their
# command runs: most of them import TensorFlow.
COMMANDS = {
    "main": ("recipes.main", "the main job, offline: demo, SPP-net classifier, SPP-net detector"),
    "demo": ("recipes.demo", "ZF-5 with the SPP head: images of five sizes, one vector each"),
    "train-classifier": ("recipes.train_classifier", "train and evaluate an SPP-net classifier"),
    "ablation": ("recipes.ablation", "the paper's classification ablation at small scale, resumable"),
    "train-detector": ("recipes.train_detector", "train and evaluate the SPP-net detector"),
    "detect": ("recipes.detect", "detect objects in images with a trained detector and draw them"),
    "export": ("export.saved_model", "export a model as a SavedModel for TF Serving"),
    "verify": ("export.verify", "verify an export as TF Serving would load it"),
    "client": ("export.client", "send images to TF Serving (REST or gRPC)"),
}


def usage():
    width = max(map(len, COMMANDS))
    lines = [
        f"usage: {PROG} COMMAND [ARGS ...]",
        "",
        "SPP-net (keras_spp) from the command line. Each command takes the flags of",
        f"`python -m MODULE` in a checkout; `{PROG} COMMAND --help` lists them.",
        "",
        "commands:",
    ]
    lines += [f"  {name:<{width}}  {summary} ({module})" for name, (module, summary) in COMMANDS.items()]
    return "\n".join(lines) + "\n"


def command_root(package_dir=None):
    """The folder that holds ``recipes/`` and ``export/``: ``_commands/`` in a wheel,
    else the checkout that ``keras_spp_cli/`` lies in."""
    package_dir = pathlib.Path(package_dir or os.path.dirname(os.path.abspath(__file__)))
    shipped = package_dir / "_commands"
    return shipped if (shipped / "recipes").is_dir() else package_dir.parent


def _put_on_path(root):
    root = str(root)
    if sys.path[:1] != [root]:
        sys.path.insert(0, root)
    paths = os.environ.get("PYTHONPATH", "")
    if paths.split(os.pathsep)[:1] != [root]:
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (root, paths) if p)


def main(argv=None):
    """Runs the command that ``argv`` (default ``sys.argv[1:]``) names with the rest of
    it, and returns its exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:
        sys.stderr.write(usage())
        return 2
    name, rest = argv[0], argv[1:]
    if name in ("-h", "--help", "help"):
        sys.stdout.write(usage())
        return 0
    if name == "--version":
        from keras_spp import __version__

        print(f"{PROG} {__version__}")
        return 0
    if name not in COMMANDS:
        # Exit status 2, as argparse gives a bad flag.
        sys.stderr.write(f"{PROG}: unknown command {name!r}; choose one of {', '.join(COMMANDS)} ({PROG} --help)\n")
        return 2
    _put_on_path(command_root())
    # argparse names the program after sys.argv[0]: "keras-spp train-classifier".
    saved, sys.argv = sys.argv, [f"{PROG} {name}", *rest]
    try:
        code = importlib.import_module(COMMANDS[name][0]).main(rest)
    except ModuleNotFoundError as e:
        # Keras on JAX or PyTorch alone runs keras_spp's layers and models, not these
        # commands (tf.data, SavedModels): one line instead of a traceback.
        if e.name != "tensorflow":
            raise
        sys.stderr.write(
            f"{PROG} {name}: needs TensorFlow, and this Python has none; install it with "
            "`pip install keras-spp[cpu]` (or [gpu], or tensorflow-cpu alone)\n"
        )
        return 1
    finally:
        sys.argv = saved
    return 0 if code is None else code
