import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_spp.detection.features import MultiScaleRoiFeatures, backbone_of, context_windows
from keras_spp.models import backbone, zf5
from keras_spp.ops.roi_pyramid_pool import roi_pyramid_pool


@pytest.fixture(scope="module")
def conv():
    keras.utils.set_random_seed(1)
    return backbone("zf5", width=0.125)


def reference(conv, image, boxes, scales, levels, window, context=None):
    """Obvious version: every box on its own, at the scale the paper's rule picks;
    with ``context``, the square around it pooled from that scale's map too."""
    h, w = image.shape[1:3]
    factors = [np.float32(f) for f in reference_factors(h, w, scales)]  # the layer's are float32
    rows = []
    for box in boxes:
        i = reference_scale(box, factors, window)
        size = reference_size(h, w, factors[i])
        maps = conv(tf.image.resize(image, size, antialias=True))
        scaled = box * factors[i]
        row = [roi_pyramid_pool(maps, scaled[None], [0], levels, 1 / 16)[0].numpy()]
        if context is not None:
            square = reference_context_window(scaled, context, *size)
            row.append(roi_pyramid_pool(maps, np.float32([square]), [0], levels, 1 / 16)[0].numpy())
        rows.append(np.concatenate(row))
    return np.stack(rows) if rows else np.zeros((0, 0))


def reference_factors(height, width, scales, max_side=2000):
    """The paper's resize: the shorter side to ``s``, unless the longer then passes ``max_side``."""
    return [min(s / min(height, width), max_side / max(height, width)) for s in scales]


def reference_scale(box, factors, window):
    """The first scale at which the box's area is closest to ``window ** 2``."""
    y1, x1, y2, x2 = (float(v) for v in box)
    area = max(y2 - y1, 0.0) * max(x2 - x1, 0.0)
    best, best_distance = 0, None
    for i, f in enumerate(factors):
        distance = abs(area * float(f) ** 2 - window**2)
        if best_distance is None or distance < best_distance:
            best, best_distance = i, distance
    return best


def reference_size(height, width, factor):
    """The image's size at ``factor``: each side rounded, at least 1."""
    return max(1, round(height * float(factor))), max(1, round(width * float(factor)))


def reference_context_window(box, context, height, width):
    y1, x1, y2, x2 = (float(v) for v in box)
    side = context * max(y2 - y1, x2 - x1)
    cy, cx = (y1 + y2) / 2, (x1 + x2) / 2
    return [
        min(max(cy - side / 2, 0), height),
        min(max(cx - side / 2, 0), width),
        min(max(cy + side / 2, 0), height),
        min(max(cx + side / 2, 0), width),
    ]


def random_boxes(rng, n, h, w):
    y = rng.uniform(0, h - 2, (n, 2))
    x = rng.uniform(0, w - 2, (n, 2))
    return np.stack([y.min(1), x.min(1), y.max(1) + 1, x.max(1) + 1], 1).astype(np.float32)


