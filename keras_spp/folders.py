"""Folders written aside and renamed into place, with the usual permissions.

A folder that other programs read (a saved detector; a SavedModel version that TF
Serving polls) must appear whole or not at all, and be readable by other users:

* ``staging_folder(target)``: a new empty folder beside ``target``, named
  ``.<name>.partial-<host>-<pid>-<random>`` (a name TF Serving skips: not a number),
  with mode ``0o777`` less the umask (``tempfile.mkdtemp`` makes ``0o700``, which
  would follow the folder into place and lock out a server running as another user).
  Staging folders of processes on this host that are no longer alive (killed with
  ``kill -9``, which runs no clean-up) are removed first.
* ``replace_folder(staging, target)``: ``staging`` renamed to ``target``; an existing
  ``target`` is renamed aside first and removed only once ``staging`` is in place,
  so an interruption at any point leaves the old folder or the new one whole.
"""

import os
import re
import secrets
import shutil
import socket
import tempfile

PARTIAL, OLD = "partial", "old"


def umask():
    """The process's umask, read without changing it where Linux reports it.

    >>> 0 <= umask() <= 0o777
    True
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    # os.umask can only be read by setting it: set it back at once.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def folder_mode():
    """The mode a new folder gets from ``os.makedirs``: ``0o777`` less the umask (``0o755`` under 022)."""
    return 0o777 & ~umask()


def _host():
    return re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname()) or "host"


def _prefix(name, state, pid=None):
    return f".{name}.{state}-{_host()}-{os.getpid() if pid is None else pid}-"


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale(parent, name=None):
    """Removes the staging and set-aside folders of ``<parent>/<name>`` (``None``: of
    any name) left by dead processes of this host; returns their paths. A folder of
    another host is kept: its pid says nothing here."""
    named = ".+" if name is None else re.escape(name)
    pattern = re.compile(rf"\.{named}\.(?:{PARTIAL}|{OLD})-{re.escape(_host())}-(\d+)-[^/]+")
    removed = []
    try:
        entries = os.listdir(parent)
    except OSError:
        return removed
    for entry in entries:
        match = pattern.fullmatch(entry)
        if match and int(match.group(1)) != os.getpid() and not _alive(int(match.group(1))):
            path = os.path.join(parent, entry)
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def staging_folder(target):
    """A new empty folder beside ``target`` to write it in (module docstring); its parent is made if missing."""
    parent, name = os.path.split(os.path.abspath(target))
    os.makedirs(parent, exist_ok=True)
    remove_stale(parent, name)
    folder = tempfile.mkdtemp(prefix=_prefix(name, PARTIAL), dir=parent)
    os.chmod(folder, folder_mode())
    return folder


def replace_folder(staging, target):
    """Renames ``staging`` to ``target`` (module docstring). If the rename fails, the
    old ``target`` is put back and the error raised."""
    target = os.path.abspath(target)
    parent, name = os.path.split(target)
    old = None
    if os.path.lexists(target):
        old = os.path.join(parent, _prefix(name, OLD) + secrets.token_hex(4))
        os.rename(target, old)
    try:
        os.rename(staging, target)
    except BaseException:
        if old is not None:
            os.rename(old, target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
