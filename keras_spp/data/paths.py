"""Paths made from data (image ids from split files, file names from annotations,
data set names) that stay inside their root.

Two kinds of name come from data:
  * a relative path under a root, such as a VOC image id (``000123`` or
    ``2008/000123``: ``/``-separated, never absolute, no empty, ``.`` or ``..``
    component, no backslash or control character). ``check_relative`` refuses
    the rest by its text; ``inside`` joins a checked name to its root and refuses
    a result whose real path (``os.path.realpath``: symlinks resolved, on both
    sides) lies outside the root's real path, so neither ``..`` nor a symlink in
    the data can reach other files. A root that is itself a symlink is resolved
    first, so linking a whole folder elsewhere is fine; a symlinked file or
    subfolder that points out of it is refused.
  * a file name made from any string (a cache file per image id): ``safe_file_stem``
    gives one component, unique per string, that no file system reads as a path.

>>> safe_file_stem("2008/000123"), safe_file_stem("000123"), safe_file_stem("..")
('2008%2F000123', '000123', '%2E.')
>>> check_relative("../x", "split.txt:3")
Traceback (most recent call last):
...
ValueError: split.txt:3: '../x' is not a relative path inside its folder: it has a '..' component. ...
"""

import hashlib
import os
import urllib.parse

# Room for a suffix (".npy") and the temporary name of an atomic save
# (".<name>.<random>.tmp") within the usual 255-byte limit of a file name.
_MAX_STEM = 200
# Percent-encoding only ever writes '%' before two hex digits, so this marker
# cannot occur in a stem that was not shortened: shortened stems never collide
# with plain ones.
_SHORTENED = "%~"

_ACCEPTED = (
    "Accepted: names separated by '/', without '..', '.' or empty components, backslashes, "
    "control characters or a leading '/'."
)


def safe_file_stem(name):
    """``name`` as a single file-name component, unique per ``name``.

    Letters, digits and ``_-.~`` stay; every other character is percent-encoded
    (its UTF-8 bytes; ``/`` is ``%2F``), as is a leading ``.`` (so the stem is never
    ``.``, ``..`` or a hidden file). Stems longer than 200 characters are cut and end
    in ``%~`` and a hash of the whole name. ``urllib.parse.unquote`` reverses any
    stem that was not cut. On a case-insensitive file system, names that differ only
    in case still share a file.

    Raises:
      ValueError: ``name`` is not a non-empty string.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"A file name is made only from a non-empty string; got {name!r}.")
    stem = urllib.parse.quote(name, safe="", errors="surrogatepass")
    if stem.startswith("."):
        stem = "%2E" + stem[1:]
    if len(stem) > _MAX_STEM:
        digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        stem = stem[: _MAX_STEM - len(_SHORTENED) - len(digest)] + _SHORTENED + digest
    return stem


def name_from_stem(stem):
    """The name ``safe_file_stem`` made ``stem`` from, or ``None`` for a shortened stem
    (its name cannot be recovered; look it up by name instead).

    >>> name_from_stem(safe_file_stem("2008/000123")), name_from_stem(safe_file_stem("x" * 300))
    ('2008/000123', None)
    """
    if _SHORTENED in stem:
        return None
    return urllib.parse.unquote(stem, errors="surrogatepass")


def check_relative(name, where):
    """``name`` if it is a relative ``/``-separated path that cannot leave its root by
    its text alone; else ``ValueError`` that starts with ``where`` (e.g. ``file:line``)."""
    problem = _problem(name)
    if problem:
        raise ValueError(f"{where}: {name!r} is not a relative path inside its folder: {problem}. {_ACCEPTED}")
    return name


def inside(root, name, where):
    """``root/name`` (as given, not resolved) after ``check_relative(name)``, if its
    real path lies inside ``root``'s real path; else ``ValueError`` naming ``where``,
    the path and where it leads."""
    check_relative(name, where)
    path = os.path.join(os.fspath(root), *name.split("/"))
    base = os.path.realpath(root)
    real = os.path.realpath(path)
    if os.path.commonpath([base, real]) != base:
        raise ValueError(
            f"{where}: {name!r} leads to {real}, outside {base} (through a symbolic link); files "
            "named by data must lie inside their folder. Copy the file in, or link the whole folder."
        )
    return path


def _problem(name):
    if not isinstance(name, str) or not name:
        return "it is empty" if name == "" else "it is not a string"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "it has a control character"
    if "\\" in name:
        return "it has a backslash"
    if name.startswith("/") or os.path.isabs(name):
        return "it is absolute"
    parts = name.split("/")
    if ".." in parts:
        return "it has a '..' component"
    if "." in parts or "" in parts:
        return "it has an empty or '.' component"
    return None
