"""The verification cases of a detector export's ``reference.json``: requests, the
outputs the Keras reference gives for them (``export.detector_reference``) or the
error the graph must answer with, and the warmup requests.

Proposals come from ``reference_boxes``, a fixed grid of windows, so building the
cases needs no OpenCV. A detector with an RPN is checked on images alone in
``serving_default`` and ``detect_images``, and on the boxes-in cases under their
names there (``BOXES_SIGNATURES``).
"""

import numpy as np

from export.client_requests import pad_boxes
from export.detector_graph import BOXES_SIGNATURES
from export.encoding import b64, jsonable, png_bytes
from keras_spp.data.voc import decode_image_tf


def reference_boxes(height, width, fractions=(0.25, 0.5, 0.75)):
    """Proposals for the reference images: a grid of windows, float32 ``[R, 4]``.

    Windows of ``fy * height`` by ``fx * width`` for every pair of ``fractions``,
    slid by half their size, rounded to whole pixels (121 windows at the defaults).
    A fixed function of the size, so the export needs no OpenCV; what a detector
    answers for them is beside the point, only that the export answers the same.
    """

    def spans(extent):
        out = []
        for f in fractions:
            size, step = f * extent, f * extent / 2
            k = 0
            while k * step + size <= extent + 1e-6:
                out.append((k * step, k * step + size))
                k += 1
        return out

    boxes = [(y1, x1, y2, x2) for y1, y2 in spans(height) for x1, x2 in spans(width)]
    boxes = np.round(np.array(boxes, np.float64)).astype(np.float32).reshape(-1, 4)
    return boxes[(boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])]


