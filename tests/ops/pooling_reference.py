"""Slow, obviously-correct numpy references for the pooling ops (loops over bins)."""

import math

import numpy as np


def adaptive_bins(a, n):
    return [(math.floor(i * a / n), math.ceil((i + 1) * a / n)) for i in range(n)]


def paper_bins(a, n):
    win, stride = math.ceil(a / n), a // n
    return [(i * stride, i * stride + win) for i in range(n)]


def spatial_pyramid_pool(features, levels, pooling="max", bin_rule="adaptive"):
    features = np.asarray(features, np.float64)
    b, h, w, c = features.shape
    split = adaptive_bins if bin_rule == "adaptive" else paper_bins
    rows = []
    for image in features:
        parts = []
        for n in levels:
            for y0, y1 in split(h, n):
                for x0, x1 in split(w, n):
                    cells = image[y0:y1, x0:x1].reshape(-1, c)
                    parts.append(cells.max(0) if pooling == "max" else cells.mean(0))
        rows.append(np.concatenate(parts) if parts else np.zeros(0))
    return np.stack(rows) if rows else np.zeros((0, c * sum(n * n for n in levels)))


def _round_half_away(v):
    return math.floor(abs(v) + 0.5) * (1 if v >= 0 else -1)


def box_cells(box, scale, h, w, rule):
    """One box [y1, x1, y2, x2] -> inclusive cells (cy1, cx1, cy2, cx2), as documented."""
    scale = np.float32(scale)
    out = []
    for first, second, size in ((box[0], box[2], h), (box[1], box[3], w)):
        s1, s2 = float(np.float32(first) * scale), float(np.float32(second) * scale)
        if rule == "spp":
            c1, c2 = math.floor(s1) + 1, math.ceil(s2) - 1
            if c1 > c2:
                c1 = c2 = math.floor((c1 + c2) / 2)
        else:
            c1, c2 = _round_half_away(s1), _round_half_away(s2)
            c2 = max(c2, c1)
        out.append((min(max(c1, 0), size - 1), min(max(c2, 0), size - 1)))
    (y1, y2), (x1, x2) = out
    return y1, x1, y2, x2


def roi_pyramid_pool(features, boxes, box_indices, levels, spatial_scale, rule):
    features = np.asarray(features, np.float64)
    _, h, w, c = features.shape
    rows = []
    for box, index in zip(np.asarray(boxes), np.asarray(box_indices)):
        y1, x1, y2, x2 = box_cells(box, spatial_scale, h, w, rule)
        crop = features[index, y1 : y2 + 1, x1 : x2 + 1]
        rows.append(spatial_pyramid_pool(crop[None], levels)[0])
    return np.stack(rows) if rows else np.zeros((0, c * sum(n * n for n in levels)))


def max_pool_gradient(features, weights, levels, cells_of_rows):
    """d(sum(weights * output)) / d(features) for max pooling: each bin's weight goes
    to the cell holding its maximum. ``cells_of_rows(row)`` yields ``(image, y0, y1,
    x0, x1)`` per output row; bins are adaptive within that window."""
    features = np.asarray(features, np.float64)
    grad = np.zeros_like(features)
    c = features.shape[3]
    for row, w in enumerate(np.asarray(weights, np.float64)):
        image, wy0, wy1, wx0, wx1 = cells_of_rows(row)
        offset = 0
        for n in levels:
            for y0, y1 in adaptive_bins(wy1 - wy0, n):
                for x0, x1 in adaptive_bins(wx1 - wx0, n):
                    block = features[image, wy0 + y0 : wy0 + y1, wx0 + x0 : wx0 + x1]
                    flat = block.reshape(-1, c)
                    arg = flat.argmax(0)
                    ys, xs = np.unravel_index(arg, block.shape[:2])
                    grad[image, wy0 + y0 + ys, wx0 + x0 + xs, np.arange(c)] += w[offset : offset + c]
                    offset += c
    return grad
