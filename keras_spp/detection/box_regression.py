"""Bounding-box regression (R-CNN's parametrisation) on the windows' pooled features.

For each class a ridge regression maps the pooled features of windows that overlap
a ground truth of that class by IoU >= ``min_iou`` (0.5, as the paper) to the
targets ``encode_boxes(window, ground_truth)``. Features are scaled to a mean L2
norm of 20 and targets standardised before the fit; both are folded back into the
returned weights, so ``deltas = pooled @ kernel + bias`` on raw features.
"""

import numpy as np
import scipy.linalg
import scipy.linalg.blas

from keras_spp.detection.boxes import encode_boxes


def regression_targets(windows, gt_boxes, max_iou, gt_index, gt_labels, min_iou=0.5):
    """``(rows, classes, targets)`` of the windows used for regression in one image."""
    rows = np.flatnonzero(max_iou >= min_iou)
    if len(rows) == 0:
        return rows, np.zeros(0, np.int64), np.zeros((0, 4), np.float32)
    matched = np.asarray(gt_boxes, np.float32)[gt_index[rows]]
    targets = encode_boxes(np.asarray(windows, np.float32)[rows], matched)
    return rows, np.asarray(gt_labels)[gt_index[rows]], targets


def fit_box_regressors(features, classes, targets, num_classes, l2=1000.0, feature_norm=20.0, mean_norm=None):
    """Returns ``kernel [D, 4 K]`` and ``bias [4 K]`` (class ``k`` in columns
    ``4k .. 4k+3``); a class without samples keeps zero weights (no correction).

    ``mean_norm``: the features' mean L2 norm, when these rows are part of a larger
    set fitted piecewise (one class at a time); default theirs."""
    features = np.asarray(features)
    classes = np.asarray(classes).reshape(-1)
    targets = np.asarray(targets, np.float64).reshape(-1, 4)
    dim = features.shape[1]
    kernel = np.zeros((dim, 4 * num_classes), np.float32)
    bias = np.zeros(4 * num_classes, np.float32)
    if len(features) == 0:
        return kernel, bias
    if mean_norm is None:
        mean_norm = float(np.linalg.norm(features.astype(np.float64), axis=1).mean())
    scale = feature_norm / max(float(mean_norm), 1e-12)
    for k in range(num_classes):
        rows = classes == k
        if rows.any():
            w, b = fit_one_class(features[rows], targets[rows], l2, scale)
            kernel[:, 4 * k : 4 * k + 4], bias[4 * k : 4 * k + 4] = w, b
    return kernel, bias


def fit_one_class(x, y, l2, scale, chunk_columns=1024):
    """One class's ridge regressor ``(kernel [D, 4], bias [4])`` on raw features ``x``
    ``[n, D]`` (float16, float32 or float64; read, never copied whole) and targets
    ``y [n, 4]``.

    The features are scaled by ``scale`` and centred in float64 a block of
    ``chunk_columns`` columns at a time, so memory is ``x`` itself, the ``n x n``
    Gram matrix (the fit is solved in the dual while ``n < D``, as it is at the
    paper's 12800-d windows; accumulated and factored in place) and one block, not a
    float64 copy of ``x``: at 5000 windows of 12800-d, 256 MB of float32 features,
    a 200 MB Gram matrix and a 41 MB block, instead of a 512 MB float64 copy and two
    Gram matrices. The sums are float64 throughout.
    """
    n, dim = x.shape
    x_mean = np.zeros(dim, np.float64)
    for c in range(0, dim, chunk_columns):
        x_mean[c : c + chunk_columns] = x[:, c : c + chunk_columns].astype(np.float64).mean(0) * scale

    def block(c):
        b = x[:, c : c + chunk_columns].astype(np.float64)
        b *= scale
        b -= x_mean[c : c + chunk_columns]
        return b

    y_mean = y.mean(0)
    y_std = np.maximum(y.std(0), 1e-6)
    yc = (y - y_mean) / y_std
    w = np.zeros((dim, 4), np.float64)
    if n < dim:
        # syrk adds each block's b b^T into the upper triangle in place: no n x n
        # temporary (200 MB at 5000 windows), half the multiplications.
        gram = np.zeros((n, n), np.float64, order="F")
        for c in range(0, dim, chunk_columns):
            gram = scipy.linalg.blas.dsyrk(1.0, block(c), beta=1.0, c=gram, overwrite_c=True)
        gram[np.diag_indices_from(gram)] += l2
        alpha = scipy.linalg.solve(gram, yc, lower=False, assume_a="pos", overwrite_a=True, check_finite=False)
        del gram
        for c in range(0, dim, chunk_columns):
            w[c : c + chunk_columns] = block(c).T @ alpha
    else:
        # n >= D: the D x D normal equations (small D: a copy of x is no larger than D x D).
        xc = np.concatenate([block(c) for c in range(0, dim, chunk_columns)], axis=1)
        gram = xc.T @ xc
        gram[np.diag_indices_from(gram)] += l2
        w = np.linalg.solve(gram, xc.T @ yc)
    w = w * y_std
    return w * scale, y_mean - x_mean @ w
