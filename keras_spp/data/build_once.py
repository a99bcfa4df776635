"""Building a dataset folder once, atomically, for any number of racing processes."""

import os
import pathlib
import shutil
import tempfile

# The file whose presence marks a folder as completely written.
MARKER = "COMPLETE"


def build_once(root, build, description=""):
    """Builds a dataset folder at ``root`` once, atomically; returns ``root`` as a Path.

    ``build(folder)`` writes the dataset into a temporary sibling folder, which is
    renamed to ``root`` after a ``COMPLETE`` file (holding ``description``) is
    written into it. When ``root/COMPLETE`` exists nothing is done; a ``root``
    without it (left by an older, interrupted writer) is replaced. An interrupted
    build leaves only its temporary folder behind, removed on the way out, so a
    half-built folder is never read; concurrent builders each build, and the first
    rename wins.
    """
    root = pathlib.Path(root).expanduser()
    if (root / MARKER).is_file():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = pathlib.Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}.partial-"))
    try:
        os.chmod(staging, 0o755)  # mkdtemp's 0700 would follow the folder into place
        build(staging)
        (staging / MARKER).write_text(description + "\n")
        if root.exists():
            if (root / MARKER).is_file():
                return root  # another process finished first
            shutil.rmtree(root, ignore_errors=True)
        try:
            os.rename(staging, root)
        except OSError:
            # Lost a race with another builder between the check and the rename.
            if not (root / MARKER).is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root
