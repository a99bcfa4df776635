"""Anchors: reference boxes at every cell of a conv5 map (Faster R-CNN's RPN).

Conventions (the rest of ``keras_spp.detection``'s): boxes are ``[y1, x1, y2, x2]``
in continuous pixel coordinates of the image the map was computed from. Cell
``(i, j)`` of a map of stride ``s`` is centred at ``((i + 0.5) s, (j + 0.5) s)``;
each anchor of ``sizes`` x ``aspect_ratios`` has area ``size ** 2`` and
``height / width = ratio``. Order: row-major over cells, then sizes, then ratios
(``A = len(sizes) * len(aspect_ratios)`` anchors per cell), which is how
``keras_spp.detection.rpn``'s head lays out its outputs.
"""

import dataclasses

import numpy as np
from keras import ops

from keras_spp.detection.boxes import NUMPY_OPS
from keras_spp.validation import is_number


@dataclasses.dataclass(frozen=True)
class AnchorConfig:
    """Anchor sizes (pixels of the image at the RPN's scale) and aspect ratios
    (height / width), and the stride of the map they sit on."""

    sizes: tuple = (32, 64, 128, 256)
    aspect_ratios: tuple = (1.0, 2.0, 3.0)
    stride: float = 16.0

    def __post_init__(self):
        for name in ("sizes", "aspect_ratios"):
            values = getattr(self, name)
            if isinstance(values, (str, bytes)) or not hasattr(values, "__len__") or len(values) == 0:
                raise ValueError(f"`{name}` must be a non-empty sequence of positive numbers; got {values!r}.")
            if any(not is_number(v) or v <= 0 for v in values):
                raise ValueError(f"`{name}` must hold positive finite numbers; got {values!r}.")
            object.__setattr__(self, name, tuple(float(v) for v in values))
        if not is_number(self.stride) or not self.stride > 0:
            raise ValueError(f"`stride` must be a positive number of pixels per cell; got {self.stride!r}.")
        object.__setattr__(self, "stride", float(self.stride))

    @property
    def per_cell(self):
        return len(self.sizes) * len(self.aspect_ratios)

    def cell_anchors(self):
        """``[A, 4]`` float32 anchors centred on ``(0, 0)``, in the order of the module docstring."""
        rows = []
        for size in self.sizes:
            for ratio in self.aspect_ratios:
                h, w = size * np.sqrt(ratio), size / np.sqrt(ratio)
                rows.append((-h / 2, -w / 2, h / 2, w / 2))
        return np.asarray(rows, np.float32)

    def to_dict(self):
        return {"sizes": list(self.sizes), "aspect_ratios": list(self.aspect_ratios), "stride": self.stride}


def anchor_grid(map_height, map_width, config, dtype="float32", xp=ops):
    """All anchors of a ``map_height x map_width`` map: ``[H * W * A, 4]`` in ``dtype``.

    ``map_height`` and ``map_width`` may be tensors (dynamic shapes, XLA); a map
    with no cells gives ``[0, 4]``.

    >>> anchor_grid(1, 2, AnchorConfig(sizes=(16,), aspect_ratios=(1,))).numpy().tolist()
    [[0.0, 0.0, 16.0, 16.0], [0.0, 16.0, 16.0, 32.0]]
    """
    cell = xp.cast(config.cell_anchors(), dtype)
    ys = (xp.cast(xp.arange(map_height), dtype) + 0.5) * config.stride
    xs = (xp.cast(xp.arange(map_width), dtype) + 0.5) * config.stride
    cy, cx = xp.meshgrid(ys, xs, indexing="ij")
    centres = xp.reshape(xp.stack([cy, cx, cy, cx], axis=-1), (-1, 1, 4))
    return xp.reshape(centres + cell[None], (-1, 4))


def anchor_grid_np(map_height, map_width, config):
    """``anchor_grid`` in numpy: computed in float64, returned as float32 (for target
    assignment outside the graph)."""
    return anchor_grid(map_height, map_width, config, "float64", NUMPY_OPS).astype(np.float32)
