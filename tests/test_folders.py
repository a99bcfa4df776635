import os
import stat
import subprocess
import sys

import pytest

from keras_spp import folders


def dead_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_staging_folders_get_the_usual_mode_under_the_umask(tmp_path):
    mask = os.umask(0o027)
    try:
        staging = folders.staging_folder(tmp_path / "out")
    finally:
        os.umask(mask)
    assert stat.S_IMODE(os.stat(staging).st_mode) == 0o750
    assert os.path.basename(staging).startswith(f".out.partial-{folders._host()}-{os.getpid()}-")


def test_only_the_leftovers_of_dead_processes_of_this_host_are_removed(tmp_path):
    host, dead = folders._host(), dead_pid()
    kept = [f".1.partial-{host}-1-abc", f".1.partial-elsewhere-{dead}-abc", ".1.partial-olderformat", "1"]
    gone = [f".1.partial-{host}-{dead}-abc", f".2.old-{host}-{dead}-abc"]
    for name in kept + gone:
        (tmp_path / name).mkdir()
    assert sorted(folders.remove_stale(tmp_path, "1")) == [str(tmp_path / gone[0])]
    assert sorted(folders.remove_stale(tmp_path)) == [str(tmp_path / gone[1])]
    assert sorted(os.listdir(tmp_path)) == sorted(kept)


def test_a_failed_rename_puts_the_old_folder_back(tmp_path, monkeypatch):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old").write_text("old")
    staging = folders.staging_folder(target)
    real_rename = os.rename

    def failing(src, dst):
        if os.fspath(src) == staging:
            raise OSError(18, "Invalid cross-device link")
        return real_rename(src, dst)

    monkeypatch.setattr(os, "rename", failing)
    with pytest.raises(OSError, match="cross-device"):
        folders.replace_folder(staging, target)
    monkeypatch.undo()
    assert (target / "old").read_text() == "old"
    folders.replace_folder(staging, target)
    assert os.listdir(target) == [] and sorted(os.listdir(tmp_path)) == ["out"]
