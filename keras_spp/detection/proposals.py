"""Selective search region proposals (the paper's section 4: "fast" mode, about
2,000 candidates per image), a disk cache for them, and precomputed ones.

Conventions:
  * Boxes are float32 ``[K, 4]`` as ``[y1, x1, y2, x2]`` in continuous pixels of the
    stored image (``keras_spp.data.detection_examples``): width is ``x2 - x1``.
    OpenCV's rect ``(x, y, w, h)`` covers pixel columns ``x .. x + w - 1``, so it
    becomes ``[y, x, y + h, x + w]``; every box lies inside the image.
  * Order is OpenCV's ranking, best first, and it is reproducible (below), so "the
    top ``max_proposals``" names the same boxes on every run.
  * ``K = 0`` is a valid result (an image smaller than ``min_size``, a zero-size image,
    an unreadable file in ``compute_proposals``).

Why OpenCV's order varies, and how it is fixed: ``hierarchicalGrouping`` in
opencv_contrib's ``selectivesearchsegmentation.cpp`` ranks each region by
``rand() / RAND_MAX * level`` with the C library's ``rand()``, not ``cv::theRNG``,
so ``cv2.setRNGSeed`` has no effect. The C generator is one per process and is never
reseeded: a fresh process's first call is always the same, and every later call in it
differs. ``selective_search`` calls the C library's ``srand(seed)`` right before
``process()`` (under a lock, since the state is process-wide), which makes the ranking
a function of the image, the mode and the seed, in any process and any call. The
rest of the algorithm is deterministic: same boxes for any ``cv2.setNumThreads``.
With glibc ``srand(0)`` equals ``srand(1)``, the state of a fresh process, so
``seed=0`` reproduces what plain OpenCV gives on its first call. Where the C library
cannot be found (no ``srand`` through ``ctypes``), a warning says the order will vary.
"""

import ctypes
import ctypes.util
import hashlib
import json
import logging
import multiprocessing
import os
import sys
import tempfile
import threading
import warnings

import numpy as np
from tqdm.auto import tqdm

from keras_spp.data.paths import name_from_stem, safe_file_stem
from keras_spp.data.voc import load_image
from keras_spp.validation import is_number, positive_int

logger = logging.getLogger(__name__)

# mode -> the SelectiveSearchSegmentation method that configures it (OpenCV's
# defaults: k = 150 (+150 per extra segmentation; 200 for "single"), sigma = 0.8).
MODES = {
    "fast": "switchToSelectiveSearchFast",
    "quality": "switchToSelectiveSearchQuality",
    "single": "switchToSingleStrategy",
}
BOX_ORDERS = ("yxyx", "xyxy")

# Part of the cache key: bump it when the boxes this module produces for the same
# parameters change, so old caches are never read as current.
_CACHE_VERSION = 1

# srand/rand share one process-wide state; two threads interleaving them would make
# each other's rankings unreproducible.
_RAND_LOCK = threading.Lock()
_SRAND = None
_SRAND_MISSING_WARNED = False


