"""train_detector --classes: naming the classes of a VOC-layout export."""

import numpy as np
import pytest

from keras_spp.data import detection_sources, voc
from recipes import train_detector


def export(root, names_per_split, class_names, labels_txt=False):
    """A VOC folder whose splits hold one image per object name given."""
    for split, names in names_per_split.items():
        items = [
            (f"{split}{i}", np.zeros((16, 16, 3), np.uint8), [[1, 1, 9, 9]], [class_names.index(n)], [False])
            for i, n in enumerate(names)
        ]
        voc.write_voc(root, split, items, class_names)
    if not labels_txt:
        (root / voc.LABELS_FILE).unlink()
    return root


def options(root, *flags):
    return train_detector.dataset_options(train_detector.parse_args(["--dataset", f"voc:{root}", *flags]))


def load(root, split, *flags):
    return detection_sources.load_detection(f"voc:{root}", split, **options(root, *flags))


def test_a_custom_export_without_labels_txt_gets_its_training_objects_names(tmp_path, capsys):
    root = export(tmp_path, {"trainval": ["zebra", "okapi", "zebra"], "test": ["okapi"]}, ("zebra", "okapi"))
    with pytest.raises(ValueError, match="'zebra', which is not among the class names"):
        voc.read_voc(root, "trainval")  # the library's default: the 20 VOC classes
    examples, names = load(root, "trainval")
    assert names == ("okapi", "zebra") and [e.labels.tolist() for e in examples] == [[1], [0], [1]]
    assert "classes inferred from 'trainval': okapi, zebra" in capsys.readouterr().out
    test, test_names = load(root, "test")
    assert test_names == names and test[0].labels.tolist() == [0]


def test_classes_given_fix_the_order(tmp_path):
    root = export(tmp_path, {"trainval": ["zebra", "okapi"]}, ("zebra", "okapi"))
    examples, names = load(root, "trainval", "--classes", "zebra,okapi,gnu")
    assert names == ("zebra", "okapi", "gnu") and [e.labels.tolist() for e in examples] == [[0], [1]]


def test_voc_names_and_labels_txt_keep_the_library_default(tmp_path):
    voc_export = export(tmp_path / "a", {"trainval": ["dog", "cat"]}, voc.VOC_CLASSES)
    assert options(voc_export) == {}
    assert load(voc_export, "trainval")[1] == voc.VOC_CLASSES
    with_labels = export(tmp_path / "b", {"trainval": ["zebra"]}, ("zebra", "okapi"), labels_txt=True)
    assert options(with_labels) == {} and load(with_labels, "trainval")[1] == ("zebra", "okapi")
    # 'infer' overrides both.
    assert options(voc_export, "--classes", "infer") == {"class_names": ["cat", "dog"]}


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--classes", "a,,b"], "distinct, non-empty names"),
        (["--classes", "a,a"], "distinct, non-empty names"),
        (["--train-split", "nope"], "No split file .* splits there: trainval"),
    ],
)
def test_bad_classes_are_refused_with_what_is_accepted(tmp_path, flags, message):
    root = export(tmp_path, {"trainval": ["zebra"]}, ("zebra",))
    with pytest.raises(SystemExit, match=message):
        options(root, *flags)


def test_an_export_without_objects_cannot_name_classes(tmp_path):
    voc.write_voc(tmp_path, "trainval", [("e", np.zeros((8, 8, 3), np.uint8), np.zeros((0, 4)), [], [])], ("x",))
    (tmp_path / voc.LABELS_FILE).unlink()
    assert voc.object_names(tmp_path, "trainval") == ()
    with pytest.raises(SystemExit, match="has no objects to name classes from"):
        options(tmp_path, "--classes", "infer")


def test_classes_are_for_voc_folders_only():
    with pytest.raises(SystemExit, match="--classes applies to voc:<path>"):
        train_detector.dataset_options(train_detector.parse_args(["--classes", "a,b"]))


@pytest.mark.parametrize(
    "splits, classes",
    [
        ({"trainval": ["zebra"], "test": ["okapi"]}, "auto"),  # a class only the test split has
        ({"trainval": ["zebra"], "test": ["zebra"]}, "Zebra"),  # names are case-sensitive
    ],
)
def test_a_class_the_names_lack_is_an_error_naming_the_flag(tmp_path, splits, classes):
    root = export(tmp_path, splits, ("zebra", "okapi"))
    args = train_detector.parse_args(["--dataset", f"voc:{root}", "--classes", classes, "--out", str(tmp_path / "o")])
    with pytest.raises(SystemExit, match=r"--dataset voc:.*not among the class names.*pass --classes a,b,\.\.\."):
        train_detector.load_data(args)
