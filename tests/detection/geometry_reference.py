"""The numpy box, scale and anchor geometry that keras_spp.detection had before it was
written once in keras.ops (boxes.iou, decode_boxes, scales.resize_factors, ...):
slow-ish, obviously correct references for the tests. Each computes in ``dtype``:
float64 is what the old numpy functions computed, float32 what the old TensorFlow
twins computed (the same formulas, op for op); the context expansion's two old
versions, which differed in their order of operations, are one function each."""

import math

import numpy as np

DELTA_CLAMP = math.log(1000.0 / 16)


def area(boxes, dtype=np.float64):
    boxes = np.asarray(boxes, dtype)
    return np.maximum(boxes[..., 2] - boxes[..., 0], 0) * np.maximum(boxes[..., 3] - boxes[..., 1], 0)


def pairwise_iou(a, b, dtype=np.float64):
    """IoU ``[N, M]`` of ``a [N, 4]`` and ``b [M, 4]``; 0 where the union is not > 0."""
    a = np.asarray(a, dtype).reshape(-1, 4)
    b = np.asarray(b, dtype).reshape(-1, 4)
    height = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    width = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.maximum(height, 0.0) * np.maximum(width, 0.0)
    union = area(a, dtype)[:, None] + area(b, dtype)[None, :] - inter
    with np.errstate(invalid="ignore", over="ignore"):
        return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def decode_boxes(proposals, deltas, weights=(1.0, 1.0, 1.0, 1.0), dtype=np.float64):
    """``[N, 4]`` deltas give ``[N, 4]``, ``[N, 4K]`` or ``[N, K, 4]`` give ``[N, K, 4]``."""
    proposals = np.asarray(proposals, dtype).reshape(-1, 4)
    deltas = np.asarray(deltas, dtype)
    squeeze = deltas.ndim == 2 and deltas.shape[1] == 4
    classes = deltas.shape[1] // 4 if deltas.ndim == 2 else deltas.shape[1]
    deltas = deltas.reshape(len(proposals), classes, 4) / np.asarray(weights, dtype)
    h = (proposals[:, 2] - proposals[:, 0])[:, None]
    w = (proposals[:, 3] - proposals[:, 1])[:, None]
    cy = proposals[:, 0, None] + dtype(0.5) * h
    cx = proposals[:, 1, None] + dtype(0.5) * w
    with np.errstate(over="ignore", invalid="ignore"):
        new_cy = cy + deltas[..., 0] * h
        new_cx = cx + deltas[..., 1] * w
        new_h = np.exp(np.minimum(deltas[..., 2], dtype(DELTA_CLAMP))) * h
        new_w = np.exp(np.minimum(deltas[..., 3], dtype(DELTA_CLAMP))) * w
        half = dtype(0.5)
        out = np.stack([new_cy - half * new_h, new_cx - half * new_w, new_cy + half * new_h, new_cx + half * new_w], -1)
    return out[:, 0] if squeeze else out


def scale_factors(height, width, scales, max_side=2000, dtype=np.float64):
    scales = np.asarray(scales, dtype)
    short, long = dtype(min(height, width)), dtype(max(height, width))
    return np.minimum(scales / short, dtype(max_side) / long)


def scaled_size(height, width, factor):
    """The old numpy rule: Python's round (halves to even) of the float64 product."""
    return max(1, int(round(height * float(factor)))), max(1, int(round(width * float(factor))))


def scaled_size_float32(height, width, factor):
    """The old graph rule: ``round`` of the float32 product."""
    size = np.round(np.asarray([height, width], np.float32) * np.float32(factor))
    return tuple(int(v) for v in np.maximum(size.astype(np.int32), 1))


def assign_scales(boxes, factors, window_size=224, dtype=np.float64):
    boxes = np.asarray(boxes, dtype).reshape(-1, 4)
    factors = np.asarray(factors, dtype).reshape(-1)
    distance = np.abs(area(boxes, dtype)[:, None] * factors[None, :] ** 2 - dtype(float(window_size) ** 2))
    return np.argmin(distance, axis=1).astype(np.int32)


def anchor_grid(map_height, map_width, config, dtype=np.float64):
    cell = config.cell_anchors().astype(dtype)
    ys = (np.arange(map_height).astype(dtype) + dtype(0.5)) * dtype(config.stride)
    xs = (np.arange(map_width).astype(dtype) + dtype(0.5)) * dtype(config.stride)
    cy, cx = np.meshgrid(ys, xs, indexing="ij")
    centres = np.stack([cy, cx, cy, cx], axis=-1).reshape(-1, 1, 4)
    return (centres + cell[None]).reshape(-1, 4)


def encode_boxes(proposals, targets, weights=(1.0, 1.0, 1.0, 1.0), dtype=np.float64):
    """The old numpy ``boxes.encode_boxes`` without its checks, in ``dtype`` (it
    computed in float64 and returned float32)."""
    p = np.asarray(proposals, np.float32).reshape(-1, 4).astype(dtype)
    t = np.asarray(targets, np.float32).reshape(-1, 4).astype(dtype)
    ph, pw = p[:, 2] - p[:, 0], p[:, 3] - p[:, 1]
    th, tw = t[:, 2] - t[:, 0], t[:, 3] - t[:, 1]
    half = dtype(0.5)
    py, px = p[:, 0] + half * ph, p[:, 1] + half * pw
    ty, tx = t[:, 0] + half * th, t[:, 1] + half * tw
    deltas = np.stack([(ty - py) / ph, (tx - px) / pw, np.log(th / ph), np.log(tw / pw)], axis=1)
    return deltas * np.asarray(weights, dtype)


def expand_boxes_for_context(boxes, output_size=224, context=16):
    """The old numpy ``boxes.expand_boxes_for_context``: float64, returned as float32."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4).astype(np.float64)
    scale = output_size / (output_size - 2.0 * context)
    with np.errstate(over="ignore", invalid="ignore"):
        centre = 0.5 * (boxes[:, :2] + boxes[:, 2:])
        half = 0.5 * (boxes[:, 2:] - boxes[:, :2]) * scale
        return np.concatenate([centre - half, centre + half], axis=1).astype(np.float32)


def context_boxes_float32(boxes, window_size=224, context=16):
    """The old graph twin, ``rcnn.context_boxes_tf``, op for op in float32: it scaled
    the side before halving it, so sides within 17% (at 224 and 16) of float32's
    largest overflowed to inf."""
    factor = np.float32(window_size / (window_size - 2.0 * context))
    y1, x1, y2, x2 = np.asarray(boxes, np.float32).reshape(-1, 4).T
    two = np.float32(2)
    with np.errstate(over="ignore", invalid="ignore"):
        cy, cx = (y1 + y2) / two, (x1 + x2) / two
        hh, hw = (y2 - y1) * factor / two, (x2 - x1) * factor / two
        return np.stack([cy - hh, cx - hw, cy + hh, cx + hw], axis=1)