def selective_search(image, mode="fast", min_size=20, max_proposals=2000, seed=0, max_side=None, base_k=None):
    """Selective search boxes of one image, best-ranked first.

    Args:
      image: uint8 ``[H, W, 3]`` RGB, or grayscale ``[H, W]`` / ``[H, W, 1]``
        (repeated to three channels).
      mode: ``"fast"`` (the paper's and R-CNN's setting: 2 colour spaces x 3
        segmentations x 2 strategies), ``"quality"`` (5 x 5 x 4, several times
        slower) or ``"single"`` (one segmentation, one strategy).
      min_size: boxes with height or width below this many pixels are dropped (a
        third of OpenCV's boxes are 1-2 px wide slivers).
      max_proposals: keep at most this many, the best-ranked; ``None`` keeps all.
      seed: seeds the ranking (module docstring); an int in ``[0, 2**32)``.
      max_side: if set, an image whose longer side exceeds it is searched at that
        size (area-averaged downscale) and the boxes are scaled back; the search
        costs about linearly in pixels. ``min_size`` still applies in the
        original image's pixels. ``None`` (default) searches the image as it is.
      base_k: the scale parameter ``k`` of the first graph segmentation
        (Felzenszwalb-Huttenlocher); the others step up by the same amount, so
        ``base_k=100`` in fast mode segments at k = 100, 200, 300. Smaller k gives
        smaller regions and more boxes around small objects. ``None`` (default)
        keeps OpenCV's 150 (200 for ``"single"``); Uijlings et al.'s own fast mode
        used k = 50 and 100.

    Returns:
      float32 ``[K, 4]`` boxes ``[y1, x1, y2, x2]``, no two equal, each inside the
      image, in OpenCV's rank order, ``K <= max_proposals``. The same arguments give
      the same array, in order, in every call and every process. An image with
      height or width below ``min_size`` gives ``[0, 4]`` without running the
      search; a constant image gives one box, the whole image.

    Raises:
      ValueError: a bad image shape or dtype, or a bad parameter.
      ImportError: OpenCV without the contrib modules.

    Example:

    >>> image = np.zeros([60, 80, 3], np.uint8)
    >>> image[10:40, 20:50] = 255
    >>> boxes = selective_search(image, min_size=10)
    >>> boxes.dtype, boxes.shape[1], bool(np.all(boxes[:, 2:] <= [60, 80]))
    (dtype('float32'), 4, True)
    >>> selective_search(np.zeros([10, 10], np.uint8), min_size=20).shape
    (0, 4)
    """
    params = _check_params(mode, min_size, max_proposals, seed, max_side, base_k)
    bgr = _as_bgr(image)
    return _selective_search_bgr(bgr, **params)


def proposal_cache_dir(cache_dir, mode="fast", min_size=20, max_proposals=2000, seed=0, max_side=None, base_k=None):
    """The subfolder of ``cache_dir`` that holds boxes for these parameters.

    Its name is a short hash of the parameters, this module's cache version and the
    OpenCV version, so changing any of them never reads boxes made another way; a
    ``params.json`` inside says what they were. The folder is not created here.

    >>> proposal_cache_dir("cache") != proposal_cache_dir("cache", min_size=10)
    True
    """
    params = _check_params(mode, min_size, max_proposals, seed, max_side, base_k)
    key = dict(params, opencv=_cv2().__version__, cache_version=_CACHE_VERSION)
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return os.path.join(os.fspath(cache_dir), f"selective_search_{digest}")


def compute_proposals(examples, cache_dir, workers=None, progress=True, **params):
    """Selective search boxes for many images, cached on disk.

    Each image's boxes are ``<proposal_cache_dir>/<stem>.npy``, the stem
    ``keras_spp.data.paths.safe_file_stem(image_id)`` (the id itself if it is safe in a
    file name, else percent-encoded; ``/`` too, so an id never names a path), written
    atomically (a temporary file, then ``os.replace``), so an interrupted run or two
    runs at once never leave a partial file. Images already cached are read, the rest
    are computed, in parallel when ``workers > 1``.

    Args:
      examples: ``DetectionExample`` records, or any objects with ``image_id`` and
        ``image_path`` (and optionally ``height`` and ``width``, checked against the
        decoded image). Repeated ids are computed once. The cache is keyed by
        ``image_id`` alone: use one ``cache_dir`` per data set.
      cache_dir: the cache root; created if missing.
      workers: processes to compute with, default ``os.cpu_count()``. Worker
        processes are *spawned* (forking a process that has started TensorFlow's
        threads can deadlock), so each imports this package and your main module
        once, a few seconds next to 1-2 s per image; a script that calls this needs
        the usual ``if __name__ == "__main__":`` guard. ``workers=1``, or a single
        image to compute, runs in this process.
      progress: show a tqdm bar over the images being computed.
      **params: ``selective_search``'s ``mode``, ``min_size``, ``max_proposals``,
        ``seed``, ``max_side``, ``base_k``.

    Returns:
      dict ``image_id -> float32 [K, 4]`` boxes, in the order of ``examples``.

    Unreadable images (missing, corrupt, not an image) are logged as a warning that
    names the file and give ``[0, 4]``; they are not cached, so a repaired file is
    read on the next call. An unreadable cache file is recomputed and replaced.
    Images are read by ``keras_spp.data.voc.load_image``, the decoder every part of
    keras_spp uses (16-bit images scaled to their top 8 bits, EXIF orientation not
    applied), so the boxes refer to the pixels the detector sees.
    """
    params = _check_params(**params)
    workers = (os.cpu_count() or 1) if workers is None else positive_int("workers", workers, none="all CPUs")

    tasks = _unique_tasks(examples)
    folder = proposal_cache_dir(cache_dir, **params)
    os.makedirs(folder, exist_ok=True)
    _write_params(folder, params)

    results = {}
    missing = []
    for image_id, path, size in tasks:
        cached = _read_cached(os.path.join(folder, _file_name(image_id)))
        if cached is None:
            missing.append((image_id, path, size, params))
        else:
            results[image_id] = cached

    with tqdm(total=len(missing), desc="selective search", unit="img", disable=not progress or not missing) as bar:
        for image_id, boxes, readable, problem in _run(missing, workers):
            # Workers' log records would not reach this process's handlers.
            if problem:
                logger.warning("%s", problem)
            if readable:
                _save_atomic(os.path.join(folder, _file_name(image_id)), boxes)
            results[image_id] = boxes
            bar.update(1)
    return {image_id: results[image_id] for image_id, _, _ in tasks}


