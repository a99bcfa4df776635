"""Window features: conv5 computed once per image and scale, each window pooled with
the RoI pyramid op at its own scale (the paper's section 4.1), and optionally a
context square around it pooled from the same map."""

import keras
import tensorflow as tf

from keras_spp.detection import detector_ops
from keras_spp.detection import scales as scales_lib
from keras_spp.ops.bins import validate_levels
from keras_spp.ops.box_cells import COORDINATE_RULES
from keras_spp.ops.spatial_pyramid_pool import pyramid_output_dim
from keras_spp.validation import is_number

MIN_BUCKET = 64


def bucket_size(count):
    """The row count ``count`` boxes are padded to under XLA: the next power of two,
    at least ``MIN_BUCKET``."""
    exponent = tf.math.ceil(tf.math.log(tf.cast(tf.maximum(count, 1), tf.float32)) / tf.math.log(2.0))
    return tf.maximum(tf.maximum(tf.cast(2.0**exponent, tf.int32), count), MIN_BUCKET)


@keras.saving.register_keras_serializable(package="keras_spp")
class MultiScaleRoiFeatures(keras.layers.Layer):
    """Pyramid-pooled features of windows of one image, at one or several scales.

    ``call(image, boxes)``: ``image`` float ``[1, H, W, 3]`` in the backbone's input
    range (pixels 0..255 for ``keras_spp.models.backbone``), any size;
    ``boxes`` float ``[R, 4]`` as ``[y1, x1, y2, x2]`` in pixels of that image.
    Returns ``[R, output_dim]``: ``C * sum(n * n)``, twice that with ``context``.

    For every scale the image is resized (shorter side ``s``, longer side at most
    ``max_side``) and the backbone runs once; each window is pooled from the single
    scale where its scaled area is closest to ``window_size ** 2``
    (``keras_spp.detection.scales``). Scales no window chose are skipped, since
    their conv5 would be thrown away. ``feature_stride`` is the backbone's product
    of strides (16 for ZF-5); boxes map to cells by ``coordinate_rule`` as in
    ``roi_pyramid_pool``. ``jit_compile=True`` compiles each scale's conv and
    pooling with XLA (the antialiased resize before them has no XLA kernel).
    On JAX and PyTorch ``call`` is ``keras_spp.detection.detector_ops.pool_windows``
    (``keras.ops``; the same features, under ``jax.jit`` too); ``pool_windows`` and
    the other methods are TensorFlow's.

    ``context`` (beyond the paper; ``None``: off): each window's features are
    followed by those of a square of ``context`` times its longer side, centred on
    it and clipped to the image, pooled from the same scale's map. A window alone
    cannot tell a straight bar cut out of a longer line from a 1, or half an 8 from
    a 3; its surroundings can. A classifier pretrained on crops with context
    (``keras_spp.data.mnist_windows``: 1.6 to 2.6 times the digit's longer side)
    has seen such squares.

    Example:

    >>> import numpy as np
    >>> from keras_spp.models import backbone
    >>> layer = MultiScaleRoiFeatures(backbone("zf5", width=0.125), scales=(200, 300))
    >>> layer(np.zeros((1, 150, 180, 3), "float32"), np.array([[0, 0, 50, 60.]], "float32")).shape
    TensorShape([1, 1600])
    """

    def __init__(
        self,
        backbone,
        scales=scales_lib.SINGLE_SCALE,
        levels=(6, 3, 2, 1),
        feature_stride=16,
        window_size=224,
        max_side=scales_lib.MAX_SIDE,
        coordinate_rule="spp",
        jit_compile=False,
        context=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(backbone, keras.Model):
            raise ValueError(f"`backbone` must be a keras.Model mapping images to a feature map; got {backbone!r}.")
        if coordinate_rule not in COORDINATE_RULES:
            raise ValueError(f"`coordinate_rule` must be one of {COORDINATE_RULES}; got {coordinate_rule!r}.")
        if not feature_stride or feature_stride <= 0:
            raise ValueError(f"`feature_stride` must be a positive number of pixels per cell; got {feature_stride!r}.")
        self.backbone = backbone
        self.scales = scales_lib.validate_scales(scales)
        self.levels = validate_levels(levels)
        self.feature_stride = float(feature_stride)
        self.window_size = int(window_size)
        self.max_side = int(max_side)
        self.coordinate_rule = coordinate_rule
        self.jit_compile = bool(jit_compile)
        self.context = validate_context(context)
        # The antialiased resize has no XLA kernel, so only conv + pooling compile.
        self._pool_scaled_xla = tf.function(self.pool_scaled, jit_compile=True, reduce_retracing=True)
        self._pool_map_xla = tf.function(self.pool_map, jit_compile=True, reduce_retracing=True)
        channels = backbone.output_shape[-1]
        if channels is None:
            raise ValueError("the backbone's output must have a static channel count.")
        self.window_dim = pyramid_output_dim(channels, self.levels)
        self.output_dim = self.window_dim * (1 if self.context is None else 2)
        # (step, margin) pixels for running the conv on the part of a scale its windows read.
        self.conv_crop = conv_crop(backbone)

    def build(self, image_shape=None, boxes_shape=None):
        if not self.backbone.built:
            self.backbone.build((None, None, None, 3))
        self.built = True

    def call(self, image, boxes):
        if keras.backend.backend() != "tensorflow":  # JAX, PyTorch: the keras.ops pooling
            return detector_ops.pool_windows(self, image, boxes)
        return self.pool_windows(image, boxes, self.jit_compile)

    def pool_windows(self, image, boxes, jit_compile, feature_maps=None):
        """``call`` with the XLA choice given here rather than by the layer's setting.

        Under XLA each scale's boxes are padded to ``bucket_size`` rows (the padding's
        features are dropped): XLA compiles one program per input shape, and the number
        of boxes at a scale differs in nearly every image; with the padding it compiles
        once per image size and power of two.

        ``feature_maps``: ``{scale index: conv5 [1, h, w, C]}`` already computed for this
        image (an RPN's, ``keras_spp.detection.learned_proposals``): those scales pool
        from them instead of running the backbone again.
        """
        feature_maps = feature_maps or {}
        image = tf.convert_to_tensor(image, self.compute_dtype)
        boxes = tf.cast(tf.reshape(boxes, [-1, 4]), tf.float32)
        shape = tf.shape(image)
        height, width = shape[1], shape[2]
        factors = scales_lib.resize_factors(height, width, self.scales, self.max_side)
        chosen = scales_lib.choose_scales(boxes, factors, self.window_size)
        positions, pieces = [], []
        for i in range(len(self.scales)):
            where = tf.cast(tf.where(tf.equal(chosen, i))[:, 0], tf.int32)
            positions.append(where)
            pieces.append(
                self._pool_at(
                    image, tf.gather(boxes, where), factors[i], height, width, jit_compile, feature_maps.get(i)
                )
            )
        return tf.dynamic_stitch(positions, pieces)

    def _pool_at(self, image, boxes, factor, height, width, jit_compile, feature_map=None):
        count = tf.shape(boxes)[0]

        def pooled():
            scaled = boxes * factor
            if jit_compile:  # a power-of-two row count: one XLA program per image size and bucket
                scaled = tf.pad(scaled, [[0, bucket_size(count) - count], [0, 0]])
            if feature_map is not None:  # an RPN's conv5 of this scale: the pooling alone
                size = scales_lib.resized_size(height, width, factor)
                return (self._pool_map_xla if jit_compile else self.pool_map)(feature_map, scaled, size)[:count]
            resized = self.resized(image, factor, height, width)
            if jit_compile:
                return self._pool_scaled_xla(resized, scaled)[:count]
            return self.pool_cropped(resized, scaled)

        def empty():
            return tf.zeros([0, self.output_dim], self.compute_dtype)

        return tf.cond(count > 0, pooled, empty)

    def pool_scaled(self, resized, scaled_boxes):
        """Windows of an image already resized to one scale (``resized``), as
        ``[y1, x1, y2, x2]`` pixels of that resized image: conv, then pooling. The
        features come out in this layer's compute dtype, whatever the backbone
        computes in (a mixed_bfloat16 backbone feeds float32 heads)."""
        return self.pool_map(self.backbone(resized), scaled_boxes, tf.shape(resized)[1:3])

    def pool_cropped(self, resized, scaled_boxes):
        """``pool_scaled`` with the conv run only on the part of ``resized`` that the
        windows (and their context squares) read, and on enough around it for every
        cell they pool to see its whole receptive field; the map is padded back to
        the full image's cells, so the pooling and its features are ``pool_scaled``'s.

        Why: at the largest scale an RPN detector pools a few windows (5 of its 300 at
        1100 px on the digits' test images) from a map that cost half its conv time;
        their crop averaged a quarter of that scale's image. The crop starts and ends
        a whole number of ``step`` (the product of the backbone's strides) from the
        image's edges, so every layer pads and strides as on the full image, and cells
        at least ``margin`` from a cut edge are the full map's. Backbones other than
        chains of convolutions, poolings, paddings and per-pixel layers
        (``conv_crop`` is None) run on the whole image."""
        if self.conv_crop is None:
            return self.pool_scaled(resized, scaled_boxes)
        step, margin = self.conv_crop
        size = tf.shape(resized)[1:3]
        region = scaled_boxes
        if self.context is not None:
            region = tf.concat([region, context_windows(region, self.context, size[0], size[1])], 0)
        limit = tf.cast(size, tf.float32)
        # Cells read by a box lie within a cell of [floor(v / step), ceil(v / step)] of
        # its coordinates (either rule, boxes with y2 < y1 too), clipped to the map.
        corners = tf.reshape(region, [-1, 2, 2])
        low = tf.clip_by_value(tf.reduce_min(corners, axis=[0, 1]), 0.0, limit)
        high = tf.clip_by_value(tf.reduce_max(corners, axis=[0, 1]), 0.0, limit)
        before = tf.maximum(tf.cast(tf.floor(low / step), tf.int32) * step - step - margin, 0) // step
        need = tf.cast(tf.math.ceil(high / step), tf.int32) * step + step + margin
        after = tf.maximum(size - need, 0) // step
        crop = resized[:, before[0] * step : size[0] - after[0] * step, before[1] * step : size[1] - after[1] * step]
        feature_map = self.backbone(crop)
        feature_map = tf.pad(feature_map, [[0, 0], [before[0], after[0]], [before[1], after[1]], [0, 0]])
        return self.pool_map(feature_map, scaled_boxes, size)

    def pool_map(self, feature_map, scaled_boxes, size):
        """``pool_scaled`` from the backbone's map of the resized image, whose
        ``size`` is ``[2]`` (height, width): the pooling alone."""
        return detector_ops.pool_map(self, feature_map, scaled_boxes, size)

    def resized(self, image, factor, height=None, width=None):
        """``image`` resized by ``factor`` (what the backbone sees at that scale)."""
        if height is None:
            height, width = tf.shape(image)[1], tf.shape(image)[2]
        size = scales_lib.resized_size(height, width, factor)

        # Antialiasing matters when a scale shrinks the image (1200 px photos at 480).
        # Enlarging, its filter is plain bilinear's (within 0.008 of 255 here) at 1/6 the
        # time: with antialias on, resizing took a third of the conv time of six scales.
        def shrink():
            return tf.image.resize(image, size, antialias=True)

        def enlarge():
            return tf.image.resize(image, size)

        return tf.cast(tf.cond(tf.cast(factor, tf.float32) < 1.0, shrink, enlarge), self.compute_dtype)

    def feature_map(self, image, factor):
        """The backbone's map of ``image`` resized by ``factor``."""
        return self.backbone(self.resized(image, factor))

    def compute_output_shape(self, image_shape, boxes_shape):
        return (boxes_shape[0], self.output_dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            backbone=keras.saving.serialize_keras_object(self.backbone),
            scales=list(self.scales),
            levels=list(self.levels),
            feature_stride=self.feature_stride,
            window_size=self.window_size,
            max_side=self.max_side,
            coordinate_rule=self.coordinate_rule,
            jit_compile=self.jit_compile,
            context=self.context,
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)


def validate_context(context):
    """``None`` (no context features) or a float >= 1 (``MultiScaleRoiFeatures``)."""
    if context is None:
        return None
    if not is_number(context) or context < 1:
        raise ValueError(
            f"`context` must be None (no context features) or a number >= 1, the side of the context "
            f"square as a multiple of the window's longer side (e.g. 2.0); got {context!r}."
        )
    return float(context)


# Written once, in keras.ops, for every backend.
context_windows = detector_ops.context_windows


# Layers that act on each pixel (or each pixel's channels) alone: a crop leaves them exact.
_PER_PIXEL = ("InputLayer", "Rescaling", "MinimumInputSize", "LocalResponseNormalization", "Activation", "ReLU")


def conv_crop(backbone):
    """``(step, margin)`` pixels for ``MultiScaleRoiFeatures.pool_cropped``, or ``None``.

    ``step``: the product of the backbone's strides; a crop whose edges lie a whole
    number of steps from the image's leaves every layer's padding and stride grid as
    on the whole image. ``margin``: its receptive field rounded up to whole steps, so
    a cell that far from a cut edge sees only pixels the crop kept. ``None`` unless
    the backbone is a chain of ``Conv2D`` (no dilation), max or average pooling, zero
    padding and per-pixel layers, with square kernels and strides."""
    sizes = []
    for layer in backbone.layers:
        kind = type(layer).__name__
        if kind in _PER_PIXEL or kind == "ZeroPadding2D":
            continue
        if kind not in ("Conv2D", "MaxPooling2D", "AveragePooling2D"):
            return None
        kernel = tuple(layer.kernel_size if kind == "Conv2D" else layer.pool_size)
        strides = tuple(layer.strides)
        if kind == "Conv2D" and tuple(layer.dilation_rate) != (1, 1):
            return None
        if len(set(kernel)) != 1 or len(set(strides)) != 1:
            return None
        sizes.append((int(kernel[0]), int(strides[0])))
    field, step = 1, 1
    for kernel, stride in reversed(sizes):
        field = (field - 1) * stride + kernel
    for _, stride in sizes:
        step *= stride
    return step, -(-field // step) * step


def measured_feature_stride(backbone, sizes=(384, 768)):
    """Pixels of input per cell of ``backbone``'s output map, measured: the growth of
    the map between two probe images of ``sizes`` (squares), so that padding and
    the map's border cells do not count. ``ValueError`` when the backbone does not
    take both sizes or its map does not grow."""
    import numpy as np

    try:
        rows = [int(backbone(np.zeros((1, s, s, 3), "float32"), training=False).shape[1]) for s in sizes]
    except Exception as error:  # a fixed input size, or a map that vanishes
        raise ValueError(
            f"could not measure the stride of backbone {backbone.name!r} on {sizes[0]} and {sizes[1]} px probe "
            f"images ({type(error).__name__}: {error}); pass the pixels per cell yourself."
        ) from None
    if rows[1] <= rows[0]:
        raise ValueError(f"backbone {backbone.name!r} gave maps of {rows[0]} and {rows[1]} rows for {sizes} px images.")
    return (sizes[1] - sizes[0]) / (rows[1] - rows[0])


def backbone_of(classifier):
    """The conv part of an SPP classifier (the model feeding its ``spp`` layer).

    Works for ``keras_spp.models.spp_classifier`` models and any functional model
    whose layer named ``spp`` takes a nested backbone model's output.
    """
    try:
        spp = classifier.get_layer("spp")
    except ValueError:
        raise ValueError(
            f"model {classifier.name!r} has no layer named 'spp'; pass a classifier from "
            "keras_spp.models.spp_classifier or the backbone model itself."
        ) from None
    source = spp._inbound_nodes[0].input_tensors[0]._keras_history.operation
    if not isinstance(source, keras.Model):
        raise ValueError(f"the 'spp' layer of {classifier.name!r} is not fed by a backbone model; got {source.name!r}.")
    return source
