import logging
import os
import pathlib

import numpy as np
import pytest
from PIL import Image

from keras_spp.data import voc


def annotation(filename, objects, size=(60, 80), extra=""):
    """VOC XML text; ``objects`` as (name, xmin, ymin, xmax, ymax, difficult or None)."""
    size_xml = (
        "" if size is None else (f"<size><width>{size[1]}</width><height>{size[0]}</height><depth>3</depth></size>")
    )
    parts = []
    for name, xmin, ymin, xmax, ymax, difficult in objects:
        flag = "" if difficult is None else f"<difficult>{difficult}</difficult>"
        parts.append(
            f"<object><name>{name}</name><pose>Left</pose><truncated>0</truncated>{flag}"
            f"<bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin><xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox>"
            # A part's own box must not be taken for the object's.
            "<part><name>head</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>2</xmax><ymax>2</ymax></bndbox></part>"
            "</object>"
        )
    return (
        f"<annotation><folder>VOC2007</folder><filename>{filename}</filename>"
        f"{size_xml}{extra}{''.join(parts)}</annotation>"
    )


def make_voc(root, entries, split="trainval", labels=None):
    """entries: image_id -> (image file name or None, image array or raw bytes, xml text)."""
    root = pathlib.Path(root)
    for folder in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for image_id, (filename, image, xml) in entries.items():
        if filename is not None:
            path = root / "JPEGImages" / filename
            if isinstance(image, bytes):
                path.write_bytes(image)
            else:
                Image.fromarray(image).save(path)
        if xml is not None:
            (root / "Annotations" / f"{image_id}.xml").write_text(xml)
    (root / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in entries))
    if labels is not None:
        (root / "labels.txt").write_text("\n".join(labels) + "\n")
    return root


