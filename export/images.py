"""Graph-side image handling shared by the serving kinds: check, decode, full view.

These run inside the exported SavedModel (TF Serving executes them), so they use
TensorFlow ops only. Conventions:

* Accepted bytes: JPEG or PNG, any size, grey, RGB or RGBA (decoded to RGB, alpha
  dropped; 16-bit PNGs scaled to 8 bits). Anything else, an empty string included,
  is an ``InvalidArgumentError`` naming the offending batch positions. Truncated or
  corrupt data behind a valid signature fails in the decoder, also as
  ``InvalidArgumentError`` ("Invalid PNG data", "jpeg::Uncompress failed").
* Size guard: an image whose header declares more than ``max_pixels`` pixels
  (default ``8192 * 8192``) is refused before it is decoded, so that a small file
  that decodes to gigabytes cannot take the server down.
* The full-image view (``keras_spp.data.views``, "full"): shorter side resized to
  ``min_side``, aspect kept; where that would make the longer side exceed
  ``max_side`` (default 2048), both sides shrink until the longer one is
  ``max_side`` (so a long panorama gets a shorter side under ``min_side``). Bilinear
  with antialiasing, float32 pixels in ``[0, 255]``: exactly
  ``keras_spp.data.transforms.resize_min_side(image, min_side, max_side)``.
* Too elongated: a network needs some pixels per side (29 for ZF-5); an image whose
  view has a side below that (aspect ratios beyond ``max_side : smallest``, about
  70 : 1 for ZF-5 at the defaults) is an ``InvalidArgumentError``, not a guess.
"""

import tensorflow as tf

from keras_spp.data.transforms import resize_min_side
from keras_spp.data.voc import decode_image_tf

MAX_SIDE = 2048
MAX_PIXELS = 8192 * 8192
FORMATS = "JPEG or PNG"

_JPEG = b"\xff\xd8\xff"
_PNG = b"\x89PNG\r\n\x1a\n"


def check_rank(tensor, rank, name, accepted):
    """``tensor`` after asserting it has ``rank`` dimensions; everything computed from
    the result waits for the check.

    A signature's input shape is not enforced when it is called: TF Serving checks a
    request's dtype against the signature but not its shape, and a loaded SavedModel's
    signature takes any shape. Without this, a ``[1, 1]`` batch of bytes would reach
    the decoder and fail there with a message about the image format.
    """
    shape = tf.shape(tensor)
    # Grappler folds tf.rank(x) and tf.size(tf.shape(x)) to the traced rank, which the
    # signature's spec fixes; a shape vector of run-time length keeps the count to run time.
    # (Grappler folds n * 0 too, not n - n.)
    count = tf.size(tensor, out_type=tf.int32)
    padded = tf.concat([shape, tf.zeros([count - count], tf.int32)], 0)
    check = tf.debugging.Assert(
        tf.equal(tf.size(padded), rank),
        [f"{name}: must have {rank} dimension(s), {accepted}; got the shape", shape],
    )
    with tf.control_dependencies([check]):
        checked = tf.identity(tensor)
    # TensorFlow's own run-time shape check (also of fixed sizes such as the 3 channels),
    # should the count above ever be folded away.
    return tf.ensure_shape(checked, tensor.shape)


def check_encoded(image_bytes, name="image_bytes"):
    """``image_bytes`` (string ``[N]``) after asserting its rank and that every item
    starts like a JPEG or PNG.

    The decoder alone would say "Unknown image file format" for the first bad item
    and not which one; this names every bad position and what is accepted.
    """
    image_bytes = check_rank(image_bytes, 1, name, f"[N]: one {FORMATS} file's bytes per image")
    jpeg = tf.strings.substr(image_bytes, 0, len(_JPEG)) == _JPEG
    png = tf.strings.substr(image_bytes, 0, len(_PNG)) == _PNG
    bad = tf.where(~(jpeg | png))[:, 0]
    check = tf.debugging.Assert(
        tf.size(bad) == 0,
        # No quotes in the text: Assert escapes them, and the message reads worse for it.
        [
            f"{name}: the items at these batch positions are not {FORMATS} data (accepted: {FORMATS} files "
            "of any size, their bytes as they are; in REST, base64-encoded in a b64 object):",
            bad,
        ],
        summarize=16,
    )
    with tf.control_dependencies([check]):
        return tf.identity(image_bytes)


