"""TF Serving's answers as the example client (``export.client``) reads them: one
``{output: value}`` per image from a REST answer of either form
(``parse_rest_response``) or a gRPC ``PredictResponse`` (``parse_predict_response``),
and a detector's row as a list of detections (``detections``)."""

import json


def parse_rest_response(response):
    """One ``{output: value}`` per image from a REST predict answer (row or columnar form).

    ``response`` is the decoded JSON (a dict) or its text. A TF Serving error answer
    (``{"error": ...}``) raises ``RuntimeError`` with the server's message.
    """
    if isinstance(response, (str, bytes)):
        response = json.loads(response)
    if not isinstance(response, dict):
        raise ValueError(f"A predict answer is a JSON object; got {type(response).__name__}.")
    if "error" in response:
        raise RuntimeError(f"TF Serving answered with an error: {response['error']}")
    if "predictions" in response:
        rows = response["predictions"]
        # A model with one output answers with bare values instead of {output: value}.
        return [row if isinstance(row, dict) else {"output": row} for row in rows]
    if "outputs" in response:
        outputs = response["outputs"]
        if not isinstance(outputs, dict):
            outputs = {"output": outputs}
        counts = {len(v) for v in outputs.values()}
        if len(counts) > 1:
            lengths = {k: len(v) for k, v in outputs.items()}
            raise ValueError(f"The columnar outputs have different lengths: {lengths}.")
        count = counts.pop() if counts else 0
        return [{name: values[i] for name, values in outputs.items()} for i in range(count)]
    raise ValueError(
        f"A predict answer has 'predictions' (row form) or 'outputs' (columnar); got keys {sorted(response)}."
    )


def parse_predict_response(response):
    """One ``{output: value}`` per image from a gRPC ``PredictResponse``.

    Values are numpy arrays; strings come back as ``str`` (UTF-8).
    """
    import numpy as np
    import tensorflow as tf

    arrays = {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}
    counts = {a.shape[0] if a.ndim else 1 for a in arrays.values()}
    if len(counts) > 1:
        raise ValueError(f"The outputs have different batch sizes: { {k: a.shape for k, a in arrays.items()} }.")
    count = counts.pop() if counts else 0
    rows = []
    for i in range(count):
        row = {}
        for name, a in arrays.items():
            value = a[i]
            if a.dtype == object:
                value = np.vectorize(lambda s: s.decode("utf-8", "replace"), otypes=[object])(value)
            row[name] = value
        rows.append(row)
    return rows


def detections(row, height=None, width=None):
    """One image's answer (a dict of a parser's list) as ``[{"label", "class", "score",
    "box"}]``, best first: the first ``num_detections``; ``class`` 1-based as served;
    ``box`` ``[ymin, xmin, ymax, xmax]`` normalized, or in pixels given the image's
    ``height`` and ``width``."""
    import numpy as np

    n = int(round(float(np.asarray(row["num_detections"]))))
    boxes = np.asarray(row["detection_boxes"], np.float64).reshape(-1, 4)[:n]
    if height is not None and width is not None:
        boxes = boxes * np.array([height, width, height, width], np.float64)
    labels = list(row.get("detection_labels", [""] * n))[:n]
    held = {
        "detection_boxes": len(boxes),
        "detection_labels": len(labels),
        **{k: len(np.asarray(row[k]).reshape(-1)) for k in ("detection_classes", "detection_scores")},
    }
    short = {k: v for k, v in held.items() if v < n}
    if n < 0 or short:
        raise ValueError(f"An answer with num_detections {n} holds fewer detections: {short or held}.")
    return [
        {
            "label": str(label.decode() if isinstance(label, bytes) else label),
            "class": int(c),
            "score": float(s),
            "box": [float(v) for v in box],
        }
        for label, c, s, box in zip(
            labels,
            np.asarray(row["detection_classes"])[:n],
            np.asarray(row["detection_scores"])[:n],
            boxes,
            strict=True,
        )
    ]
