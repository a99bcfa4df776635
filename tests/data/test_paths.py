import os
import urllib.parse

import pytest

from keras_spp.data import paths


@pytest.mark.parametrize(
    "name", ["000123", "2008/000123", "a b", "..", ".", ".hidden", "%2F", "a%2Fb", "ü/ß", "a\\b", "x" * 300, "y" * 300]
)
def test_safe_file_stem_is_one_safe_component(tmp_path, name):
    stem = paths.safe_file_stem(name)
    assert stem not in (".", "..") and not stem.startswith(".") and "/" not in stem and "\\" not in stem
    assert len(stem) <= 200
    (tmp_path / f"{stem}.npy").write_bytes(b"")  # a real file of that name, in that folder
    assert os.listdir(tmp_path) == [f"{stem}.npy"]
    if len(name) < 60:
        assert urllib.parse.unquote(stem) == name


def test_safe_file_stem_is_unique_and_keeps_safe_names():
    names = ["a/b", "a%2Fb", "a_b", "a b", ".", "%2E", "x" * 300, "x" * 299 + "y", "x" * 300 + "y"]
    stems = [paths.safe_file_stem(name) for name in names]
    assert len(set(stems)) == len(names)
    assert paths.safe_file_stem("2008_000123-a.b~c") == "2008_000123-a.b~c"
    for bad in ("", None, 3):
        with pytest.raises(ValueError, match="non-empty string"):
            paths.safe_file_stem(bad)


@pytest.mark.parametrize(
    "name, problem",
    [
        ("../x", "'..'"),
        ("a/../../x", "'..'"),
        ("/etc/passwd", "absolute"),
        ("a//b", "empty or '.'"),
        ("./a", "empty or '.'"),
        ("a/", "empty or '.'"),
        ("a\\..\\b", "backslash"),
        ("a\0b", "control character"),
        ("", "empty"),
    ],
)
def test_names_that_could_leave_their_root_are_refused(name, problem):
    with pytest.raises(ValueError, match=f"^where:1: .*{problem}.*Accepted"):
        paths.check_relative(name, "where:1")


def test_inside_follows_links_on_both_sides(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    assert paths.inside(root, "sub/a.xml", "w") == str(root / "sub" / "a.xml")
    (root / "out").symlink_to(outside)
    (root / "file.xml").symlink_to(outside / "file.xml")
    (root / "sub" / "back").symlink_to(root)
    for name in ("out/a.xml", "file.xml"):
        with pytest.raises(ValueError, match=f"w: '{name}' leads to {outside}.*outside {root}"):
            paths.inside(root, name, "w")
    assert paths.inside(root, "sub/back/sub/a.xml", "w")  # a link that stays inside
    (tmp_path / "alias").symlink_to(root)
    assert paths.inside(tmp_path / "alias", "sub/a.xml", "w") == str(tmp_path / "alias" / "sub" / "a.xml")
