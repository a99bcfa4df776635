"""Per-class linear SVMs on fc7 features, with hard negative mining (R-CNN's and the
paper's recipe), streamed over the images with bounded memory.

For class ``c``: positives are the ground-truth boxes of ``c``; negatives are
windows whose IoU with every ground truth of ``c`` is below ``negative_iou`` (0.3),
less near-duplicates: a window overlapping an earlier (better-ranked) window of the
same image by more than ``duplicate_iou`` = 0.7 is dropped, class-agnostically, so
one greedy pass per image serves every class. The first SVM sees every positive
and the random negatives: ``initial_negatives`` windows an image, drawn among those
that are a negative of some class, kept as a uniform sample of at most
``max_hard_negatives`` windows shared by every class (each row with the classes it
is a negative of: background windows, most of them, are a negative of all, and
one copy serves the K SVMs). Then, for each of ``mining_rounds`` passes over the
images (the paper: one), every negative is scored and those inside the margin
(score > -1) join a cache of at most ``max_hard_negatives`` a class (the hardest
kept), the SVM is refitted, and cached negatives the new SVM puts outside the
margin are evicted. Memory, float16 fc7 rows: ``max_hard_negatives`` shared random
ones and at most 1.5 ``max_hard_negatives`` hard ones a class, whatever the number
of images.

Features are scaled by one factor so that their mean L2 norm is ``feature_norm``
(20, as R-CNN), which makes the regularisation ``C`` mean the same for any
backbone; the factor is folded into the returned weights, so the SVMs apply to raw
fc7 features: ``scores = fc7 @ kernel + bias``.
"""

import dataclasses
import json
import logging
import os
import zipfile

import numpy as np
import tensorflow as tf
from sklearn.svm import LinearSVC

from keras_spp.detection.boxes import iou_matrix
from keras_spp.detection.window_cache import save_npz_aside

log = logging.getLogger(__name__)


@dataclasses.dataclass
class SvmConfig:
    C: float = 1e-3
    positive_weight: float = 2.0
    bias_scale: float = 10.0
    negative_iou: float = 0.3
    duplicate_iou: float = 0.7
    initial_negatives: int = 20
    hard_margin: float = -1.0
    # The hardest this many per class: a weak head makes nearly every window "hard",
    # and the dual solver's time grows faster than linearly with the count.
    max_hard_negatives: int = 20000
    # Passes of hard negative mining over the images, each followed by a refit.
    mining_rounds: int = 1
    # Trained detectors' SVMs converge in 84-407 dual iterations (mnist-detection,
    # 20000-24000 windows a class); one on a barely trained head does not converge
    # and ran to 20000 iterations, about 250 s a class. Past this it stops with
    # liblinear's ConvergenceWarning.
    max_iter: int = 1000
    feature_norm: float = 20.0
    seed: int = 0


def first_of_duplicates(windows, duplicate_iou):
    """Bool ``[R]``: greedy in proposal order, a window is kept unless it overlaps an
    earlier kept window by more than ``duplicate_iou`` (NMS with rank as score)."""
    keep = tf.image.non_max_suppression(
        tf.constant(windows, tf.float32),
        tf.range(len(windows), 0, -1, dtype=tf.float32),
        max_output_size=len(windows),
        iou_threshold=duplicate_iou,
    )
    mask = np.zeros(len(windows), bool)
    mask[keep.numpy()] = True
    return mask


def negative_candidates(windows, gt_boxes, gt_labels, num_classes, negative_iou=0.3, duplicate_iou=0.7):
    """Bool ``[R, K]``: window ``r`` may serve as a negative of class ``k``."""
    windows = np.asarray(windows, np.float32).reshape(-1, 4)
    gt_labels = np.asarray(gt_labels).reshape(-1)
    allowed = np.ones((len(windows), num_classes), bool)
    if len(windows) and len(gt_boxes):
        overlaps = iou_matrix(windows, gt_boxes)
        for k in np.unique(gt_labels):
            allowed[:, k] = overlaps[:, gt_labels == k].max(axis=1) < negative_iou
    if len(windows) > 1 and duplicate_iou < 1.0:
        allowed &= first_of_duplicates(windows, duplicate_iou)[:, None]
    return allowed