def load_precomputed_proposals(path, image_ids=None, box_order="yxyx", one_based=None):
    """Proposals computed elsewhere, as ``image_id -> float32 [K, 4] [y1, x1, y2, x2]``.

    Args:
      path: one of
        * a folder of ``<image_id>.npy`` files, each ``[K, 4]`` (a
          ``compute_proposals`` cache folder is one);
        * a ``.npz`` file keyed by image id;
        * a ``.mat`` file as R-CNN's ``selective_search_data`` ships them: a cell
          array ``boxes`` of ``[K, 4]`` and a cell array ``images`` of ids, in the
          same order (needs scipy; MATLAB v7.3 files are HDF5, which scipy cannot read).
      image_ids: the ids to load, in the order wanted; ``None`` loads all.
      box_order: the stored column order, ``"yxyx"`` (R-CNN's ``.mat`` files, this
        package's) or ``"xyxy"`` (Fast R-CNN's pickles, torchvision).
      one_based: the stored boxes are 1-based inclusive pixel indices (MATLAB's and
        VOC's), so the first corner is shifted by -1 and the second kept, giving
        continuous coordinates (as VOC's ``x1 = xmin - 1, x2 = xmax``). ``None``
        means ``True`` for ``.mat`` files and ``False`` otherwise.

    Raises:
      KeyError: an id in ``image_ids`` that ``path`` lacks; the message names both.
      FileNotFoundError: no ``path``.
      ValueError: a bad ``box_order``, an array that is not a finite ``[K, 4]``, a
        ``.mat`` without ``boxes`` and ``images``.

    Example:

    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "boxes.npz")
    >>> np.savez(path, img1=np.array([[10, 20, 110, 220]]))
    >>> load_precomputed_proposals(path, ["img1"], box_order="xyxy")["img1"].tolist()
    [[20.0, 10.0, 220.0, 110.0]]
    """
    if box_order not in BOX_ORDERS:
        raise ValueError(f"`box_order` must be one of {BOX_ORDERS}; got {box_order!r}.")
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"No precomputed proposals at {path}.")
    is_mat = path.lower().endswith(".mat")
    if one_based is None:
        one_based = is_mat
    if image_ids is not None:
        image_ids = [str(image_id) for image_id in image_ids]

    if os.path.isdir(path):
        raw = _load_folder(path, image_ids)
    elif is_mat:
        raw = _load_mat(path, image_ids)
    else:
        raw = _load_npz(path, image_ids)

    boxes = {}
    for image_id, array in raw.items():
        boxes[image_id] = _convert_precomputed(array, box_order, one_based, image_id, path)
    return boxes


# --- selective search ---------------------------------------------------------------