def rgb(height=60, width=80, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def test_reads_voc_boxes_labels_difficult_and_the_convention(tmp_path):
    xml = annotation("000001.jpg", [("dog", 11, 21, 40, 50, 0), ("person", 1, 1, 80, 60, 1), ("cat", 5, 6, 7, 8, None)])
    root = make_voc(tmp_path, {"000001": ("000001.jpg", rgb(), xml)})
    examples, names = voc.read_voc(root, "trainval")
    assert names == voc.VOC_CLASSES
    (example,) = examples
    assert example.image_id == "000001" and (example.height, example.width) == (60, 80)
    assert example.image_path == str(root.absolute() / "JPEGImages" / "000001.jpg")
    # 1-based inclusive xmin..xmax is [xmin - 1, xmax): the whole image is [0, 0, 60, 80].
    np.testing.assert_array_equal(example.boxes, [[20, 10, 50, 40], [0, 0, 60, 80], [5, 4, 8, 7]])
    np.testing.assert_array_equal(example.labels, [names.index("dog"), names.index("person"), names.index("cat")])
    np.testing.assert_array_equal(example.difficult, [False, True, False])  # missing flag: not difficult
    assert example.boxes.dtype == np.float32 and example.labels.dtype == np.int32


def test_images_without_objects_and_empty_splits_are_valid(tmp_path):
    root = make_voc(tmp_path, {"a": ("a.jpg", rgb(), annotation("a.jpg", []))})
    (example,) = voc.read_voc(root, "trainval")[0]
    assert example.boxes.shape == (0, 4) and example.labels.shape == (0,) and example.difficult.shape == (0,)
    (root / "ImageSets" / "Main" / "empty.txt").write_text("\n\n")
    assert voc.read_voc(root, "empty")[0] == []


def test_boxes_are_clipped_and_degenerate_ones_dropped_with_a_warning(tmp_path, caplog):
    objects = [
        ("dog", -5, 0, 90, 30, 0),  # out on the left and right: clipped
        ("cat", 10, 10, 10, 20, 0),  # one pixel wide (inclusive): kept
        ("cat", 20, 10, 15, 20, 0),  # xmax < xmin: dropped
        ("bird", 81, 5, 95, 20, 0),  # entirely right of the image: nothing left after clipping
        ("bird", 5, 40, 20, 40.5, 0),  # fractional, still inside
    ]
    root = make_voc(tmp_path, {"clip": ("clip.jpg", rgb(), annotation("clip.jpg", objects))})
    with caplog.at_level(logging.WARNING, logger="keras_spp.data.voc"):
        (example,) = voc.read_voc(root, "trainval")[0]
    np.testing.assert_array_equal(example.boxes, [[0, 0, 30, 80], [9, 9, 20, 10], [39, 4, 40.5, 20]])
    assert len(example.labels) == len(example.difficult) == 3
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert all("clip.xml" in message and "Dropping" in message for message in warnings)


def test_unknown_class_names_the_file_the_name_and_the_accepted_names(tmp_path):
    root = make_voc(tmp_path, {"x": ("x.jpg", rgb(), annotation("x.jpg", [("zebra", 1, 1, 5, 5, 0)]))})
    with pytest.raises(ValueError, match=r"x\.xml.*'zebra'.*aeroplane.*tvmonitor"):
        voc.read_voc(root, "trainval")
    examples, names = voc.read_voc(root, "trainval", class_names=["horse", "zebra"])
    assert names == ("horse", "zebra") and examples[0].labels.tolist() == [1]


def test_class_names_come_from_labels_txt(tmp_path):
    xml = annotation("x.jpg", [("b", 1, 1, 5, 5, 0)])
    root = make_voc(tmp_path, {"x": ("x.jpg", rgb(), xml)}, labels=["a", "b", "", "c"])
    examples, names = voc.read_voc(root, "trainval")
    assert names == ("a", "b", "c") and examples[0].labels.tolist() == [1]
    (root / "labels.txt").write_text("a\na\n")
    with pytest.raises(ValueError, match="labels.txt.*unique"):
        voc.read_voc(root, "trainval")
    with pytest.raises(ValueError, match="sequence of strings"):
        voc.read_voc(root, "trainval", class_names="ab")


def test_missing_split_annotation_and_image_are_file_not_found(tmp_path):
    root = make_voc(tmp_path, {"a": ("a.jpg", rgb(), annotation("a.jpg", [])), "b": (None, None, None)})
    with pytest.raises(FileNotFoundError, match=r"test\.txt.*splits there: trainval"):
        voc.read_voc(root, "test")
    with pytest.raises(FileNotFoundError, match=r"b\.xml"):
        voc.read_voc(root, "trainval")
    (root / "Annotations" / "b.xml").write_text(annotation("b.jpg", []))
    with pytest.raises(FileNotFoundError, match=r"'b'.*JPEGImages"):
        voc.read_voc(root, "trainval")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        voc.read_voc(tmp_path / "nowhere", "trainval")


@pytest.mark.parametrize(
    "xml, match",
    [
        ("<annotation><object>", "Malformed annotation XML"),
        ("<notannotation/>", "root element"),
        (annotation("m.jpg", [("dog", 1, 2, "abc", 4, 0)]), "<xmax> 'abc'"),
        (annotation("m.jpg", [("dog", 1, 2, 3, 4, "maybe")]), "difficult"),
        (annotation("m.jpg", [], size=("x", 10)), "<height>"),
        (annotation("m.jpg", [], size=("inf", 10)), "<height> is 'inf'"),
        (annotation("m.jpg", [], size=(10, "nan")), "<width> is 'nan'"),
        (annotation("m.jpg", [], size=("-inf", 10)), "<height>"),
        (annotation("m.jpg", [("dog", 1, 2, 3, 4, "inf")]), "difficult"),
        (annotation("m.jpg", [("dog", 1, 2, 3, 4, "nan")]), "difficult"),
        ("<annotation><object><name>dog</name></object></annotation>", "no <bndbox>"),
    ],
)
def test_malformed_xml_names_the_file(tmp_path, xml, match):
    root = make_voc(tmp_path, {"m": ("m.jpg", rgb(), xml)})
    with pytest.raises(ValueError, match=match) as error:
        voc.read_voc(root, "trainval")
    assert "m.xml" in str(error.value)


def test_image_files_are_found_by_filename_then_id_with_any_extension(tmp_path):
    png = rgb(30, 40, seed=1)
    entries = {
        # <filename> names a file that exists: it wins over <id>.jpg.
        "named": ("other_name.png", png, annotation("other_name.png", [])),
        # <filename> wrong or absent: <id>.* is found, a known extension first.
        "bmp": ("bmp.bmp", rgb(20, 30), annotation("not_there.jpg", [], size=None)),
    }
    root = make_voc(tmp_path, entries)
    Image.fromarray(rgb()).save(root / "JPEGImages" / "named.jpg")
    (root / "JPEGImages" / "bmp.txt").write_text("not an image")
    named, bmp = voc.read_voc(root, "trainval")[0]
    assert named.image_path.endswith("other_name.png")
    assert bmp.image_path.endswith("bmp.bmp")
    # No <size>: from the header.
    assert (bmp.height, bmp.width) == (20, 30)
    np.testing.assert_array_equal(voc.load_image(named.image_path), png)


def test_load_image_makes_rgb_from_grayscale_rgba_palette_and_16_bit(tmp_path):
    gray = rgb(12, 16)[..., 0]
    Image.fromarray(gray).save(tmp_path / "gray.png")
    np.testing.assert_array_equal(voc.load_image(tmp_path / "gray.png"), np.repeat(gray[..., None], 3, -1))
    rgba = np.concatenate([rgb(12, 16), np.full([12, 16, 1], 7, np.uint8)], -1)
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(voc.load_image(tmp_path / "rgba.png"), rgba[..., :3])  # alpha dropped
    Image.fromarray(rgb(12, 16)).convert("P").save(tmp_path / "palette.gif")
    palette = voc.load_image(tmp_path / "palette.gif")
    assert palette.shape == (12, 16, 3) and palette.dtype == np.uint8
    deep = np.arange(12 * 16, dtype=np.uint16).reshape(12, 16) * 300
    Image.fromarray(deep).save(tmp_path / "deep.png")
    np.testing.assert_array_equal(voc.load_image(tmp_path / "deep.png")[..., 1], deep >> 8)
    Image.fromarray(rgb(12, 16)).save(tmp_path / "photo.jpg", quality=95)
    assert voc.load_image(tmp_path / "photo.jpg").shape == (12, 16, 3)


def test_load_image_exif_orientation_is_not_applied(tmp_path):
    image = Image.fromarray(rgb(10, 20))
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90": a viewer would show it 20 x 10
    image.save(tmp_path / "rotated.jpg", exif=exif)
    assert voc.load_image(tmp_path / "rotated.jpg").shape == (10, 20, 3)
    assert voc.image_size(tmp_path / "rotated.jpg") == (10, 20)


def test_load_image_corrupt_truncated_and_missing_files(tmp_path):
    (tmp_path / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (tmp_path / "empty.png").write_bytes(b"")
    good = tmp_path / "good.png"
    Image.fromarray(rgb(64, 64)).save(good)
    (tmp_path / "truncated.png").write_bytes(good.read_bytes()[:200])
    for name, reason in (("corrupt.jpg", "corrupt"), ("empty.png", "empty"), ("truncated.png", "truncated")):
        with pytest.raises(ValueError, match=f"{name}.*{reason}"):
            voc.load_image(tmp_path / name)
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        voc.load_image(tmp_path / "missing.jpg")


def test_corrupt_image_without_size_is_a_value_error_naming_it(tmp_path, caplog):
    root = make_voc(tmp_path, {"bad": ("bad.jpg", b"garbage", annotation("bad.jpg", [], size=None))})
    with pytest.raises(ValueError, match=r"bad\.jpg"):
        voc.read_voc(root, "trainval")
    # With a <size>, the annotation stays an example (the detection code skips the image), with a warning.
    (root / "Annotations" / "bad.xml").write_text(annotation("bad.jpg", []))
    with caplog.at_level(logging.WARNING, logger="keras_spp.data.voc"):
        (example,) = voc.read_voc(root, "trainval")[0]
    assert (example.height, example.width) == (60, 80)
    assert "bad.xml" in caplog.text and "bad.jpg" in caplog.text and "keeps <size> 60x80" in caplog.text
    with pytest.raises(ValueError, match=r"bad\.jpg"):
        voc.load_image(example.image_path)


def test_decompression_bomb_is_a_value_error_naming_the_image(tmp_path, monkeypatch):
    # Pillow refuses images over twice MAX_IMAGE_PIXELS with DecompressionBombError
    # (not an OSError); a 64 x 64 image is one under a limit of 1000 pixels.
    Image.fromarray(rgb(64, 64)).save(tmp_path / "huge.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    for read in (voc.image_size, voc.load_image):
        with pytest.raises(ValueError, match=r"huge\.png.*4096 pixels.*MAX_IMAGE_PIXELS"):
            read(tmp_path / "huge.png")
    root = make_voc(tmp_path / "voc", {"huge": ("huge.png", rgb(64, 64), annotation("huge.png", [], size=None))})
    with pytest.raises(ValueError, match=r"huge\.png"):
        voc.read_voc(root, "trainval")
    with pytest.raises(ValueError, match=r"^Image 'huge': Pillow refuses .*decompression bomb.*MAX_IMAGE_PIXELS"):
        voc.write_voc(
            tmp_path / "out", "trainval", [("huge", (tmp_path / "huge.png").read_bytes(), [], [], None)], ["x"]
        )


def test_write_then_read_is_exact_for_integer_boxes(tmp_path):
    names = ("cat", "dog", "person")
    jpeg = tmp_path / "source.jpg"
    Image.fromarray(rgb(50, 70, seed=3)).save(jpeg, quality=90)
    items = [
        ("img_a", rgb(60, 80), [[0, 0, 60, 80], [10, 20, 11, 21]], [2, 0], [False, True]),
        ("img_b", rgb(40, 30)[..., 0], np.zeros([0, 4]), [], None),  # gray, no objects
        ("img_c", (jpeg.read_bytes(), ".jpeg"), [[5, 6, 45, 66]], [1], [False]),  # bytes, unchanged
        ("img_d", jpeg.read_bytes(), [[1.5, 2.25, 3, 4]], [1], None),  # bytes, sniffed; fractional
    ]
    root = voc.write_voc(tmp_path / "out", "trainval", items, names)
    voc.write_voc(root, "test", [], names)
    examples, read_names = voc.read_voc(root, "trainval")
    assert read_names == names and voc.read_voc(root, "test")[0] == []
    assert [e.image_id for e in examples] == ["img_a", "img_b", "img_c", "img_d"]
    for example, (_, _, boxes, labels, difficult) in zip(examples, items):
        np.testing.assert_array_equal(example.boxes, np.asarray(boxes, np.float32).reshape(-1, 4))
        np.testing.assert_array_equal(example.labels, labels)
        expected = np.zeros(len(labels), bool) if difficult is None else difficult
        np.testing.assert_array_equal(example.difficult, expected)
    assert [(e.height, e.width) for e in examples] == [(60, 80), (40, 30), (50, 70), (50, 70)]
    np.testing.assert_array_equal(voc.load_image(examples[0].image_path), items[0][1])
    assert examples[1].image_path.endswith(".png")
    np.testing.assert_array_equal(voc.load_image(examples[1].image_path)[..., 2], items[1][1])
    assert pathlib.Path(examples[2].image_path).read_bytes() == jpeg.read_bytes()
    assert examples[2].image_path.endswith("img_c.jpeg") and examples[3].image_path.endswith("img_d.jpg")
    xml = (root / "Annotations" / "img_a.xml").read_text()
    # VOC's 1-based inclusive integers.
    assert "<xmin>1</xmin>" in xml and "<xmax>80</xmax>" in xml and "<xmin>21</xmin>" in xml
    assert (root / "labels.txt").read_text() == "cat\ndog\nperson\n"


@pytest.mark.parametrize(
    "items, names, match",
    [
        ([("a b", np.zeros([4, 4], np.uint8), [], [], None)], ("x",), "whitespace"),
        ([("../a", np.zeros([4, 4], np.uint8), [], [], None)], ("x",), "separators"),
        ([("a", np.zeros([4, 4], np.uint8), [], [], None)] * 2, ("x",), "twice"),
        ([("a", np.zeros([4, 4], np.float32), [], [], None)], ("x",), "uint8"),
        ([("a", b"not an image", [], [], None)], ("x",), "not an image"),
        (
            [("a", np.zeros([4, 4], np.uint8), [[0, 0, 1, 1]], [1], None)],
            ("x",),
            r"labels must be integers in \[0, 1\)",
        ),
        ([("a", np.zeros([4, 4], np.uint8), [[0, 0, 1]], [0], None)], ("x",), r"\[N, 4\]"),
        ([("a", np.zeros([4, 4], np.uint8), [[0, 0, 1, 1]], [0, 0], None)], ("x",), "one entry per object"),
        ([("a", np.zeros([4, 4], np.uint8))], ("x",), "Each item"),
        ([], ("x", "x"), "unique"),
        ([], ("x", " y"), "whitespace"),
    ],
)
def test_write_rejects_bad_items(tmp_path, items, names, match):
    with pytest.raises(ValueError, match=match):
        voc.write_voc(tmp_path, "trainval", items, names)


def test_write_refuses_to_change_the_class_names_of_a_folder(tmp_path):
    voc.write_voc(tmp_path, "trainval", [], ("a", "b"))
    with pytest.raises(ValueError, match="already lists"):
        voc.write_voc(tmp_path, "test", [], ("b", "a"))


def test_build_voc_once_is_atomic_and_runs_once(tmp_path):
    calls = []

    def failing(folder):
        calls.append(folder)
        (folder / "half").write_text("x")
        raise RuntimeError("interrupted")

    root = tmp_path / "built"
    with pytest.raises(RuntimeError):
        voc.build_voc_once(root, failing)
    assert not root.exists() and list(tmp_path.iterdir()) == []  # no partial folder left

    def build(folder):
        calls.append(folder)
        voc.write_voc(folder, "trainval", [], ("a",))

    assert voc.build_voc_once(root, build, "v") == root
    assert voc.build_voc_once(root, build, "v") == root
    assert len(calls) == 2 and (root / voc.MARKER).read_text() == "v\n"
    assert voc.read_voc(root, "trainval") == ([], ("a",))


def _outside_files(folder):
    """An annotation and an image outside the VOC root, which no split line may reach."""
    folder.mkdir()
    (folder / "x.xml").write_text(annotation("x.jpg", []))
    Image.fromarray(rgb()).save(folder / "x.jpg")
    return folder


@pytest.mark.parametrize("line", ["../../outside/x", "a/../../../outside/x", "/absolute/x", "./a", "a//b", "a\\b"])
def test_split_ids_that_could_leave_the_folder_are_refused_naming_the_line(tmp_path, line):
    _outside_files(tmp_path / "outside")
    root = make_voc(tmp_path / "data" / "voc", {"a": ("a.jpg", rgb(), annotation("a.jpg", []))})
    (root / "ImageSets" / "Main" / "trainval.txt").write_text(f"a\n{line}\n")
    with pytest.raises(ValueError, match=r"trainval\.txt:2: .*not a relative path inside its folder") as error:
        voc.read_voc(root, "trainval")
    assert repr(line) in str(error.value)
    with pytest.raises(ValueError, match=r"trainval\.txt:2"):
        voc.object_names(root, "trainval")


def test_symbolic_links_out_of_the_folder_are_refused(tmp_path):
    outside = _outside_files(tmp_path / "outside")
    root = make_voc(tmp_path / "voc", {"a": ("a.jpg", rgb(), annotation("a.jpg", []))})
    (root / "Annotations" / "link.xml").symlink_to(outside / "x.xml")
    (root / "ImageSets" / "Main" / "linked.txt").write_text("a\nlink\n")
    with pytest.raises(ValueError, match=r"linked\.txt:2: 'link\.xml' leads to .*outside"):
        voc.read_voc(root, "linked")
    (root / "Annotations" / "sub").symlink_to(outside)
    (root / "ImageSets" / "Main" / "sub.txt").write_text("sub/x\n")
    with pytest.raises(ValueError, match=r"sub\.txt:1: 'sub/x\.xml' leads to .*outside"):
        voc.read_voc(root, "sub")
    # The image, found by <filename>, by <id>.jpg or by <id>.*: a link out of JPEGImages.
    for name in ("named.jpg", "b.jpg", "c.png"):
        image_id = name.split(".")[0] if name != "named.jpg" else "n"
        (root / "Annotations" / f"{image_id}.xml").write_text(annotation(name, []))
        (root / "JPEGImages" / name).symlink_to(outside / "x.jpg")
        (root / "ImageSets" / "Main" / "image.txt").write_text(f"{image_id}\n")
        with pytest.raises(ValueError, match=r"leads to .*outside .*JPEGImages"):
            voc.read_voc(root, "image")
    # A root that is itself a link, and a JPEGImages linked elsewhere, are the user's layout.
    (tmp_path / "alias").symlink_to(root)
    assert len(voc.read_voc(tmp_path / "alias", "trainval")[0]) == 1


def test_ids_with_subfolders_inside_the_root_are_read(tmp_path):
    root = make_voc(tmp_path, {})
    for folder in ("Annotations/2008", "JPEGImages/2008"):
        (root / folder).mkdir()
    (root / "Annotations" / "2008" / "000123.xml").write_text(annotation("000123.jpg", [("dog", 1, 1, 5, 5, 0)]))
    Image.fromarray(rgb()).save(root / "JPEGImages" / "2008" / "000123.jpg")
    (root / "Annotations" / "2008" / "000124.xml").write_text(annotation("missing.jpg", []))
    Image.fromarray(rgb()).save(root / "JPEGImages" / "2008" / "000124.png")
    (root / "ImageSets" / "Main" / "trainval.txt").write_text("2008/000123\n2008/000124\n")
    first, second = voc.read_voc(root, "trainval")[0]
    assert first.image_id == "2008/000123" and first.image_path.endswith("JPEGImages/2008/000123.jpg")
    assert second.image_path.endswith("JPEGImages/2008/000124.png") and len(first.boxes) == 1


@pytest.mark.parametrize("split", ["../trainval", "..", "a/b", ""])
def test_split_names_that_are_paths_are_refused(tmp_path, split):
    root = make_voc(tmp_path, {"a": ("a.jpg", rgb(), annotation("a.jpg", []))})
    with pytest.raises(ValueError, match="`split` must name a file in ImageSets/Main"):
        voc.read_voc(root, split)


def test_split_files_with_a_byte_order_mark_and_per_class_flags_are_read(tmp_path):
    entries = {i: (f"{i}.jpg", rgb(8, 8), annotation(f"{i}.jpg", [], size=(8, 8))) for i in ("000005", "000007")}
    root = make_voc(tmp_path, entries)
    main = root / "ImageSets" / "Main"
    (main / "trainval.txt").write_bytes("\ufeff000005\r\n000007\r\n".encode())
    (main / "dog_trainval.txt").write_text("000005\t-1\n\n000007  1\n")
    for split in ("trainval", "dog_trainval"):
        examples, names = voc.read_voc(root, split)
        assert [e.image_id for e in examples] == ["000005", "000007"]
    (root / "labels.txt").write_bytes("\ufeffä\nb\n".encode())
    assert voc.read_voc(root, "trainval")[1] == ("ä", "b")


@pytest.mark.parametrize("line", ["000005 000007", "my image", "000005 1 extra", "000005 yes"])
def test_split_lines_that_are_not_an_id_are_refused_not_cut(tmp_path, line):
    root = make_voc(tmp_path, {"000005": ("000005.jpg", rgb(8, 8), annotation("000005.jpg", [], size=(8, 8)))})
    (root / "ImageSets" / "Main" / "trainval.txt").write_text(f"000005\n\n{line}\n")
    with pytest.raises(ValueError, match=rf"trainval\.txt:3: '{line}' is not an image id.*'<id> -1'"):
        voc.read_voc(root, "trainval")


def test_split_and_labels_files_that_are_not_utf8_are_value_errors(tmp_path):
    root = make_voc(tmp_path, {"a": ("a.jpg", rgb(8, 8), annotation("a.jpg", [], size=(8, 8)))})
    (root / "ImageSets" / "Main" / "latin.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin\.txt is not UTF-8 text.*one image id per line"):
        voc.read_voc(root, "latin")
    (root / "labels.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"labels\.txt is not UTF-8 text.*one class name per line"):
        voc.read_voc(root, "trainval")


def test_a_size_that_is_not_the_image_s_is_warned_about_and_boxes_follow_the_pixels(tmp_path, caplog):
    objects = [("dog", 101, 101, 200, 200, 0), ("cat", 11, 6, 50, 20, 0)]  # the dog lies off the 30 x 30 pixels
    root = make_voc(tmp_path, {"a": ("a.png", rgb(30, 30), annotation("a.png", objects, size=(300, 300)))})
    with caplog.at_level(logging.WARNING, logger="keras_spp.data.voc"):
        (example,) = voc.read_voc(root, "trainval")[0]
    assert (example.height, example.width) == (30, 30)
    np.testing.assert_array_equal(example.boxes, [[5, 10, 20, 30]])
    np.testing.assert_array_equal(example.labels, [voc.VOC_CLASSES.index("cat")])
    first, dropped = (r.getMessage() for r in caplog.records)
    assert "a.xml: <size> says 300x300 (HxW) but" in first and "a.png is 30x30" in first
    assert "Dropping object 0 ('dog')" in dropped and "30x30 image" in dropped


def _turned_jpeg(path, orientation):
    image = Image.fromarray(rgb(10, 20))
    exif = image.getexif()
    exif[0x0112] = orientation
    image.save(path, exif=exif)


def test_a_size_of_the_exif_turned_image_is_refused(tmp_path, caplog):
    xml = annotation("t.jpg", [("dog", 1, 1, 10, 20, 0)], size=(20, 10))
    root = make_voc(tmp_path, {"t": (None, None, xml)})
    _turned_jpeg(root / "JPEGImages" / "t.jpg", 6)
    with pytest.raises(ValueError, match=r"t\.xml: <size> says 20x10 .*t\.jpg.*EXIF orientation 6.*are 10x20"):
        voc.read_voc(root, "trainval")
    # Without a quarter turn in the EXIF, swapped sides are a size that is wrong: a warning.
    _turned_jpeg(root / "JPEGImages" / "t.jpg", 3)
    with caplog.at_level(logging.WARNING, logger="keras_spp.data.voc"):
        (example,) = voc.read_voc(root, "trainval")[0]
    assert (example.height, example.width) == (10, 20) and "says 20x10 (HxW)" in caplog.text
    # A <size> of the stored pixels is right, whatever the EXIF says.
    _turned_jpeg(root / "JPEGImages" / "t.jpg", 6)
    (root / "Annotations" / "t.xml").write_text(annotation("t.jpg", [("dog", 1, 1, 10, 20, 0)], size=(10, 20)))
    (example,) = voc.read_voc(root, "trainval")[0]
    assert (example.height, example.width) == (10, 20) and len(example.boxes) == 1


def test_an_id_listed_twice_is_refused_naming_both_lines(tmp_path):
    root = make_voc(tmp_path, {i: (f"{i}.jpg", rgb(8, 8), annotation(f"{i}.jpg", [], size=(8, 8))) for i in "ab"})
    (root / "ImageSets" / "Main" / "trainval.txt").write_text("a\nb\n\na 1\n")
    with pytest.raises(ValueError, match=r"trainval\.txt:4: image id 'a' is listed again \(first on line 1\)"):
        voc.read_voc(root, "trainval")


def test_write_voc_refuses_ids_that_read_voc_would_refuse(tmp_path):
    for image_id in ("a\x01b", "a\x7f"):
        with pytest.raises(ValueError, match="control characters"):
            voc.write_voc(tmp_path, "trainval", [(image_id, np.zeros([4, 4], np.uint8), [], [], None)], ("x",))


def test_write_voc_saves_each_file_aside_then_renames_it(tmp_path, monkeypatch):
    item = ("a", np.zeros([4, 4], np.uint8), [], [], None)
    root = voc.write_voc(tmp_path, "trainval", [item, ("b", *item[1:])], ("x",))
    before = {path: path.read_bytes() for path in root.rglob("*") if path.is_file()}
    assert {oct(path.stat().st_mode & 0o777) for path in before} == {"0o644"}

    replace = os.replace

    def interrupted_at(name):
        def interrupted(source, target):
            if os.path.basename(target) == name:
                raise KeyboardInterrupt
            replace(source, target)

        return interrupted

    # Interrupted at each file while writing the split again with one image: every file stays whole and
    # as it was (the split file lists both images), and no temporary file is left.
    for name in ("a.png", "a.xml", "trainval.txt"):
        monkeypatch.setattr(voc.os, "replace", interrupted_at(name))
        with pytest.raises(KeyboardInterrupt):
            voc.write_voc(tmp_path, "trainval", [item], ("x",))
        monkeypatch.undo()
        assert {path: path.read_bytes() for path in root.rglob("*") if path.is_file()} == before
    assert [e.image_id for e in voc.read_voc(root, "trainval")[0]] == ["a", "b"]
