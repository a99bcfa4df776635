"""Image transforms of the paper's training and testing, as tf.data-friendly functions.

Images are uint8 or float ``[H, W, 3]`` of any size; outputs are float32 in
``[0, 255]`` (models normalise with their own first layer, or not at all).
"""

import tensorflow as tf


def resize_min_side(image, min_side, max_side=None):
    """Resizes so that the shorter side is ``min_side``, keeping the aspect ratio.

    ``max_side`` (optional) then caps the longer side, shrinking both, so that a
    thin panorama cannot become huge. Bilinear with antialiasing, float32 out.
    """
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = tf.cast(min_side, tf.float32) / tf.reduce_min(shape)
    if max_side is not None:
        scale = tf.minimum(scale, tf.cast(max_side, tf.float32) / tf.reduce_max(shape))
    size = tf.maximum(tf.cast(tf.round(shape * scale), tf.int32), 1)
    return tf.image.resize(tf.cast(image, tf.float32), size, antialias=True)


def random_crop(image, size, seed):
    """A ``size x size`` crop at a random position (stateless, from a ``[2]`` seed)."""
    channels = tf.shape(image)[2]
    return tf.image.stateless_random_crop(image, tf.stack([size, size, channels]), seed)


def center_crop(image, size):
    shape = tf.shape(image)
    top = (shape[0] - size) // 2
    left = (shape[1] - size) // 2
    return image[top : top + size, left : left + size]


def color_jitter(image, seed, strength=0.4):
    """Brightness, contrast and saturation jitter (``strength`` = max relative change)."""
    seeds = tf.random.experimental.stateless_split(seed, 3)
    x = image / 255.0
    x = tf.image.stateless_random_brightness(x, strength * 0.5, seeds[0])
    x = tf.image.stateless_random_contrast(x, 1 - strength, 1 + strength, seeds[1])
    x = tf.image.stateless_random_saturation(x, 1 - strength, 1 + strength, seeds[2])
    return tf.clip_by_value(x, 0.0, 1.0) * 255.0


def train_augment(image, seed, min_side=256, crop=224, jitter=0.4, flip=True):
    """The paper's training view: min side ``min_side``, random ``crop``, flip, jitter.

    ``flip=False`` leaves out the horizontal flip, for data where mirroring changes
    the class (digits, text).

    ``seed`` is a ``[2]`` int tensor, so that a pipeline is deterministic given its
    seed however tf.data schedules the work.
    """
    seeds = tf.random.experimental.stateless_split(seed, 3)
    x = resize_min_side(image, min_side)
    x = random_crop(x, crop, seeds[0])
    if flip:
        x = tf.image.stateless_random_flip_left_right(x, seeds[1])
    if jitter:
        x = color_jitter(x, seeds[2], jitter)
    return x
