"""The R-CNN baseline: every window warped to the network input and run through the
conv layers on its own (Girshick et al. 2014), on the same backbone and heads.

Each window is enlarged about its centre so that, once warped to
``window_size x window_size``, ``context`` pixels (16) of its surroundings lie on
every side (R-CNN's best variant); what falls outside the image is filled with the
mid-grey that the Table 1 backbones map to 0, as R-CNN pads with the mean. The
warped window's conv5 is then pooled with the same pyramid as SPP-net, so both
detectors feed features of one length to identical heads.
"""

import keras
import tensorflow as tf

from keras_spp.detection.boxes import context_boxes, context_scale
from keras_spp.ops.bins import validate_levels
from keras_spp.ops.spatial_pyramid_pool import pyramid_output_dim, spatial_pyramid_pool

PAD_VALUE = 127.5


@keras.saving.register_keras_serializable(package="keras_spp")
class WarpedWindowFeatures(keras.layers.Layer):
    """R-CNN features: ``call(image [1, H, W, 3], boxes [R, 4]) -> [R, D]``, with ``D``
    as ``MultiScaleRoiFeatures`` gives for the same backbone and levels.

    Windows go through the backbone ``chunk_size`` at a time, so memory stays at
    ``chunk_size`` warped images whatever ``R`` is.
    """

    def __init__(self, backbone, levels=(6, 3, 2, 1), window_size=224, context=16, chunk_size=64, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(backbone, keras.Model):
            raise ValueError(f"`backbone` must be a keras.Model; got {backbone!r}.")
        if int(chunk_size) < 1:
            raise ValueError(f"`chunk_size` must be >= 1; got {chunk_size}.")
        context_scale(window_size, context, "window_size")
        self.backbone = backbone
        self.levels = validate_levels(levels)
        self.window_size = int(window_size)
        self.context = int(context)
        self.chunk_size = int(chunk_size)
        self.output_dim = pyramid_output_dim(backbone.output_shape[-1], self.levels)

    def build(self, image_shape=None, boxes_shape=None):
        if not self.backbone.built:
            self.backbone.build((None, None, None, 3))
        self.built = True

    def call(self, image, boxes):
        image = tf.cast(image, tf.float32)
        boxes = tf.reshape(tf.cast(boxes, tf.float32), [-1, 4])
        count = tf.shape(boxes)[0]
        chunks = (count + self.chunk_size - 1) // self.chunk_size
        padded = tf.pad(boxes, [[0, chunks * self.chunk_size - count], [0, 0]])
        padded = tf.reshape(padded, [chunks, self.chunk_size, 4])
        shape = tf.shape(image)
        scale = tf.cast(tf.stack([shape[1], shape[2], shape[1], shape[2]]), tf.float32)

        def features(chunk):
            # crop_and_resize samples at pixel indices y * (H - 1) for normalized y; a
            # continuous box [a, b) spans the pixels whose indices run from a to b - 1.
            windows = context_boxes(chunk, self.window_size, self.context, "float32")
            normalized = (windows - tf.constant([0.0, 0.0, 1.0, 1.0])) / tf.maximum(scale - 1.0, 1.0)
            warped = tf.image.crop_and_resize(
                image,
                normalized,
                tf.zeros([self.chunk_size], tf.int32),
                [self.window_size, self.window_size],
                extrapolation_value=PAD_VALUE,
            )
            maps = self.backbone(tf.cast(warped, self.compute_dtype))
            return tf.cast(spatial_pyramid_pool(maps, self.levels), self.compute_dtype)

        pooled = tf.map_fn(
            features,
            padded,
            fn_output_signature=tf.TensorSpec([self.chunk_size, self.output_dim], self.compute_dtype),
            parallel_iterations=1,
        )
        return tf.reshape(pooled, [-1, self.output_dim])[:count]

    def compute_output_shape(self, image_shape, boxes_shape):
        return (boxes_shape[0], self.output_dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            backbone=keras.saving.serialize_keras_object(self.backbone),
            levels=list(self.levels),
            window_size=self.window_size,
            context=self.context,
            chunk_size=self.chunk_size,
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)
