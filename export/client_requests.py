"""The requests of the example TF Serving client (``export.client``, whose docstring
describes their forms): REST predict bodies, row or columnar, and gRPC
``PredictRequest``s, for images alone or for a detector's images and their proposals,
padded with all-zero rows to one count (``pad_boxes``)."""

import base64

INPUT = "image_bytes"
SIGNATURE = "serving_default"


def rest_body(images, columnar=False, signature_name=SIGNATURE, input_name=INPUT):
    """A TF Serving REST predict body (a dict: ``json.dumps`` it) for encoded ``images`` (bytes)."""
    encoded = [{"b64": base64.b64encode(_bytes(image)).decode("ascii")} for image in images]
    if columnar:
        return {"signature_name": signature_name, "inputs": {input_name: encoded}}
    # One named input: each instance is that input's value, not an {input: value} dict.
    return {"signature_name": signature_name, "instances": encoded}


def pad_boxes(boxes_per_image):
    """float32 ``[N, R, 4]``: each image's ``[R_i, 4]`` proposals, then all-zero rows
    (padding, ignored by the export) up to ``R = max(R_i)``, at least 1 (so that a JSON
    body never holds an empty list whose shape TF Serving would have to guess)."""
    import numpy as np

    arrays = []
    for i, boxes in enumerate(boxes_per_image):
        a = np.asarray(boxes, np.float32)
        if a.size == 0:
            a = a.reshape(0, 4)
        if a.ndim != 2 or a.shape[1] != 4:
            raise ValueError(f"The boxes of image {i} must be [R, 4] as [y1, x1, y2, x2] pixels; got shape {a.shape}.")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"The boxes of image {i} have NaN or infinite coordinates.")
        arrays.append(a)
    out = np.zeros((len(arrays), max([len(a) for a in arrays] + [1]), 4), np.float32)
    for i, a in enumerate(arrays):
        out[i, : len(a)] = a
    return out


def detection_rest_body(images, boxes, columnar=False, signature_name=SIGNATURE):
    """A REST predict body for a detector export: encoded ``images`` (bytes) and one
    ``[R_i, 4]`` array of proposals per image, padded (``pad_boxes``) in either form."""
    images = [_bytes(image) for image in images]
    if len(boxes) != len(images):
        raise ValueError(f"One array of boxes per image: {len(images)} images, {len(boxes)} arrays of boxes.")
    encoded = [{"b64": base64.b64encode(image).decode("ascii")} for image in images]
    padded = pad_boxes(boxes).tolist()
    if columnar:
        return {"signature_name": signature_name, "inputs": {"image_bytes": encoded, "boxes": padded}}
    return {
        "signature_name": signature_name,
        "instances": [{"image_bytes": e, "boxes": b} for e, b in zip(encoded, padded, strict=True)],
    }


def predict_request(images, model_name, signature_name=SIGNATURE, input_name=INPUT, version=None):
    """A gRPC ``PredictRequest`` for encoded ``images`` (bytes), as a string tensor ``[N]``."""
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    if version is not None:
        request.model_spec.version.value = int(version)
    images = [_bytes(image) for image in images]
    tensor = tensor_pb2.TensorProto(
        dtype=types_pb2.DT_STRING,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=len(images))]),
        string_val=images,
    )
    request.inputs[input_name].CopyFrom(tensor)
    return request


def tensor_request(inputs, model_name, signature_name=SIGNATURE, version=None):
    """A gRPC ``PredictRequest`` from ``{input: numpy array}`` (``bytes`` objects for strings)."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    if version is not None:
        request.model_spec.version.value = int(version)
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    return request


def detection_request(images, boxes, model_name, signature_name=SIGNATURE, version=None):
    """A gRPC ``PredictRequest`` for a detector export: ``image_bytes`` string ``[N]`` and
    ``boxes`` float32 ``[N, R, 4]``, the proposals padded (``pad_boxes``)."""
    import tensorflow as tf

    images = [_bytes(image) for image in images]
    if len(boxes) != len(images):
        raise ValueError(f"One array of boxes per image: {len(images)} images, {len(boxes)} arrays of boxes.")
    request = predict_request(images, model_name, signature_name, "image_bytes", version)
    request.inputs["boxes"].CopyFrom(tf.make_tensor_proto(pad_boxes(boxes), dtype=tf.float32))
    return request


def _bytes(image):
    if isinstance(image, (bytes, bytearray, memoryview)):
        return bytes(image)
    raise TypeError(
        f"Images are sent as their encoded bytes (a JPEG or PNG file's content); got {type(image).__name__}."
    )
