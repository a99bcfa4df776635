"""One annotated detection image, the record every detection source yields.

Box convention (everywhere in ``keras_spp.detection``): ``[y1, x1, y2, x2]`` in
continuous pixel coordinates of the original image, pixel ``i`` covering
``[i, i + 1)``; width is ``x2 - x1`` (no ``+ 1``). VOC's 1-based inclusive
``xmin..xmax`` is ``x1 = xmin - 1, x2 = xmax``, so areas and IoUs equal the VOC
devkit's ``+ 1`` arithmetic exactly.
"""

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class DetectionExample:
    """``boxes`` float32 ``[N, 4]``, ``labels`` int32 ``[N]`` (indices into the
    source's class names, no background), ``difficult`` bool ``[N]``; ``N`` may be 0."""

    image_id: str
    image_path: str
    height: int
    width: int
    boxes: np.ndarray
    labels: np.ndarray
    difficult: np.ndarray

    def __post_init__(self):
        boxes = np.asarray(self.boxes, np.float32).reshape(-1, 4)
        labels = np.asarray(self.labels, np.int32).reshape(-1)
        difficult = np.asarray(self.difficult, bool).reshape(-1)
        if not len(boxes) == len(labels) == len(difficult):
            raise ValueError(
                f"{self.image_id}: {len(boxes)} boxes, {len(labels)} labels and "
                f"{len(difficult)} difficult flags; they must have one entry per object."
            )
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "difficult", difficult)