def _check_params(mode="fast", min_size=20, max_proposals=2000, seed=0, max_side=None, base_k=None):
    """The parameters, validated and normalised (so 20 and 20.0 hash alike)."""
    if mode not in MODES:
        raise ValueError(f"`mode` must be one of {tuple(MODES)}; got {mode!r}.")
    if not is_number(min_size) or min_size < 0:
        raise ValueError(f"`min_size` must be a finite number of pixels >= 0; got {min_size!r}.")
    positive_int("max_proposals", max_proposals, allow_zero=True, none="keep all")
    positive_int("seed", seed, allow_zero=True, maximum=2**32 - 1, hint="it seeds C's srand")
    positive_int("max_side", max_side, none="search at full size")
    positive_int("base_k", base_k, hint="e.g. 150", none="OpenCV's default")
    params = {
        "mode": mode,
        "min_size": float(min_size),
        "max_proposals": None if max_proposals is None else int(max_proposals),
        "seed": int(seed),
    }
    if max_side is not None:
        # Only when set, so caches made before the option existed keep their key.
        params["max_side"] = int(max_side)
    if base_k is not None:
        params["base_k"] = int(base_k)
    return params


def _as_bgr(image):
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(
            f"`image` must be uint8 (0-255); got dtype {image.dtype}. Convert a [0, 1] float "
            "image with np.round(image * 255).astype(np.uint8)."
        )
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        return np.ascontiguousarray(np.repeat(image[:, :, np.newaxis], 3, axis=2))
    if image.ndim == 3 and image.shape[2] == 3:
        return np.ascontiguousarray(image[:, :, ::-1])
    raise ValueError(
        "`image` must be [H, W, 3] RGB or grayscale [H, W] / [H, W, 1]; got shape "
        f"{image.shape}. Drop an alpha channel with image[..., :3]."
    )


def _selective_search_bgr(bgr, mode, min_size, max_proposals, seed, max_side=None, base_k=None):
    height, width = bgr.shape[:2]
    if min(height, width) == 0 or min(height, width) < min_size or max_proposals == 0:
        return np.zeros([0, 4], np.float32)
    if max_side is not None and max(height, width) > max_side:
        factor = max_side / max(height, width)
        size = (max(1, round(width * factor)), max(1, round(height * factor)))
        small = _cv2().resize(bgr, size, interpolation=_cv2().INTER_AREA)
        scale = np.array([height / size[1], width / size[0]] * 2, np.float64)
        boxes = _selective_search_bgr(small, mode, 0, None, seed, base_k=base_k).astype(np.float64) * scale
        boxes = np.minimum(np.round(boxes), [height, width, height, width])
        return _finish_boxes(boxes.astype(np.int64), min_size, max_proposals)
    segmentation = _segmentation_module().createSelectiveSearchSegmentation()
    segmentation.setBaseImage(bgr)
    configure = getattr(segmentation, MODES[mode])
    if base_k is None:
        configure()
    elif mode == "single":
        configure(k=base_k)
    else:
        configure(base_k=base_k, inc_k=base_k)
    with _RAND_LOCK:
        _seed_c_rand(seed)
        rects = segmentation.process()
    return _finish(np.asarray(rects, np.int64).reshape(-1, 4), min_size, max_proposals)


def _finish(rects, min_size, max_proposals):
    """OpenCV rects (x, y, w, h) -> filtered, unique, top-K [y1, x1, y2, x2]."""
    x, y, w, h = rects.T
    return _finish_boxes(np.stack([y, x, y + h, x + w], axis=1), min_size, max_proposals)


def _finish_boxes(boxes, min_size, max_proposals):
    h, w = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    boxes = boxes[(h >= min_size) & (w >= min_size)]
    # OpenCV already drops repeated rects; this keeps the promise if it ever stops.
    _, first = np.unique(boxes, axis=0, return_index=True)
    boxes = boxes[np.sort(first)]
    if max_proposals is not None:
        boxes = boxes[:max_proposals]
    return boxes.astype(np.float32).reshape(-1, 4)


def _cv2():
    # Imported when selective search runs: precomputed proposals and RPN detectors
    # work on machines without OpenCV.
    import cv2

    return cv2


def _segmentation_module():
    try:
        return _cv2().ximgproc.segmentation
    except AttributeError:
        raise ImportError(
            "Selective search needs OpenCV's contrib modules (cv2.ximgproc); install "
            "opencv-contrib-python-headless instead of opencv-python(-headless)."
        ) from None


