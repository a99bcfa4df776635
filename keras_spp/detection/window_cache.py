"""The on-disk cache of training windows' pooled features.

Training reads window features many times (fine-tuning, box regression, SVM
mining), and a data set's worth of them does not fit in memory: PASCAL VOC 2007
at ~2000 windows an image and 12800-d features is ~256 GB in float16. So each
image's features live in a file of their own (a shard), and training streams
them: memory holds one image's features at a time, plus bounded buffers.

A shard is written aside and renamed in, so a run killed while caching restarts
from the shards it finished. It holds the image's windows, their features and the
cache ``key``: the network's weights fingerprint and every setting the features
depend on. A shard whose key, windows or arrays do not match what is asked for
(corrupt, cut short, from another network) is recomputed with a warning. Shard
names are a hash of the image's identity (its id, file path, size and time), so
no path is ever made from an image id, and two data sets never share a shard.
"""

import atexit
import dataclasses
import hashlib
import logging
import os
import shutil
import tempfile
import zipfile

import numpy as np

log = logging.getLogger(__name__)

CACHE_DTYPES = ("float16", "float32")


@dataclasses.dataclass
class ImageWindows:
    """One training image's windows: ground truth first (``num_gt`` rows), then
    proposals; ``max_iou``/``gt_index`` against the image's ground truth. The
    features stay on disk in ``path`` (``features`` reads them)."""

    image_id: str
    windows: np.ndarray
    num_gt: int
    max_iou: np.ndarray
    gt_index: np.ndarray
    path: str
    # A ConvMapCache pools the features from its shard's conv5 maps on demand.
    source: object = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def features(self):
        """``[N, D]`` in the cache's dtype, read from the shard (or pooled from it)."""
        return self.features_of(None)

    def features_of(self, rows=None):
        """The features of windows ``rows`` (``None``: all), ``[len(rows), D]``."""
        if self.source is not None:
            return self.source.features_of(self, rows)
        with np.load(self.path) as shard:
            features = shard["features"]
        return features if rows is None else features[rows]


class WindowFeatureCache:
    """Shards of one network's window features under ``root``.

    ``key``: a string naming everything the features depend on (the network's
    weights, scales, levels, ...); shards written under another key are recomputed.
    ``dtype``: what features are stored as (float16 halves the disk of float32 and
    keeps 3 significant digits, more than the fc layers resolve).
    """

    def __init__(self, root=None, key="", dtype="float16"):
        if dtype not in CACHE_DTYPES:
            raise ValueError(f"`dtype` must be one of {CACHE_DTYPES}; got {dtype!r}.")
        if root is None:  # a throw-away cache: features still must not sit in memory
            root = tempfile.mkdtemp(prefix="keras_spp-windows-")
            atexit.register(shutil.rmtree, root, True)
        os.makedirs(root, exist_ok=True)
        self.root = root
        self.key = str(key)
        self.dtype = np.dtype(dtype)

    def shard_path(self, example):
        """The shard of ``example`` (a ``DetectionExample``)."""
        identity = [str(example.image_id), os.path.realpath(example.image_path)]
        try:
            stat = os.stat(example.image_path)
            identity += [str(stat.st_size), str(stat.st_mtime_ns)]
        except OSError:
            pass
        digest = hashlib.sha1("\0".join(identity).encode("utf-8", "surrogatepass")).hexdigest()[:24]
        return os.path.join(self.root, f"{digest}.npz")

    def load(self, path, windows):
        """The cached features of exactly these ``windows``, else None (then the
        caller recomputes them): a missing shard silently, a mismatched or
        unreadable one with a warning."""
        if not os.path.exists(path):
            return None
        try:
            with np.load(path) as shard:
                key, cached_windows, features = str(shard["key"]), shard["windows"], shard["features"]
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as error:
            log.warning(
                "window-feature shard %s is unreadable (%s: %s); recomputing it", path, type(error).__name__, error
            )
            return None
        if key != self.key:
            log.warning("window-feature shard %s is from another network or settings (%s); recomputing it", path, key)
            return None
        if cached_windows.shape != windows.shape or not np.array_equal(cached_windows, windows):
            log.warning("window-feature shard %s holds other windows; recomputing it", path)
            return None
        if features.ndim != 2 or len(features) != len(windows) or features.dtype != self.dtype:
            log.warning(
                "window-feature shard %s holds %s %s features for %d windows; recomputing it",
                path,
                features.shape,
                features.dtype,
                len(windows),
            )
            return None
        return features

    def save(self, path, windows, features):
        """Writes a shard aside, then renames it in (a killed run leaves no half shard)."""
        save_npz_aside(path, key=np.array(self.key), windows=windows, features=features.astype(self.dtype))

    def disk_bytes(self):
        """Bytes of the shards under ``root``."""
        return sum(entry.stat().st_size for entry in os.scandir(self.root) if entry.name.endswith(".npz"))


