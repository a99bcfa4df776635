"""build_once with real processes racing for the same folder."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from keras_spp.data.build_once import MARKER, build_once

# A builder process: builds its own files, then waits at the rename until every
# racer has reached it, so each has already seen no finished folder in place.
RACER = textwrap.dedent(
    """
    import json, os, pathlib, sys, time
    from keras_spp.data import build_once as module

    root, barrier, name, racers = sys.argv[1], pathlib.Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    real_rename, outcome = os.rename, {"name": name}

    def rename_after_everyone(source, target):
        (barrier / name).touch()
        deadline = time.time() + 60
        while len(list(barrier.iterdir())) < racers:
            if time.time() > deadline:
                raise SystemExit("the other racer never reached its rename")
            time.sleep(0.01)
        try:
            real_rename(source, target)
            outcome["renamed"] = True
        except OSError as error:
            outcome["renamed"] = False
            outcome["error"] = type(error).__name__
            raise

    def build(folder):
        for i in range(20):
            (folder / f"part{i}.txt").write_text(name)

    module.os.rename = rename_after_everyone
    result = module.build_once(root, build, description=name)
    outcome["returned"] = str(result)
    print(json.dumps(outcome))
    """
)


def race(tmp_path, racers=2):
    root, barrier = tmp_path / "dataset", tmp_path / "barrier"
    barrier.mkdir()
    script = tmp_path / "racer.py"
    script.write_text(RACER)
    env = {**os.environ, "PYTHONPATH": os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", "")}
    processes = [
        subprocess.Popen(
            [sys.executable, str(script), str(root), str(barrier), f"racer{i}", str(racers)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(racers)
    ]
    outcomes = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        outcomes.append(json.loads(out.strip().splitlines()[-1]))
    return root, outcomes


def test_two_processes_racing_build_one_whole_folder(tmp_path):
    root, outcomes = race(tmp_path)
    # One rename won; the other lost the race after its check and took the winner's folder.
    assert sorted(o["renamed"] for o in outcomes) == [False, True]
    loser = next(o for o in outcomes if not o["renamed"])
    assert loser["error"] in ("OSError", "FileExistsError")
    assert all(o["returned"] == str(root) for o in outcomes)
    winner = next(o["name"] for o in outcomes if o["renamed"])
    files = sorted(p.name for p in root.iterdir())
    assert files == sorted([MARKER] + [f"part{i}.txt" for i in range(20)])
    assert {(root / f).read_text().strip() for f in files} == {winner}  # all from one builder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["barrier", "dataset", "racer.py"]  # no staging left


def test_a_finished_folder_is_not_rebuilt(tmp_path):
    calls = []
    build_once(tmp_path / "d", lambda folder: calls.append(folder) or (folder / "x").write_text("1"))
    build_once(tmp_path / "d", lambda folder: calls.append(folder))
    assert len(calls) == 1 and (tmp_path / "d" / MARKER).is_file()


def test_a_failed_build_leaves_nothing(tmp_path):
    def broken(folder):
        (folder / "half").write_text("x")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        build_once(tmp_path / "d", broken)
    assert list(tmp_path.iterdir()) == []


def test_a_folder_without_its_marker_is_replaced(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "stale").write_text("old")
    build_once(tmp_path / "d", lambda folder: (folder / "fresh").write_text("new"))
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == [MARKER, "fresh"]
