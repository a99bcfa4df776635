"""How reference cases hold their data in JSON (``reference.json``, read by
``export/serving_check.py``): arrays as ``{"dtype", "shape", "values"}``, bytes as
base64, pixels as PNG files."""

import base64
import io


def png_bytes(array):
    """An ``[H, W, 3]`` uint8 array as PNG file bytes."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


def b64(data):
    """``bytes`` as a base64 ``str``.

    >>> b64(b"spp")
    'c3Bw'
    """
    return base64.b64encode(data).decode("ascii")


def jsonable(outputs):
    """``{name: array}`` as ``{name: {"dtype", "shape", "values"}}`` (strings as ``"string"``).

    >>> encoded = jsonable({"n": [[1, 2]], "label": ["7"]})
    >>> encoded["n"]
    {'dtype': 'int64', 'shape': [1, 2], 'values': [[1, 2]]}
    >>> encoded["label"]
    {'dtype': 'string', 'shape': [1], 'values': ['7']}
    """
    import numpy as np

    result = {}
    for name, value in outputs.items():
        a = np.asarray(value)
        if a.dtype == object or a.dtype.kind in "US":
            result[name] = {"dtype": "string", "shape": list(a.shape), "values": a.astype(str).tolist()}
        else:
            result[name] = {"dtype": str(a.dtype), "shape": list(a.shape), "values": a.tolist()}
    return result