class ConvMapCache(WindowFeatureCache):
    """Shards of each image's conv5 maps, one for each scale its windows are pooled
    at, instead of the windows' features: the features are pooled from them with the
    RoI op when read (``ImageWindows.features_of``), exactly as ``roi`` would pool
    them from the image.

    Which is smaller depends on the windows an image keeps: a 500x375 image's conv5
    at the paper's five scales is 16810 cells x 256 channels (8.6 MB in float16),
    the features of its 2000 windows 2000 x 12800 (51 MB). docs/detection.md,
    "Training at scale", has the measured disk and time of both.
    """

    def __init__(self, roi, root=None, key="", dtype="float16"):
        super().__init__(root, key, dtype)
        import tensorflow as tf

        self.roi = roi
        channels = roi.backbone.output_shape[-1]
        self._pool = tf.function(
            roi.pool_map,
            input_signature=[
                tf.TensorSpec([1, None, None, channels], roi.compute_dtype),
                tf.TensorSpec([None, 4], tf.float32),
                tf.TensorSpec([2], tf.int32),
            ],
        )
        self._conv = tf.function(
            lambda image, factor: roi.feature_map(image, factor),
            input_signature=[tf.TensorSpec([1, None, None, 3], tf.float32), tf.TensorSpec([], tf.float32)],
        )

    def plan(self, height, width, windows):
        """``(factors float32 [S], chosen scale of each window [R])`` as ``roi`` pools them."""
        import tensorflow as tf

        from keras_spp.detection import scales as scales_lib

        factors = scales_lib.resize_factors(height, width, self.roi.scales, self.roi.max_side)
        chosen = scales_lib.choose_scales(tf.constant(windows, tf.float32), factors, self.roi.window_size)
        return factors.numpy(), chosen.numpy()

    def load(self, path, windows):
        """The shard's maps ``{scale index: [h, w, C]}`` for exactly these windows, else None."""
        if not os.path.exists(path):
            return None
        try:
            with np.load(path) as shard:
                key, cached_windows, maps = str(shard["key"]), shard["windows"], _maps(shard)
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as error:
            log.warning("conv5 shard %s is unreadable (%s: %s); recomputing it", path, type(error).__name__, error)
            return None
        if key != self.key:
            log.warning("conv5 shard %s is from another network or settings (%s); recomputing it", path, key)
            return None
        if cached_windows.shape != windows.shape or not np.array_equal(cached_windows, windows):
            log.warning("conv5 shard %s was made for other windows; recomputing it", path)
            return None
        return maps

    def compute(self, path, image, windows):
        """Computes the maps of every scale ``windows`` use and writes the shard."""
        import tensorflow as tf

        factors, chosen = self.plan(image.shape[0], image.shape[1], windows)
        maps = {}
        for i in np.unique(chosen) if len(windows) else []:
            conv5 = self._conv(tf.constant(image[None], tf.float32), tf.constant(factors[i], tf.float32))
            maps[f"map_{int(i)}"] = conv5[0].numpy().astype(self.dtype)
        size = np.array(image.shape[:2], np.int32)
        save_npz_aside(path, key=np.array(self.key), windows=windows, image_size=size, **maps)

    def features_of(self, record, rows=None):
        import tensorflow as tf

        from keras_spp.detection import scales as scales_lib

        with np.load(record.path) as shard:
            height, width = (int(v) for v in shard["image_size"])
            maps = _maps(shard)
        windows = record.windows if rows is None else record.windows[rows]
        out = np.zeros((len(windows), self.roi.output_dim), self.dtype)
        if not len(windows):
            return out
        factors, chosen = self.plan(height, width, windows)
        for i in np.unique(chosen):
            where = np.flatnonzero(chosen == i)
            size = scales_lib.resized_size(height, width, tf.constant(factors[i], tf.float32))
            boxes = tf.constant(windows[where], tf.float32) * tf.constant(factors[i], tf.float32)
            conv5 = tf.constant(maps[int(i)][None], self.roi.compute_dtype)
            out[where] = self._pool(conv5, boxes, size).numpy()
        return out


def _maps(shard):
    """A conv5 shard's maps, ``{scale index: [h, w, C]}``."""
    return {int(name[len("map_") :]): shard[name] for name in shard.files if name.startswith("map_")}


def save_npz_aside(path, **arrays):
    """``np.savez(path, **arrays)`` written to a temporary file beside ``path`` and
    renamed in: a killed run leaves the old file or none, never half a one."""
    temporary = f"{path}.{os.getpid()}.tmp.npz"
    try:
        np.savez(temporary, **arrays)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def estimate_cache_bytes(window_counts, feature_dim, dtype="float16"):
    """Disk the shards of images with these window counts will take (features,
    windows and the file's few hundred bytes of headers)."""
    counts = np.asarray(list(window_counts), np.int64)
    per_window = int(feature_dim) * np.dtype(dtype).itemsize + 4 * 4
    return int(counts.sum() * per_window + 512 * len(counts))


def check_disk_budget(needed_bytes, folder, budget_bytes=None, what="the window-feature cache"):
    """``ValueError`` with the numbers when ``needed_bytes`` will not fit in the free
    disk of ``folder`` (less 5% for everything else) or in ``budget_bytes``."""
    os.makedirs(folder, exist_ok=True)
    free = shutil.disk_usage(folder).free
    limit = int(free * 0.95) if budget_bytes is None else min(int(budget_bytes), int(free * 0.95))
    if needed_bytes > limit:
        source = "free disk" if budget_bytes is None or budget_bytes > free * 0.95 else "the cache budget"
        raise ValueError(
            f"{what} needs an estimated {_gb(needed_bytes)} in {folder}, more than {source} allows "
            f"({_gb(limit)}; {_gb(free)} free). Bound it: fewer windows an image (--max-train-windows), "
            "fewer images (--max-train), or another folder (--cache-dir)."
        )
    return limit


def _gb(count):
    return f"{count / 1e9:.2f} GB"
