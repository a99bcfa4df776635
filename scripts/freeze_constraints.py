"""Writes scripts/constraints.txt from what .venv has installed now.

    .venv/bin/python scripts/freeze_constraints.py

The pins are the packages keras-spp with its ``cpu`` and ``test`` extras pulls in
(and tensorflow-serving-api, which ``setup_env.sh`` installs beside it), at the
versions installed: run it in a venv the test suite has just passed in. The
editable keras-spp itself, pip, setuptools and wheel are left out. ``tensorflow``
is pinned to tensorflow-cpu's version so that the ``gpu`` flavour
(``tensorflow[and-cuda]``) gets the same TensorFlow; the CUDA wheels that flavour
adds are left to TensorFlow's own pins.
"""

import importlib.metadata as metadata
import pathlib
import sys

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = "keras-spp"
EXTRAS = ("cpu", "test")
ALSO = ("tensorflow-serving-api",)  # installed --no-deps by setup_env.sh
LEFT_OUT = {"keras-spp", "pip", "setuptools", "wheel"}
TARGET = pathlib.Path(__file__).with_name("constraints.txt")


def _requirements(name, extras):
    """The requirements of an installed distribution that apply with these extras."""
    environments = [{"extra": extra} for extra in extras or ("",)]
    found = []
    for text in metadata.distribution(name).requires or []:
        requirement = Requirement(text)
        if requirement.marker is None or any(requirement.marker.evaluate(env) for env in environments):
            found.append(requirement)
    return found


def closure():
    """Canonical name -> installed version for everything the project pulls in."""
    extras_of = {}
    pending = [(canonicalize_name(ROOT), set(EXTRAS))] + [(canonicalize_name(n), set()) for n in ALSO]
    while pending:
        name, extras = pending.pop()
        if name in extras_of and extras <= extras_of[name]:
            continue
        extras_of.setdefault(name, set()).update(extras)
        for requirement in _requirements(name, tuple(extras_of[name])):
            child = canonicalize_name(requirement.name)
            if name == "tensorflow-serving-api" and child == "tensorflow":
                continue  # its TensorFlow is the tensorflow-cpu or tensorflow installed beside it
            pending.append((child, set(requirement.extras)))
    # A local label (torch's "+cpu" on a machine that has that build) is no version
    # PyPI serves; the public version it labels is.
    return {name: metadata.version(name).split("+")[0] for name in extras_of if name not in LEFT_OUT}


def main():
    pins = closure()
    if "tensorflow-cpu" in pins:
        pins["tensorflow"] = pins["tensorflow-cpu"]
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    lines = [
        "# Versions the test suite passed with; scripts/setup_env.sh installs with them",
        "# (pip install -c). KERAS_SPP_LATEST=1 bash scripts/setup_env.sh tries the newest",
        "# versions setup.cfg allows instead. Regenerate after a passing run of the",
        "# suite with: .venv/bin/python scripts/freeze_constraints.py",
        f"# python {version}",
    ]
    lines += [f"{name}=={pins[name]}" for name in sorted(pins)]
    TARGET.write_text("\n".join(lines) + "\n")
    print(f"wrote {len(pins)} pins to {TARGET}")


if __name__ == "__main__":
    main()