def oversize_image(max_side):
    """``(file name, JPEG bytes)``: a photo whose longer side is 1/8 above ``max_side``
    (2250 x 375 px at 2000), for the maximum-side case; ``None`` above 4096 px."""
    import io

    from PIL import Image
    from skimage import data

    if max_side > 4096:
        return None
    long = max_side + max(1, max_side // 8)
    short = max(64, long // 6)
    buffer = io.BytesIO()
    Image.fromarray(data.rocket()).resize((long, short), Image.BILINEAR).save(buffer, "JPEG", quality=85)
    return f"oversize-{short}x{long}.jpg", buffer.getvalue()


def _float_array(a):
    return jsonable({"x": np.asarray(a, np.float32)})["x"]


def _refused_requests(files, boxes, by_bytes):
    """Cases that must fail with a named error: bytes that are no image, a cut JPEG,
    fewer box lists than images."""
    names = [name for name, _ in files]
    array = _float_array
    return [
        {
            "name": "bytes that are no image",
            "signature": by_bytes,
            "inputs": {
                "image_bytes": {"b64": [b64(files[0][1]), b64(b"<html>not an image</html>")]},
                "boxes": array(pad_boxes([boxes[0], boxes[0]])),
            },
            "error": {"type": "InvalidArgumentError", "contains": "not JPEG or PNG data"},
        },
        {
            "name": "truncated JPEG",
            "signature": by_bytes,
            "inputs": {
                "image_bytes": {"b64": [b64(files[0][1][: len(files[0][1]) // 3])]},
                "boxes": array(pad_boxes([boxes[0]])),
            },
            "error": {"type": "InvalidArgumentError", "contains": ""},
        },
        {
            "name": "boxes for fewer images than image_bytes",
            "signature": by_bytes,
            "inputs": {"image_bytes": {"files": names[:2]}, "boxes": array(pad_boxes([boxes[0]]))},
            "error": {"type": "InvalidArgumentError", "contains": "must be the number of images"},
        },
    ]


def _size_limit_cases(reference, smallest, max_side, by_bytes):
    """An image over ``max_side`` (resized, its boxes with it) and one too elongated
    for the backbone: ``(cases, extra files)``."""
    array = _float_array
    cases = []
    extra = []
    oversize = oversize_image(max_side)
    if oversize is not None:
        name, encoded = oversize
        image = decode_image_tf(encoded).numpy()
        big_boxes = reference_boxes(*image.shape[:2])
        extra.append(oversize)
        cases.append(
            {
                "name": f"an image above the maximum side ({image.shape[0]} x {image.shape[1]}; resized to "
                f"a longer side of {max_side}, its boxes with it)",
                "signature": by_bytes,
                "inputs": {"image_bytes": {"files": [name]}, "boxes": array(pad_boxes([big_boxes]))},
                "outputs": jsonable(reference([image], [big_boxes])),
            }
        )
    if smallest > 1:  # 1 x min(max_side, 2000) px with one window over all of it
        long = min(max_side, 2000)
        line = np.zeros((1, long, 3), np.uint8)
        cases.append(
            {
                "name": "an image too elongated for the detector",
                "signature": by_bytes,
                "inputs": {"image_bytes": {"b64": [b64(png_bytes(line))]}, "boxes": array([[[0, 0, 1, long]]])},
                "error": {"type": "InvalidArgumentError", "contains": "too elongated"},
            }
        )
    return cases, extra


def reference_cases(files, decoded, reference, smallest, max_side, signatures=BOXES_SIGNATURES[False]):
    """``(cases, warmup inputs, extra files)`` of ``reference.json`` for the detector's
    boxes-in ``signatures`` (image_bytes, image_tensor)."""
    by_bytes, by_tensor = signatures
    names = [name for name, _ in files]
    images = [decoded[n] for n in names]
    boxes = [reference_boxes(*image.shape[:2]) for image in images]
    padded = pad_boxes(boxes)  # sizes differ, so do their grids: the shorter lists are padded
    first = images[0]
    array = _float_array
    cases = [
        {
            "name": "images of several sizes, JPEG and PNG, in one batch; proposals padded with zero rows",
            "signature": by_bytes,
            "inputs": {"image_bytes": {"files": names}, "boxes": array(padded)},
            "outputs": jsonable(reference(images, boxes)),
        },
        {
            "name": "decoded pixels (image_tensor), a batch of two",
            "signature": by_tensor,
            "inputs": {
                "image_tensor": {"decoded_files": [names[0], names[0]]},
                "boxes": array(pad_boxes([boxes[0], boxes[0][::2]])),
            },
            "outputs": jsonable(reference([first, first], [boxes[0], boxes[0][::2]])),
        },
        {
            "name": "an image whose proposals are all padding",
            "signature": by_bytes,
            "inputs": {"image_bytes": {"files": names[:1]}, "boxes": array(np.zeros((1, 3, 4)))},
            "outputs": jsonable(reference([first], [np.zeros((0, 4))])),
        },
        {
            "name": "empty batch",
            "signature": by_bytes,
            "inputs": {"image_bytes": {"b64": []}, "boxes": array(np.zeros((0, 1, 4)))},
            "outputs": jsonable(reference([], [])),
        },
        *_refused_requests(files, boxes, by_bytes),
    ]
    limit_cases, extra = _size_limit_cases(reference, smallest, max_side, by_bytes)
    cases += limit_cases
    # One warmup request per image size (each compiles its own XLA programs).
    warmup = [
        {"image_bytes": np.array([encoded], dtype=object), "boxes": pad_boxes([b])}
        for (_, encoded), b in zip(files, boxes, strict=True)
    ]
    return cases, warmup, extra


def rpn_reference_cases(files, decoded, reference, smallest, max_side):
    """``(cases, warmup inputs, extra files)`` for an RPN detector: images alone in
    ``serving_default`` and ``detect_images``, then the boxes-in cases under their names."""
    names = [name for name, _ in files]
    images = [decoded[n] for n in names]
    first = images[0]
    blank = np.full((240, 320, 3), 128, np.uint8)
    cases = [
        {
            "name": "images of several sizes, JPEG and PNG, in one batch, bytes alone (the RPN proposes)",
            "signature": "serving_default",
            "inputs": {"image_bytes": {"files": names}},
            "outputs": jsonable(reference(images)),
        },
        {
            "name": "decoded pixels (image_tensor) alone, a batch of two",
            "signature": "detect_images",
            "inputs": {"image_tensor": {"decoded_files": [names[0], names[0]]}},
            "outputs": jsonable(reference([first, first])),
        },
        {
            "name": "a flat grey image (nothing to find)",
            "signature": "serving_default",
            "inputs": {"image_bytes": {"b64": [b64(png_bytes(blank))]}},
            "outputs": jsonable(reference([blank])),
        },
        {
            "name": "empty batch",
            "signature": "serving_default",
            "inputs": {"image_bytes": {"b64": []}},
            "outputs": jsonable(reference([])),
        },
        {
            "name": "bytes that are no image",
            "signature": "serving_default",
            "inputs": {"image_bytes": {"b64": [b64(files[0][1]), b64(b"<html>not an image</html>")]}},
            "error": {"type": "InvalidArgumentError", "contains": "not JPEG or PNG data"},
        },
        {
            "name": "truncated JPEG",
            "signature": "serving_default",
            "inputs": {"image_bytes": {"b64": [b64(files[0][1][: len(files[0][1]) // 3])]}},
            "error": {"type": "InvalidArgumentError", "contains": ""},
        },
    ]
    if smallest > 1:
        line = np.zeros((1, min(max_side, 2000), 3), np.uint8)
        cases.append(
            {
                "name": "an image too elongated for the RPN's scale",
                "signature": "serving_default",
                "inputs": {"image_bytes": {"b64": [b64(png_bytes(line))]}},
                "error": {"type": "InvalidArgumentError", "contains": "too elongated"},
            }
        )
    boxes_cases, _, extra = reference_cases(files, decoded, reference, smallest, max_side, BOXES_SIGNATURES[True])
    cases += [case for case in boxes_cases if "error" not in case or "number of images" in case["error"]["contains"]]
    # One warmup request per image size, images alone (each size compiles its own XLA programs).
    warmup = [{"image_bytes": np.array([encoded], dtype=object)} for _, encoded in files]
    return cases, warmup, extra