def _seed_c_rand(seed):
    global _SRAND, _SRAND_MISSING_WARNED
    if _SRAND is None:
        _SRAND = _find_srand() or False
    if _SRAND:
        _SRAND(ctypes.c_uint(seed))
    elif not _SRAND_MISSING_WARNED:
        _SRAND_MISSING_WARNED = True
        warnings.warn(
            "Could not find the C library's srand through ctypes: selective search's box "
            "order (OpenCV ranks with rand()) will differ between runs.",
            RuntimeWarning,
            stacklevel=3,
        )


def _find_srand():
    # None: the symbols already loaded into this process, the C library's among them.
    names = [] if sys.platform == "win32" else [None]
    names += [name for name in map(ctypes.util.find_library, ("c", "ucrtbase", "msvcrt")) if name]
    for name in names:
        try:
            srand = ctypes.CDLL(name).srand
        except (OSError, AttributeError):
            continue
        srand.argtypes = [ctypes.c_uint]
        srand.restype = None
        return srand
    return None


# --- the disk cache -----------------------------------------------------------------


def _unique_tasks(examples):
    tasks = {}
    for example in examples:
        try:
            image_id, path = str(example.image_id), os.fspath(example.image_path)
        except (AttributeError, TypeError):
            raise ValueError(
                "`examples` must hold DetectionExample records (objects with `image_id` "
                f"and `image_path`); got {type(example).__name__}: {example!r:.100}."
            ) from None
        size = (getattr(example, "height", None), getattr(example, "width", None))
        if image_id in tasks and tasks[image_id][0] != path:
            raise ValueError(
                f"Image id {image_id!r} appears with two files, {tasks[image_id][0]} and "
                f"{path}; the cache is keyed by id, so ids must be unique."
            )
        tasks[image_id] = (path, size)
    return [(image_id, path, size) for image_id, (path, size) in tasks.items()]


def _file_name(image_id):
    return safe_file_stem(image_id) + ".npy"


def _run(missing, workers):
    """Yields (image_id, boxes, readable, problem or None) per task, as they finish."""
    if workers == 1 or len(missing) <= 1:
        yield from map(_compute_one, missing)
        return
    # 'spawn', not fork: a forked copy of a process running TensorFlow (or any
    # threads holding locks) can deadlock.
    context = multiprocessing.get_context("spawn")
    with context.Pool(min(workers, len(missing)), initializer=_init_worker) as pool:
        yield from pool.imap_unordered(_compute_one, missing, chunksize=1)


def _init_worker():
    # One process per core already; OpenCV's own threads would oversubscribe. The
    # boxes do not depend on the thread count.
    _cv2().setNumThreads(1)


def _compute_one(task):
    image_id, path, (height, width), params = task
    try:
        rgb = load_image(path)
    except (OSError, ValueError) as error:
        problem = f"Image id {image_id!r}: {error} It gets no proposals."
        return image_id, np.zeros([0, 4], np.float32), False, problem
    problem = None
    if None not in (height, width) and rgb.shape[:2] != (height, width):
        problem = (
            f"Image {path} is {rgb.shape[0]}x{rgb.shape[1]} (HxW) but its example says "
            f"{height}x{width}; the proposals follow the image."
        )
    boxes = _selective_search_bgr(np.ascontiguousarray(rgb[:, :, ::-1]), **params)
    return image_id, boxes, True, problem


def _read_cached(path):
    if not os.path.exists(path):
        return None
    try:
        boxes = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        logger.warning("Unreadable proposal cache file %s (%s); recomputing it.", path, error)
        return None
    if boxes.dtype != np.float32 or boxes.ndim != 2 or boxes.shape[1] != 4:
        logger.warning(
            "Proposal cache file %s holds %s %s, not float32 [K, 4]; recomputing it.", path, boxes.dtype, boxes.shape
        )
        return None
    return boxes


def _save_atomic(path, boxes):
    folder, name = os.path.split(path)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            np.save(file, boxes)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def _write_params(folder, params):
    path = os.path.join(folder, "params.json")
    if os.path.exists(path):
        return
    text = json.dumps(dict(params, opencv=_cv2().__version__, cache_version=_CACHE_VERSION), indent=2, sort_keys=True)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".params.", suffix=".tmp")
    with os.fdopen(handle, "w") as file:
        file.write(text + "\n")
    os.replace(temporary, path)


