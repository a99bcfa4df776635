import os
import types

import numpy as np
import pytest

from keras_spp.detection import proposal_cache


def test_search_params_are_selective_search_keywords_and_a_detector_reads_its_own_back():
    search = proposal_cache.search_params(max_proposals=500, min_size=4, max_side=0, base_k=100)
    assert search == {"min_size": 4, "max_proposals": 500, "max_side": None, "base_k": 100}
    # As train_detector stores them in the detector's metadata.
    stored = {"max": 500, "min_size": 4, "max_side": None, "base_k": 100}
    assert proposal_cache.trained_search_params(stored) == search
    assert proposal_cache.trained_search_params({}) == {
        "min_size": 20,
        "max_proposals": 2000,
        "max_side": None,
        "base_k": None,
    }


def test_tags_name_the_setting_as_window_feature_caches_have_always_been_keyed():
    tag = proposal_cache.proposals_tag
    assert tag(proposal_cache.search_params()) == "ss2000-m20-s0"
    assert (
        tag(proposal_cache.search_params(max_proposals=300, min_size=4, max_side=400, base_k=50)) == "ss300-m4-s400-k50"
    )
    assert tag(proposal_cache.search_params(), precomputed="/some/where/boxes/").startswith("pre-boxes-")


def test_precomputed_proposals_of_one_name_in_two_places_have_two_tags(tmp_path):
    tag = proposal_cache.proposals_tag
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        np.savez(tmp_path / folder / "boxes.npz", x=np.zeros([1, 4]))
    first, second = (tag(None, precomputed=str(tmp_path / f / "boxes.npz")) for f in ("a", "b"))
    assert first.startswith("pre-boxes.npz-") and first != second
    assert tag(None, precomputed=str(tmp_path / "a" / ".." / "a" / "boxes.npz")) == first  # one file, one tag
    np.savez(tmp_path / "a" / "boxes.npz", x=np.zeros([2, 4]))  # replaced: its features are stale
    assert tag(None, precomputed=str(tmp_path / "a" / "boxes.npz")) != first
    odd = tag(None, precomputed=str(tmp_path / ("x" * 300 + " ..")))
    assert "/" not in odd and not odd.startswith(".") and len(odd) <= 200


def test_precomputed_proposals_are_read_and_timed(tmp_path):
    boxes = {"a": np.array([[0, 0, 5, 5]], np.float32), "b": np.zeros((0, 4), np.float32)}
    np.savez(tmp_path / "boxes.npz", **boxes)
    examples = [types.SimpleNamespace(image_id=i) for i in ("a", "b")]
    proposals = proposal_cache.proposals_for(examples, precomputed=str(tmp_path / "boxes.npz"))
    assert isinstance(proposals, proposal_cache.Proposals) and proposals.seconds >= 0
    np.testing.assert_array_equal(proposals["a"], boxes["a"])
    assert proposals["b"].shape == (0, 4)
    assert proposals.summary().startswith("proposals: 0 per image on average (min 0, max 1)")


def test_selective_search_needs_a_cache_folder():
    with pytest.raises(ValueError, match="cache_dir"):
        proposal_cache.proposals_for([], search=proposal_cache.search_params())


def test_each_data_set_has_its_own_cache_folder(tmp_path, monkeypatch):
    folder = proposal_cache.proposal_cache
    assert folder(str(tmp_path), "mnist-detection") == str(tmp_path / "proposals" / "mnist-detection")
    names = ["voc:/a b/VOC", "voc:/a_b/VOC", "voc:/a/b/VOC", "tfds:voc/2007", "tfds:voc_2007", "..", "."]
    folders = [folder(str(tmp_path), name) for name in names]
    assert len(set(folders)) == len(names)
    assert all(os.path.dirname(f) == str(tmp_path / "proposals") and f.split(os.sep)[-1][0] != "." for f in folders)
    # The same relative path from two working directories is two data sets; a link, one.
    (tmp_path / "one" / "voc").mkdir(parents=True)
    (tmp_path / "two" / "voc").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "one" / "voc")
    monkeypatch.chdir(tmp_path / "one")
    first = folder(str(tmp_path), "voc:voc")
    assert first == folder(str(tmp_path), f"voc:{tmp_path}/link")
    monkeypatch.chdir(tmp_path / "two")
    assert folder(str(tmp_path), "voc:voc") != first