@pytest.mark.parametrize("scales", [(160,), (120, 200, 260)])
def test_matches_per_box_reference(conv, scales):
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, (1, 90, 130, 3)).astype(np.float32)
    boxes = np.concatenate([random_boxes(rng, 12, 90, 130), [[0, 0, 90, 130], [10, 10, 10, 40]]]).astype(np.float32)
    layer = MultiScaleRoiFeatures(conv, scales, (3, 1), feature_stride=16, window_size=64)
    got = layer(image, boxes).numpy()
    np.testing.assert_allclose(got, reference(conv, image, boxes, scales, (3, 1), 64), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("jit_compile", [False, True])
@pytest.mark.parametrize("context", [1.0, 2.0, 3.5])
def test_context_features_match_per_box_reference(conv, context, jit_compile):
    rng = np.random.default_rng(5)
    image = rng.uniform(0, 255, (1, 90, 130, 3)).astype(np.float32)
    # Boxes inside, on the edges (their squares clipped), the whole image, a line.
    boxes = np.concatenate(
        [random_boxes(rng, 10, 90, 130), [[0, 0, 90, 130], [0, 120, 30, 130], [70, 0, 90, 8], [10, 10, 10, 40]]]
    ).astype(np.float32)
    layer = MultiScaleRoiFeatures(conv, (120, 200), (3, 1), window_size=64, context=context, jit_compile=jit_compile)
    plain = MultiScaleRoiFeatures(conv, (120, 200), (3, 1), window_size=64)
    got = layer(image, boxes).numpy()
    assert layer.output_dim == 2 * plain.output_dim == got.shape[1]
    np.testing.assert_allclose(
        got, reference(conv, image, boxes, (120, 200), (3, 1), 64, context), rtol=1e-4, atol=1e-4
    )
    # The first half is the window's own features, exactly as without context.
    np.testing.assert_allclose(got[:, : plain.output_dim], plain(image, boxes).numpy(), rtol=1e-4, atol=1e-4)
    empty = layer(image, np.zeros((0, 4), np.float32))
    assert empty.shape == (0, layer.output_dim)


def test_context_windows_against_reference():
    rng = np.random.default_rng(7)
    boxes = np.concatenate([random_boxes(rng, 50, 60, 80), [[5, 5, 5, 5], [0, 0, 60, 80]]]).astype(np.float32)
    for context in (1.0, 1.6, 2.6):
        got = context_windows(tf.constant(boxes), context, 60, 80).numpy()
        want = np.float32([reference_context_window(b, context, 60, 80) for b in boxes])
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
        # Squares unless clipped, always containing the window.
        assert np.all(got[:, :2] <= boxes[:, :2] + 1e-4) and np.all(got[:, 2:] >= boxes[:, 2:] - 1e-4)
    assert context_windows(tf.zeros([0, 4]), 2.0, 60, 80).shape == (0, 4)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_a_bfloat16_backbone_gives_float32_features_close_to_its_float32_twin(conv, jit_compile):
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        half = backbone("zf5", width=0.125)
    finally:
        keras.config.set_dtype_policy("float32")
    half.set_weights(conv.get_weights())
    rng = np.random.default_rng(3)
    image = rng.uniform(0, 255, (1, 90, 130, 3)).astype(np.float32)
    # Windows at every scale, and one at a scale no other window takes: some scales'
    # pieces are empty, and every piece must come out in the same dtype to be stitched.
    boxes = np.concatenate([random_boxes(rng, 9, 90, 130), [[0, 0, 90, 130]]]).astype(np.float32)
    layer = MultiScaleRoiFeatures(half, (120, 200, 260), (3, 1), window_size=64, jit_compile=jit_compile)
    got = layer(image, boxes)
    assert got.dtype == tf.float32
    exact = reference(conv, image, boxes, (120, 200, 260), (3, 1), 64)
    # bfloat16 keeps 8 bits of mantissa: a few parts in a thousand of each map's scale.
    np.testing.assert_allclose(got.numpy(), exact, rtol=0.05, atol=0.05 * np.abs(exact).max())


def test_no_boxes_gives_empty_rows(conv):
    layer = MultiScaleRoiFeatures(conv, (100, 150), (2, 1))
    out = layer(np.zeros((1, 60, 80, 3), np.float32), np.zeros((0, 4), np.float32))
    assert out.shape == (0, layer.output_dim)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_graph_and_xla_with_dynamic_sizes(conv, jit_compile):
    layer = MultiScaleRoiFeatures(conv, (100, 150), (2, 1), window_size=48)
    compiled = MultiScaleRoiFeatures(conv, (100, 150), (2, 1), window_size=48, jit_compile=jit_compile)
    spec = [tf.TensorSpec([1, None, None, 3]), tf.TensorSpec([None, 4])]
    graph = tf.function(lambda i, b: compiled(i, b), input_signature=spec)
    rng = np.random.default_rng(2)
    for h, w, n in ((60, 80, 5), (97, 41, 0), (50, 50, 9)):
        image = rng.uniform(0, 255, (1, h, w, 3)).astype(np.float32)
        boxes = random_boxes(rng, n, h, w)
        eager = layer(image, boxes).numpy()
        np.testing.assert_allclose(graph(image, boxes).numpy(), eager, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("context", [None, 2.0])
def test_config_round_trip_and_saving(conv, tmp_path, context):
    layer = MultiScaleRoiFeatures(
        conv, (100, 150), (2, 1), feature_stride=16, window_size=48, context=context, name="roi_features"
    )
    image = keras.Input((None, None, 3), batch_size=1)
    boxes = keras.Input((4,))
    model = keras.Model([image, boxes], layer(image, boxes))
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    x = np.random.default_rng(3).uniform(0, 255, (1, 70, 90, 3)).astype(np.float32)
    b = np.array([[0, 0, 30, 40], [5, 5, 70, 90]], np.float32)
    np.testing.assert_allclose(loaded([x, b]).numpy(), model([x, b]).numpy(), rtol=1e-6)
    assert loaded.layers[-1].get_config()["scales"] == [100, 150]
    assert loaded.layers[-1].context == context


def test_backbone_of_an_spp_classifier():
    net = zf5(5, width=0.125, fc_units=16)
    conv = backbone_of(net)
    assert conv.name == "zf5" and conv.output_shape[-1] == 32


def test_bad_arguments_are_explained(conv):
    with pytest.raises(ValueError, match="backbone"):
        MultiScaleRoiFeatures("zf5")
    with pytest.raises(ValueError, match="coordinate_rule"):
        MultiScaleRoiFeatures(conv, coordinate_rule="nearest")
    with pytest.raises(ValueError, match="feature_stride"):
        MultiScaleRoiFeatures(conv, feature_stride=0)
    for context in (0.5, 0, "2", True, float("nan")):
        with pytest.raises(ValueError, match="`context` must be None"):
            MultiScaleRoiFeatures(conv, context=context)
    with pytest.raises(ValueError, match="no layer named 'spp'"):
        backbone_of(conv)


def test_the_resize_antialiases_only_when_it_shrinks(conv):
    layer = MultiScaleRoiFeatures(conv, scales=(50, 300))
    image = tf.constant(np.random.default_rng(5).uniform(0, 255, (1, 100, 120, 3)), tf.float32)
    graph = tf.function(layer.resized, input_signature=[tf.TensorSpec([1, None, None, 3]), tf.TensorSpec([])])
    for resized in (layer.resized, graph):
        small = resized(image, tf.constant(0.5)).numpy()
        np.testing.assert_array_equal(small, tf.image.resize(image, (50, 60), antialias=True).numpy())
        big = resized(image, tf.constant(3.0)).numpy()
        np.testing.assert_array_equal(big, tf.image.resize(image, (300, 360)).numpy())
        # Enlarging, the antialiasing filter is bilinear's: the same image up to rounding.
        np.testing.assert_allclose(big, tf.image.resize(image, (300, 360), antialias=True).numpy(), atol=0.05)


def test_the_stride_of_any_backbone_is_measured():
    import keras

    from keras_spp.detection.features import measured_feature_stride
    from keras_spp.models import backbone as table1
    from keras_spp.models.backbones import feature_stride

    for name in ("zf5", "overfeat5"):
        assert measured_feature_stride(table1(name, width=0.125)) == feature_stride(name)
    mobilenet = keras.applications.MobileNetV2(input_shape=(None, None, 3), include_top=False, weights=None, alpha=0.35)
    assert measured_feature_stride(mobilenet) == 32
    pooled = keras.Sequential([keras.Input((None, None, 3)), keras.layers.GlobalAveragePooling2D(keepdims=True)])
    with pytest.raises(ValueError, match="gave maps of 1 and 1 rows"):
        measured_feature_stride(pooled)