# --- precomputed proposals ----------------------------------------------------------


def _load_folder(folder, image_ids):
    if image_ids is None:
        names = sorted(name for name in os.listdir(folder) if name.endswith(".npy") and not name.startswith("."))
        image_ids = [name_from_stem(name[: -len(".npy")]) for name in names]
        if None in image_ids:
            logger.warning(
                "%s: listing skips %d file(s) of ids too long for a file name; pass `image_ids` to read them.",
                folder,
                image_ids.count(None),
            )
            image_ids = [image_id for image_id in image_ids if image_id is not None]
    raw = {}
    for image_id in image_ids:
        path = os.path.join(folder, _file_name(image_id))
        if not os.path.exists(path):
            raise KeyError(f"No proposals for image {image_id!r} in {folder} (no file {path}).")
        raw[image_id] = np.load(path, allow_pickle=False)
    return raw


def _load_npz(path, image_ids):
    with np.load(path, allow_pickle=False) as data:
        if not hasattr(data, "files"):
            raise ValueError(
                f"{path} holds a single array; precomputed proposals must be a folder of "
                "<image_id>.npy files, an .npz keyed by image id, or a .mat file."
            )
        if image_ids is None:
            image_ids = list(data.files)
        raw = {}
        for image_id in image_ids:
            if image_id not in data.files:
                raise KeyError(f"No proposals for image {image_id!r} in {path} ({len(data.files)} ids there).")
            raw[image_id] = data[image_id]
    return raw


def _load_mat(path, image_ids):
    try:
        import scipy.io
    except ImportError:
        raise ImportError(f"Reading {path} needs scipy (scipy.io.loadmat); pip install scipy.") from None
    try:
        data = scipy.io.loadmat(path)
    except NotImplementedError as error:
        raise ValueError(
            f"scipy cannot read {path} ({error}); MATLAB v7.3 files are HDF5: re-save it with "
            "save(..., '-v7') or convert it to .npz."
        ) from error
    if "boxes" not in data or "images" not in data:
        raise ValueError(
            f"{path} must hold R-CNN's `boxes` and `images` cell arrays; it has "
            f"{sorted(key for key in data if not key.startswith('__'))}."
        )
    ids = [_mat_string(entry) for entry in data["images"].ravel()]
    arrays = list(data["boxes"].ravel())
    if len(ids) != len(arrays):
        raise ValueError(f"{path} has {len(ids)} images but {len(arrays)} box arrays; they must match.")
    by_id = dict(zip(ids, arrays))
    if image_ids is None:
        return by_id
    raw = {}
    for image_id in image_ids:
        if image_id not in by_id:
            raise KeyError(f"No proposals for image {image_id!r} in {path} ({len(by_id)} ids there).")
        raw[image_id] = by_id[image_id]
    return raw


def _mat_string(entry):
    # A cell of strings loads as object arrays wrapping 1-element string arrays.
    while isinstance(entry, np.ndarray):
        entry = entry.ravel()[0] if entry.size else ""
    return str(entry)


def _convert_precomputed(array, box_order, one_based, image_id, path):
    array = np.asarray(array)
    if array.size == 0:
        return np.zeros([0, 4], np.float32)
    if array.ndim != 2 or array.shape[1] != 4 or not np.issubdtype(array.dtype, np.number):
        raise ValueError(
            f"Proposals for image {image_id!r} in {path} must be a numeric [K, 4] array; "
            f"got {array.dtype} {array.shape}."
        )
    boxes = array.astype(np.float64)
    if not np.all(np.isfinite(boxes)):
        # NaN passes every comparison unnoticed: IoUs, clipping and NMS would keep it.
        bad = int(np.sum(~np.all(np.isfinite(boxes), axis=1)))
        raise ValueError(
            f"Proposals for image {image_id!r} in {path}: {bad} of {len(boxes)} boxes hold NaN or "
            "infinity; boxes must be finite pixel coordinates."
        )
    if box_order == "xyxy":
        boxes = boxes[:, [1, 0, 3, 2]]
    if one_based:
        boxes[:, :2] -= 1
    return boxes.astype(np.float32)
