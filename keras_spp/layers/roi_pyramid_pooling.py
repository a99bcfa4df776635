"""Keras layer over ``keras_spp.ops.roi_pyramid_pool``."""

import keras

from keras_spp.ops import bins
from keras_spp.ops.box_cells import COORDINATE_RULES, validate_spatial_scale
from keras_spp.ops.roi_pyramid_pool import roi_pyramid_pool, validate_chunk
from keras_spp.ops.spatial_pyramid_pool import pyramid_output_dim


@keras.saving.register_keras_serializable(package="keras_spp")
class RoiPyramidPooling(keras.layers.Layer):
    """Exact pyramid max pooling of each box's window of a feature map.

    Called as ``layer(features, boxes, box_indices)``: ``features [B, H, W, C]``,
    ``boxes [R, 4]`` as ``[y1, x1, y2, x2]`` in input-image pixels, ``box_indices [R]``
    (int) the image of each box. Returns ``[R, C * sum(n * n)]`` laid out as
    ``SpatialPyramidPooling``'s output. See ``keras_spp.ops.roi_pyramid_pool`` for
    the coordinate rules and the treatment of degenerate and out-of-map boxes.

    Args:
      levels: bins per side of each level; (6, 3, 2, 1) in the paper.
      spatial_scale: feature cells per input pixel, 1 / (product of the strides).
      coordinate_rule: ``"spp"`` (the paper's appendix) or ``"roi_pool"`` (Fast
        R-CNN, torchvision).
      max_boxes_per_chunk: boxes pooled at a time where their count is known (None:
        eager calls chunk automatically), bounding the memory of many-box calls; see
        ``roi_pyramid_pool``.

    Example:

    >>> import numpy as np
    >>> features = np.random.rand(1, 43, 58, 8).astype("float32")
    >>> boxes = np.array([[0, 0, 687, 916], [96, 32, 480, 400]], "float32")
    >>> tuple(RoiPyramidPooling(levels=(2, 1))(features, boxes, np.array([0, 0])).shape)
    (2, 40)
    """

    def __init__(
        self, levels=(6, 3, 2, 1), spatial_scale=1.0 / 16, coordinate_rule="spp", max_boxes_per_chunk=None, **kwargs
    ):
        super().__init__(**kwargs)
        self.levels = bins.validate_levels(levels)
        self.spatial_scale = validate_spatial_scale(spatial_scale)
        self.coordinate_rule = bins.validate_choice(coordinate_rule, COORDINATE_RULES, "coordinate_rule")
        self.max_boxes_per_chunk = validate_chunk(max_boxes_per_chunk)

    def call(self, features, boxes, box_indices):
        return roi_pyramid_pool(
            features,
            boxes,
            box_indices,
            self.levels,
            self.spatial_scale,
            self.coordinate_rule,
            self.max_boxes_per_chunk,
        )

    def compute_output_shape(self, features_shape, boxes_shape, box_indices_shape):
        return (boxes_shape[0], pyramid_output_dim(features_shape[3], self.levels))

    def get_config(self):
        config = super().get_config()
        config.update(
            levels=list(self.levels),
            spatial_scale=self.spatial_scale,
            coordinate_rule=self.coordinate_rule,
            max_boxes_per_chunk=self.max_boxes_per_chunk,
        )
        return config