def header_size(one):
    """``[height, width]`` (int64) that a JPEG or PNG's header declares, without decoding."""

    def png():
        # IHDR: width then height, big-endian uint32, at bytes 16..24. A shorter string
        # reads as 0 x 0 here and is left to the decoder, which calls it invalid PNG data.
        head = tf.strings.substr(one, 0, 24)
        head = tf.where(tf.strings.length(head) == 24, head, b"\0" * 24)
        b = tf.cast(tf.io.decode_raw(tf.strings.substr(head, 16, 8), tf.uint8), tf.int64)
        w = b[0] * 2**24 + b[1] * 2**16 + b[2] * 2**8 + b[3]
        h = b[4] * 2**24 + b[5] * 2**16 + b[6] * 2**8 + b[7]
        return tf.stack([h, w])

    def jpeg():
        return tf.cast(tf.io.extract_jpeg_shape(one)[:2], tf.int64)

    is_png = tf.strings.substr(one, 0, len(_PNG)) == _PNG
    return tf.cond(is_png, png, jpeg)


def decode(one, max_pixels=MAX_PIXELS):
    """One JPEG or PNG string to uint8 ``[H, W, 3]``, refusing more than ``max_pixels``."""
    size = header_size(one)
    check = tf.debugging.Assert(
        size[0] * size[1] <= max_pixels,
        [
            f"image_bytes: an image of more than {max_pixels} pixels was refused before decoding "
            "(height, width as its header declares):",
            size,
        ],
    )
    with tf.control_dependencies([check]):
        return decode_image_tf(one)


def full_view(image, min_side, max_side=MAX_SIDE):
    """The full-image view of one image ``[H, W, 3]``: float32 ``[h, w, 3]`` (module docstring)."""
    return resize_min_side(image, min_side, max_side)


def check_view(view, smallest, max_side, name="image_bytes"):
    """``view`` (``[h, w, 3]``) after asserting both sides are at least ``smallest`` pixels."""
    size = tf.shape(view)[:2]
    check = tf.debugging.Assert(
        tf.reduce_min(size) >= smallest,
        [
            f"{name}: an image too elongated to classify: its full view is (height, width)",
            size,
            f"and the network needs at least {smallest} pixels per side (accepted: aspect ratios up to "
            f"{max_side}:{smallest})",
        ],
    )
    with tf.control_dependencies([check]):
        return tf.identity(view)


def smallest_side(network, upper):
    """The smallest ``s`` for which ``network`` takes an ``s x s`` image (at most ``upper``).

    Found by trying sizes: the rule depends on every padding and stride of the
    backbone. Conv nets treat height and width alike, so ``s`` bounds each side alone.
    Each size is only traced, never run: TensorFlow's shape inference rejects a map
    that shrinks below a kernel, while running such a size eagerly can kill the
    process (oneDNN's max pool raises SIGFPE on an empty output). A size whose trace
    holds an empty feature map counts as too small too.
    ``ValueError`` if even ``upper`` fails.
    """
    traced = tf.function(network)

    def works(s):
        try:
            graph = traced.get_concrete_function(tf.TensorSpec((1, s, s, 3), tf.float32)).graph
        except Exception:  # too small shows as ValueError or InvalidArgumentError, by layer
            return False
        return not any(t.shape.rank == 4 and 0 in t.shape[1:3] for op in graph.get_operations() for t in op.outputs)

    if not works(upper):
        raise ValueError(f"The model cannot take even a {upper}x{upper} image; check --min-side and the model.")
    low, high = 0, upper  # works(high), not works(low)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if works(mid) else (mid, high)
    return high
