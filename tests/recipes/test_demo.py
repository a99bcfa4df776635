import json

from recipes import demo


def test_demo_gives_one_length_for_every_size(tmp_path, capsys):
    assert demo.main(["--out", str(tmp_path), "--width", "0.125", "--levels", "4,2,1"]) == 0
    report = json.loads((tmp_path / "demo.json").read_text())
    sizes = {tuple(r["input"]) for r in report["rows"]}
    maps = {tuple(r["conv5"]) for r in report["rows"]}
    assert len(sizes) >= 5 and len(maps) >= 5
    assert {r["length"] for r in report["rows"]} == {32 * 21}
    assert report["same_length"] is True
    png = (tmp_path / "demo.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert "same for every size" in capsys.readouterr().out
