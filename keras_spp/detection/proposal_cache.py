"""A data set's selective search proposals as a detector trains and tests on them:
the search settings, where they are cached, and the boxes with the time they took.

``keras_spp.detection.proposals`` runs the search and keys each setting's folder;
this module names the data set's cache root and reads a trained detector's
settings back (``trained_search_params``), so that detection at test time searches
as the training did.
"""

import hashlib
import os
import time

import numpy as np

# selective_search's own defaults, where a detector's metadata holds none.
DEFAULT_MIN_SIZE = 20
DEFAULT_MAX_PROPOSALS = 2000


class Proposals(dict):
    """``{image_id: boxes}`` with the seconds it took to compute the missing ones."""

    seconds = 0.0

    def summary(self):
        """One line: boxes per image (mean, min, max) and the seconds."""
        counts = [len(boxes) for boxes in self.values()]
        return (
            f"proposals: {np.mean(counts) if counts else 0:.0f} per image on average (min {min(counts, default=0)}, "
            f"max {max(counts, default=0)}), {self.seconds:.0f} s"
        )


def search_params(*, max_proposals=DEFAULT_MAX_PROPOSALS, min_size=DEFAULT_MIN_SIZE, max_side=None, base_k=None):
    """``selective_search``'s keyword arguments; ``max_side`` 0 or ``None``: full size.

    >>> search_params(max_proposals=500, min_size=4, max_side=0, base_k=100)
    {'min_size': 4, 'max_proposals': 500, 'max_side': None, 'base_k': 100}
    """
    return {"min_size": min_size, "max_proposals": max_proposals, "max_side": max_side or None, "base_k": base_k}


def trained_search_params(stored):
    """``search_params`` from a detector's ``metadata["proposals"]`` (as
    ``recipes.train_detector`` writes it); selective search's defaults where it holds none.

    >>> trained_search_params({"max": 300, "min_size": 4})
    {'min_size': 4, 'max_proposals': 300, 'max_side': None, 'base_k': None}
    """
    return search_params(
        max_proposals=stored.get("max", DEFAULT_MAX_PROPOSALS),
        min_size=stored.get("min_size", DEFAULT_MIN_SIZE),
        max_side=stored.get("max_side"),
        base_k=stored.get("base_k"),
    )


def proposals_tag(search, precomputed=None):
    """A short name for these proposals (a window feature cache's key, one file-name
    component): ``search`` from ``search_params``, or the folder or file of
    ``precomputed`` ones: its name, then a hash of its real path and, for a file, its
    size and modification time, so that two files of one name, or a file replaced,
    never share cached features.

    >>> proposals_tag(search_params(max_proposals=500, min_size=4, max_side=0))
    'ss500-m4-s0'
    >>> proposals_tag(search_params(), precomputed="/data/boxes.npz")  # doctest: +ELLIPSIS
    'pre-boxes.npz-...'
    """
    if precomputed:
        from keras_spp.data.paths import safe_file_stem

        path = os.path.realpath(os.path.expanduser(os.fspath(precomputed)))
        identity = [path]
        if os.path.isfile(path):
            stat = os.stat(path)
            identity += [str(stat.st_size), str(stat.st_mtime_ns)]
        digest = hashlib.sha1("\0".join(identity).encode("utf-8", "surrogatepass")).hexdigest()[:10]
        return safe_file_stem(f"pre-{os.path.basename(path)[:60]}-{digest}")
    tag = f"ss{search['max_proposals']}-m{search['min_size']}-s{search['max_side'] or 0}"
    return tag if search["base_k"] is None else f"{tag}-k{search['base_k']}"


def proposal_cache(data_dir, dataset):
    """Where a data set's selective search boxes are cached (one folder per setting
    inside); ``data_dir`` ``None``: ``keras_spp.data.mnist.data_dir()``.

    The folder's name is ``keras_spp.data.paths.safe_file_stem`` of the data set's
    name, with a ``voc:<path>``'s path made absolute and real first: one folder per
    data set, never shared by two (the boxes inside are keyed by image id alone).

    >>> proposal_cache("/data", "voc:/my/VOC 2007")
    '/data/proposals/voc%3A%2Fmy%2FVOC%202007'
    >>> proposal_cache("/data", "mnist-detection")
    '/data/proposals/mnist-detection'
    """
    from keras_spp.data.mnist import data_dir as default_data_dir

    return os.path.join(data_dir or default_data_dir(), "proposals", _dataset_tag(dataset))


def proposals_for(examples, *, precomputed=None, cache_dir=None, search=None):
    """``Proposals`` for ``examples``: read from ``precomputed`` (``.npz``, ``.mat`` or
    a folder of ``.npy``) if given, else selective search with ``search``
    (``search_params``), cached under ``cache_dir`` (``proposal_cache``)."""
    from keras_spp.detection.proposals import compute_proposals, load_precomputed_proposals

    ids = [e.image_id for e in examples]
    start = time.perf_counter()
    if precomputed:
        found = load_precomputed_proposals(precomputed, ids)
    else:
        if cache_dir is None:
            raise ValueError("`cache_dir` is required for selective search (proposal_cache(data_dir, dataset)).")
        found = compute_proposals(examples, cache_dir, **(search or search_params()))
    proposals = Proposals(found)
    proposals.seconds = time.perf_counter() - start
    return proposals


def _dataset_tag(name):
    from keras_spp.data.paths import safe_file_stem

    if name.startswith("voc:"):
        # A relative path names another folder from another working directory.
        name = "voc:" + os.path.realpath(os.path.expanduser(name[len("voc:") :]))
    return safe_file_stem(name)