def train_svms(positives, negatives, num_classes, config=SvmConfig(), progress=None):
    """``train_svms_streamed`` over features held in memory.

    ``positives``: ``(features [P, D], labels [P])`` of ground-truth boxes.
    ``negatives``: a list, one entry per image, of ``(features [R, D], allowed [R, K])``
    (``negative_candidates``). Returns ``kernel [D, K]``, ``bias [K]`` and per-class
    statistics (counts of positives, initial and hard negatives).
    """
    pos_features, pos_labels = positives
    pos_features = np.asarray(pos_features, np.float32)
    pos_labels = np.asarray(pos_labels).reshape(-1)
    dim = (
        pos_features.shape[1]
        if pos_features.ndim == 2 and len(pos_features)
        else (negatives[0][0].shape[1] if negatives else 0)
    )

    def images(desc):
        for i, (features, allowed) in enumerate(negatives):
            # Every positive comes with the first image, as if it held them all.
            pos = (pos_features, pos_labels) if i == 0 else (np.zeros((0, dim), np.float32), np.zeros(0, np.int64))
            yield pos[0], pos[1], np.asarray(features, np.float32), allowed
        if not negatives:
            yield pos_features, pos_labels, np.zeros((0, dim), np.float32), np.zeros((0, num_classes), bool)

    return train_svms_streamed(images, num_classes, dim, config, progress)


def train_svms_streamed(images, num_classes, dim, config=SvmConfig(), progress=None, state_dir=None, key=""):
    """Fits one SVM per class over a stream of images, in bounded memory.

    ``images(desc)``: a callable giving, each time it is called, an iterator over the
    images of ``(positive features [P, D], positive labels [P], negative candidates'
    features [R, D], allowed [R, K])``. It is called once for the positives and the
    initial negatives, then once per mining round. ``state_dir``: each finished pass
    is saved there (written aside, then renamed) under ``key``; a run with the same
    key resumes after the last saved pass. Returns ``kernel [D, K]``, ``bias [K]`` and
    per-class statistics.
    """
    state = _load_state(state_dir, key)
    if state is None:
        state = _first_pass(images, num_classes, dim, config)
        _fit_all(state, config)
        _save_state(state_dir, key, state)
    while state["round"] < config.mining_rounds:
        _mining_pass(images, state, config, f"hard negatives, round {state['round'] + 1}")
        state["round"] += 1
        _fit_all(state, config)
        _evict_easy(state, config)
        _save_state(state_dir, key, state)
    if progress:
        progress.update(num_classes)
    return state["kernel"] * state["scale"], state["bias"], state["stats"]


def _first_pass(images, num_classes, dim, config):
    """Positives, the shared uniform sample of random negatives, and the feature
    scale (mean norm of the positives and each image's first 50 negatives)."""
    rng = np.random.default_rng(config.seed)
    positives = [[] for _ in range(num_classes)]
    initial = _SharedSample(dim, num_classes)
    norm_sum, norm_count = 0.0, 0
    for pos_x, pos_y, neg_x, allowed in images("SVM negatives"):
        for k in np.unique(pos_y).astype(int):
            positives[k].append(np.asarray(pos_x, np.float32)[pos_y == k])
        norms = np.concatenate([np.linalg.norm(pos_x, axis=1), np.linalg.norm(neg_x[:50], axis=1)])
        norm_sum, norm_count = norm_sum + float(norms.sum()), norm_count + len(norms)
        rows = np.flatnonzero(np.asarray(allowed, bool).any(axis=1))
        if len(rows) > config.initial_negatives:
            rows = np.sort(rng.choice(rows, config.initial_negatives, replace=False))
        initial.add(neg_x[rows], allowed[rows], config.max_hard_negatives, rng)
    mean = norm_sum / norm_count if norm_count else 0.0
    return {
        "round": 0,
        "scale": config.feature_norm / mean if mean > 0 else 1.0,
        "positives": [np.concatenate(p) if p else np.zeros((0, dim), np.float32) for p in positives],
        "initial": initial,
        "hard": [_Cache(dim) for _ in range(num_classes)],
        "found": np.zeros(num_classes, np.int64),
        "kernel": np.zeros((dim, num_classes), np.float32),
        "bias": np.full(num_classes, -1.0, np.float32),
        "stats": [],
    }


def _fit_all(state, config):
    scale, stats, initial = state["scale"], [], state["initial"]
    for k, pos in enumerate(state["positives"]):
        random_rows = initial.of_class(k)
        entry = {
            "positives": len(pos),
            "initial_negatives": len(random_rows),
            "hard_negatives": len(state["hard"][k].rows),
        }
        if state["round"]:
            entry["hard_negatives_found"] = int(state["found"][k])
        if len(pos) == 0 or len(random_rows) == 0:
            # No positives: the class can never be detected by SVM scoring; say so.
            stats.append(dict(entry, skipped=True))
            continue
        w, b = _fit(scale, pos, [random_rows, state["hard"][k].rows], config)
        state["kernel"][:, k], state["bias"][k] = w, b
        stats.append(entry)
    state["stats"] = stats


