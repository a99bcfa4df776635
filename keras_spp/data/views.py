"""Evaluation views (the paper's Tables 3 and 4) and an ``evaluate`` helper.

* ``"center"``: min side ``min_side``, the centre ``crop x crop``.
* ``"full"``: the full image, min side ``min_side``, aspect kept, any size (SPP).
* ``"ten_view"``: the four corners and the centre ``crop x crop``, each also
  flipped; the ten softmax outputs are averaged.
* ``"multi_scale"``: full images at several min sides (``scales``), averaged.

Full-image views need a network that takes any size (an SPP head); they run one
image at a time through one ``tf.function`` traced with ``None`` spatial dims, so
there is no retracing however many sizes come by.
"""

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from keras_spp.data import transforms

VIEWS = ("center", "full", "ten_view", "multi_scale")


def ten_views(image, crop, flip=True):
    """``[10, crop, crop, 3]``: corners and centre, then the same flipped.

    ``flip=False`` gives the five unflipped views, for classes that mirroring changes.
    """
    shape = tf.shape(image)
    h, w = shape[0], shape[1]
    tops = tf.stack([0, 0, h - crop, h - crop, (h - crop) // 2])
    lefts = tf.stack([0, w - crop, 0, w - crop, (w - crop) // 2])
    crops = tf.map_fn(
        lambda tl: image[tl[0] : tl[0] + crop, tl[1] : tl[1] + crop],
        tf.stack([tops, lefts], axis=1),
        fn_output_signature=tf.TensorSpec([None, None, 3], image.dtype),
    )
    crops = tf.ensure_shape(crops, [5, crop, crop, 3])
    if not flip:
        return crops
    return tf.concat([crops, tf.reverse(crops, axis=[2])], axis=0)


def evaluate(
    model,
    source,
    views=("center", "full", "ten_view"),
    crop=224,
    min_side=256,
    scales=(224, 256, 300, 360),
    batch_size=32,
    max_examples=None,
    verbose=True,
    flip=True,
):
    """Top-1 and top-5 accuracy of ``model`` on ``source`` for each view.

    Args:
      model: a Keras classifier returning class probabilities.
      source: unbatched ``(image, label)`` pairs of any size.
      views: names from ``VIEWS``.
      max_examples: evaluate on the first N examples only.
      flip: include the flipped crops in ``"ten_view"`` (five views without them).

    Returns ``{view: {"top1": ..., "top5": ..., "top1_error_pct": ..., "examples": N}}``.
    """
    unknown = [v for v in views if v not in VIEWS]
    if unknown:
        raise ValueError(f"Unknown views {unknown}; known: {', '.join(VIEWS)}.")
    if max_examples is not None:
        source = source.take(max_examples)
    predict_fixed, predict_any = _predictors(model)
    results = {}
    for view in views:
        probabilities, labels = [], []
        if view in ("center", "ten_view"):
            count = (10 if flip else 5) if view == "ten_view" else 1

            def prepare(image, label, view=view):
                x = transforms.resize_min_side(image, min_side)
                x = ten_views(x, crop, flip) if view == "ten_view" else transforms.center_crop(x, crop)[tf.newaxis]
                return x, label

            data = source.map(prepare, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size)
            for x, y in tqdm(data.prefetch(2), desc=view, unit="batch", disable=not verbose):
                flat = tf.reshape(x, tf.concat([[-1], tf.shape(x)[2:]], 0))
                p = predict_fixed(flat).reshape(len(y), count, -1).mean(axis=1)
                probabilities.append(p)
                labels.append(y.numpy())
        else:
            sides = (min_side,) if view == "full" else tuple(scales)
            for image, label in tqdm(source, desc=view, unit="image", disable=not verbose):
                p = np.mean(
                    [predict_any(transforms.resize_min_side(image, s)[tf.newaxis])[0] for s in sides],
                    axis=0,
                )
                probabilities.append(p[np.newaxis])
                labels.append(np.atleast_1d(label.numpy()))
        results[view] = topk_accuracy(np.concatenate(probabilities), np.concatenate(labels))
    return results


def _predictors(model):
    """``(fixed, any)``: numpy probabilities for batches of one size and of any size.

    On TensorFlow, one graph per batch shape and one traced with ``None`` spatial
    dims. On JAX and PyTorch the pipelines still hand over TensorFlow tensors, so
    they go in as numpy, through Keras's compiled predict step."""
    import keras

    if keras.backend.backend() == "tensorflow":
        fixed = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
        any_size = tf.function(
            lambda x: model(x, training=False),
            input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)],
        )
        return (lambda x: fixed(x).numpy()), (lambda x: any_size(x).numpy())

    def predict(x):
        # jax.jit compiles once per image size (a second or two on a CPU); op by op,
        # JAX would take longer still for every image.
        return keras.ops.convert_to_numpy(model.predict_on_batch(np.asarray(x)))

    return predict, predict


def topk_accuracy(probabilities, labels):
    """Top-1 and top-5 (top-k for fewer classes) accuracy; empty input gives NaN."""
    n = len(labels)
    if n == 0:
        return {"top1": float("nan"), "top5": float("nan"), "top1_error_pct": float("nan"), "examples": 0}
    ranked = np.argsort(-probabilities, axis=1)
    k = min(5, probabilities.shape[1])
    top1 = float(np.mean(ranked[:, 0] == labels))
    top5 = float(np.mean((ranked[:, :k] == labels[:, None]).any(axis=1)))
    return {"top1": top1, "top5": top5, "top1_error_pct": round(100 * (1 - top1), 2), "examples": n}
