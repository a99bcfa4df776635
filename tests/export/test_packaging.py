"""How export.saved_model puts a version folder in place: whole or not at all, the
old version kept until the new one is in, leftovers of a killed export removed, and
readable by a server running as another user."""

import os
import pathlib
import shutil
import signal
import stat
import subprocess
import sys
import tempfile

import pytest

from export import saved_model
from tests.export.conftest import MAX_SIDE

REPO = pathlib.Path(__file__).resolve().parents[2]


def model_file(exported):
    out, _, _ = exported
    return os.path.join(os.path.dirname(os.path.dirname(out)), "run", "model.keras")


def small_export(exported, out, **kwargs):
    return saved_model.export(model_file(exported), "classifier", str(out), max_side=MAX_SIDE, **kwargs)


def test_overwrite_keeps_the_old_version_until_the_new_one_is_in_place(exported, tmp_path, monkeypatch):
    out = tmp_path / "served" / "1"
    small_export(exported, out)
    (out / "marker").write_text("the old version")
    real_rename = os.rename

    def failing(src, dst, *args, **kwargs):
        if ".partial-" in os.path.basename(os.fspath(src)):
            raise OSError(5, "Input/output error", os.fspath(src))
        return real_rename(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "rename", failing)
    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(OSError, match="Input/output error"):
        small_export(exported, out, overwrite=True)
    monkeypatch.undo()
    assert (out / "marker").read_text() == "the old version" and (out / "saved_model.pb").is_file()
    assert os.listdir(out.parent) == ["1"]  # no staging or set-aside folder left
    small_export(exported, out, overwrite=True)
    assert not (out / "marker").exists() and (out / "saved_model.pb").is_file()
    assert os.listdir(out.parent) == ["1"]


KILLED_MID_EXPORT = """
import os, signal, sys
from export import saved_model
# The SavedModel is written, the reference not yet: as a kill -9 at that moment.
saved_model._write_reference = lambda *args: os.kill(os.getpid(), signal.SIGKILL)
saved_model.main(sys.argv[1:])
"""


def test_a_killed_exports_staging_folder_is_removed_by_the_next_export(exported, tmp_path):
    base = tmp_path / "served"
    small_export(exported, base / "1")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(REPO))
    flags = ["--model", model_file(exported), "--kind", "classifier", "--max-side", str(MAX_SIDE)]
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_MID_EXPORT, *flags, "--out", str(base / "1"), "--overwrite"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    left = sorted(os.listdir(base))
    assert left[0].startswith(".1.partial-") and left[1:] == ["1"]
    assert (base / left[0] / "saved_model.pb").is_file()  # what a kill used to leave for good
    small_export(exported, base / "2")
    assert sorted(os.listdir(base)) == ["1", "2"]


AS_NOBODY = """
import os, sys
import tensorflow as tf
os.setgroups([])
os.setgid(int(sys.argv[2]))
os.setuid(int(sys.argv[1]))
unreadable = []
for folder, _, files in os.walk(sys.argv[3], onerror=lambda e: unreadable.append(str(e))):
    for name in files:
        try:
            open(os.path.join(folder, name), "rb").close()
        except OSError as e:
            unreadable.append(str(e))
print("UNREADABLE", unreadable)
with tf.Graph().as_default() as graph, tf.compat.v1.Session(graph=graph) as session:
    loaded = tf.compat.v1.saved_model.loader.load(session, ["serve"], sys.argv[3])
print("SIGNATURES", sorted(loaded.signature_def))
"""


def test_the_version_folder_is_readable_by_a_server_running_as_another_user(exported):
    import pwd

    if os.geteuid() != 0:
        pytest.skip("reading the export as user nobody needs root, to switch users")
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user nobody on this machine to read the export as")
    # Under /tmp, not tmp_path: pytest's own folders are 0700 and would lock nobody out.
    base = tempfile.mkdtemp(dir="/tmp")
    try:
        os.chmod(base, 0o755)
        out = small_export(exported, os.path.join(base, "served", "1"))
        child = subprocess.run(
            [sys.executable, "-c", AS_NOBODY, str(nobody.pw_uid), str(nobody.pw_gid), out],
            cwd=REPO,
            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", HOME=base),
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert "UNREADABLE []" in child.stdout and child.returncode == 0, child.stdout + child.stderr[-2000:]
        assert "SIGNATURES ['__saved_model_init_op', 'classify_images', 'serving_default']" in child.stdout
        # The usual modes under the umask, as os.makedirs and open give them.
        mask = os.umask(0)
        os.umask(mask)
        for folder, _, files in os.walk(out):
            for path, mode in [(folder, 0o777)] + [(os.path.join(folder, f), 0o666) for f in files]:
                assert stat.S_IMODE(os.stat(path).st_mode) == mode & ~mask, path
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_label_files_with_a_bom_are_read_and_repeated_or_blank_names_refused_naming_the_line(
    exported, tmp_path, capsys
):
    from export.kinds import label_names

    def names(text, encoding="utf-8"):
        path = tmp_path / "labels.txt"
        path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
        return label_names(str(path), None, "model.keras")

    assert names("\ufeffa\nb\r\nc\n\n\n") == ["a", "b", "c"]  # a BOM, CRLF and trailing blank lines
    assert names("a\nb", "utf-8-sig") == ["a", "b"]
    for text, message in (
        ("a\nb\na\n", "line 3 repeats the class name 'a' of line 1"),
        ("a\n\nb\n", "line 2 is a blank class name"),
        ("a\n  \nb\n", "line 2 is a blank class name"),
        ("\n", "is empty"),
        (b"a\n\xff\n", "is not UTF-8 text"),
    ):
        with pytest.raises(ValueError, match=message):
            names(text)
    with pytest.raises(
        ValueError, match=r"the results.json next to m.keras: class 2 repeats the class name 'x' of class 0"
    ):
        label_names(None, {"classes": ["x", "y", "x"]}, "m.keras")
    with pytest.raises(FileNotFoundError, match="--labels .*missing.txt: no such file"):
        label_names(str(tmp_path / "missing.txt"), None, "model.keras")
    (tmp_path / "labels.txt").write_text("\n".join(["cat", "dog", "", "fish", "horse", "ship", "truck"]) + "\n")
    code = saved_model.main(
        ["--model", model_file(exported), "--kind", "classifier", "--labels", str(tmp_path / "labels.txt")]
        + ["--out", str(tmp_path / "served" / "1")]
    )
    assert code == 2 and "line 3 is a blank class name" in capsys.readouterr().err
    assert not (tmp_path / "served").exists()