def _mining_pass(images, state, config, desc):
    """Adds every allowed negative inside the margin to the class's hard cache,
    keeping the hardest ``max_hard_negatives`` (compacted as it grows)."""
    scale, kernel, bias = state["scale"], state["kernel"], state["bias"]
    state["found"][:] = 0
    for _, _, neg_x, allowed in images(desc):
        if not len(neg_x):
            continue
        scores = (neg_x * scale) @ kernel + bias
        for k, cache in enumerate(state["hard"]):
            if state["stats"] and state["stats"][k].get("skipped"):
                continue
            hard = allowed[:, k] & (scores[:, k] > config.hard_margin)
            state["found"][k] += int(hard.sum())
            cache.add_scored(neg_x[hard], scores[hard, k], config.max_hard_negatives)
    for cache in state["hard"]:
        cache.keep_hardest(config.max_hard_negatives)


def _evict_easy(state, config):
    """Drops cached hard negatives the refitted SVM scores outside the margin: they
    would not change the next fit (R-CNN's eviction of easy examples)."""
    for k, cache in enumerate(state["hard"]):
        if len(cache.rows):
            scores = (cache.rows.astype(np.float32) * state["scale"]) @ state["kernel"][:, k] + state["bias"][k]
            cache.rescore(scores)
            cache.keep(scores > config.hard_margin)


class _SharedSample:
    """The random negatives of every class at once: a uniform sample (algorithm R) of
    at most ``capacity`` rows of all those added, float16, each with the bool row of
    the classes it is a negative of. The buffer grows by doubling up to the capacity."""

    def __init__(self, dim, num_classes):
        self._rows = np.zeros((0, dim), np.float16)
        self._allowed = np.zeros((0, num_classes), bool)
        self.size = self.seen = 0

    @property
    def rows(self):
        return self._rows[: self.size]

    @property
    def allowed(self):
        return self._allowed[: self.size]

    @classmethod
    def of(cls, rows, allowed, seen):
        sample = cls(rows.shape[1], allowed.shape[1])
        sample._rows, sample._allowed = np.asarray(rows, np.float16), np.asarray(allowed, bool)
        sample.size, sample.seen = len(rows), int(seen)
        return sample

    @classmethod
    def of_classes(cls, per_class, dim):
        """The sample of states saved when each class kept its own: every class's rows,
        each allowed for its class alone, so every fit sees the same rows as then."""
        rows = np.concatenate([np.asarray(r, np.float16).reshape(-1, dim) for r in per_class])
        labels = np.repeat(np.arange(len(per_class)), [len(r) for r in per_class])
        return cls.of(rows, labels[:, None] == np.arange(len(per_class)), len(rows))

    def of_class(self, k):
        return self.rows[self.allowed[:, k]]

    def add(self, rows, allowed, capacity, rng):
        rows, allowed = np.asarray(rows, np.float16), np.asarray(allowed, bool)
        room = min(max(capacity - self.size, 0), len(rows))
        need = self.size + room
        if need > len(self._rows):
            grown = min(max(need, 2 * len(self._rows), 1024), max(capacity, need))
            self._rows = _grown(self._rows, self.size, grown)
            self._allowed = _grown(self._allowed, self.size, grown)
        self._rows[self.size : need], self._allowed[self.size : need] = rows[:room], allowed[:room]
        self.size = need
        for i in range(room, len(rows)):
            slot = int(rng.integers(0, self.seen + i + 1))
            if slot < capacity:
                self._rows[slot], self._allowed[slot] = rows[i], allowed[i]
        self.seen += len(rows)


def _grown(buffer, used, length):
    """A buffer of ``length`` rows holding the first ``used`` rows of ``buffer``."""
    grown = np.empty((length, *buffer.shape[1:]), buffer.dtype)
    grown[:used] = buffer[:used]
    return grown


class _Cache:
    """Negatives of one class: rows ``[n, D]`` and their last scores. Rows are kept in
    float16 (half the memory; fc7 activations need no more digits for a linear SVM)
    and fitted in float64. Hard negatives are appended into a buffer that grows by
    doubling up to 1.5x the capacity and is compacted in place, so adding an image's
    rows copies those rows, not the cache."""

    def __init__(self, dim):
        self._rows = np.zeros((0, dim), np.float16)
        self._scores = np.zeros(0, np.float32)
        self.size = 0

    @property
    def rows(self):
        return self._rows[: self.size]

    @property
    def scores(self):
        return self._scores[: self.size]

    @classmethod
    def of(cls, rows, scores):
        cache = cls(rows.shape[1])
        cache._append(np.asarray(rows, np.float16), np.asarray(scores, np.float32), len(rows))
        return cache

    def rescore(self, scores):
        self._scores[: self.size] = scores

    def keep(self, mask):
        """Keeps the rows where ``mask`` (in order), in place."""
        kept = int(np.count_nonzero(mask))
        self._rows[:kept], self._scores[:kept] = self.rows[mask], self.scores[mask]
        self.size = kept

    def _append(self, rows, scores, limit):
        need = self.size + len(rows)
        if need > len(self._rows):
            grown = min(max(need, 2 * len(self._rows), 1024), max(limit, need))
            self._rows = _grown(self._rows, self.size, grown)
            self._scores = _grown(self._scores, self.size, grown)
        self._rows[self.size : need] = rows
        self._scores[self.size : need] = scores
        self.size = need

    def add_scored(self, rows, scores, capacity):
        limit = int(1.5 * capacity)
        if self.size + len(rows) > limit:  # compact now and then, not at every image
            self.keep_hardest(capacity)
        self._append(rows, scores, max(limit, self.size + len(rows)))

    def keep_hardest(self, capacity):
        if self.size > capacity:
            hardest = np.zeros(self.size, bool)
            hardest[np.argsort(-self.scores, kind="stable")[:capacity]] = True
            self.keep(hardest)


def _state_path(state_dir):
    return os.path.join(state_dir, "svm_state.npz") if state_dir else None


def _load_state(state_dir, key):
    path = _state_path(state_dir)
    if not path or not os.path.exists(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as saved:
            arrays = {name: saved[name] for name in saved.files}
        if str(arrays["key"]) != key:
            log.warning("SVM state %s is from another network or settings; starting the SVMs over", path)
            return None
        state = json.loads(str(arrays["meta"]))
        num_classes = len(state["stats"])
        state["found"] = arrays["found"]
        state["kernel"], state["bias"] = arrays["kernel"], arrays["bias"]
        state["positives"] = [arrays[f"positives_{k}"] for k in range(num_classes)]
        state["hard"] = [_Cache.of(arrays[f"hard_{k}"], arrays[f"hard_scores_{k}"]) for k in range(num_classes)]
        seen = state.pop("seen", None)  # kept by the sample itself once loaded
        if "initial_rows" in arrays:
            state["initial"] = _SharedSample.of(arrays["initial_rows"], arrays["initial_allowed"], seen)
        else:  # saved when every class kept its own random negatives
            dim = state["positives"][0].shape[1]
            state["initial"] = _SharedSample.of_classes([arrays[f"initial_{k}"] for k in range(num_classes)], dim)
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as error:
        log.warning("SVM state %s is unreadable (%s); starting the SVMs over", path, error)
        return None
    log.info("SVMs resume after round %d from %s", state["round"], path)
    return state


def _save_state(state_dir, key, state):
    path = _state_path(state_dir)
    if not path:
        return
    os.makedirs(state_dir, exist_ok=True)
    initial = state["initial"]
    meta = {"round": state["round"], "scale": state["scale"], "stats": state["stats"], "seen": initial.seen}
    arrays = {"key": np.array(key), "meta": np.array(json.dumps(meta)), "found": state["found"]}
    arrays.update(
        kernel=state["kernel"], bias=state["bias"], initial_rows=initial.rows, initial_allowed=initial.allowed
    )
    for k, pos in enumerate(state["positives"]):
        arrays[f"positives_{k}"] = pos
        arrays[f"hard_{k}"], arrays[f"hard_scores_{k}"] = state["hard"][k].rows, state["hard"][k].scores
    save_npz_aside(path, **arrays)


def _fit(scale, pos, negatives, config):
    """The SVM on ``pos`` and the concatenated ``negatives``, scaled: one float64
    matrix, the dtype liblinear takes, so sklearn makes no copy of its own."""
    rows = len(pos) + sum(len(n) for n in negatives)
    x = np.empty((rows, pos.shape[1]), np.float64)
    start = 0
    for part in (pos, *negatives):
        np.multiply(part, scale, out=x[start : start + len(part)], casting="unsafe")
        start += len(part)
    y = np.zeros(rows)
    y[: len(pos)] = 1
    svm = LinearSVC(
        C=config.C,
        loss="hinge",
        dual=True,
        class_weight={1: config.positive_weight, 0: 1.0},
        intercept_scaling=config.bias_scale,
        max_iter=config.max_iter,
        random_state=config.seed,
    )
    svm.fit(x, y)
    return svm.coef_[0].astype(np.float32), np.float32(svm.intercept_[0])
