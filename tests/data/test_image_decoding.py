"""keras_spp's one image decoder (``voc.load_image``) against the pixel values its
rule promises and against ``tf.io.decode_image``, the decoder of the classification
pipeline and of exported models, on real files written in ``tmp_path``."""

import struct
import zlib

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_spp.data import voc

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (6, 7, 3), dtype=np.uint8)
ALPHA = RNG.integers(0, 256, (6, 7), dtype=np.uint8)
DEEP = RNG.integers(0, 65536, (6, 7, 4), dtype=np.uint16)


def _png16(path, samples, color_type):
    """A 16-bit PNG written byte by byte (Pillow writes 16-bit gray only)."""
    height, width = samples.shape[:2]
    rows = b"".join(b"\0" + samples[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    )


def _gray3(gray):
    return np.repeat(gray[..., None], 3, axis=-1)


def _write(path, kind):
    """Writes one kind of file; returns the RGB pixels the rule says it decodes to."""
    if kind == "rgb":
        Image.fromarray(RGB).save(path)
        return RGB
    if kind == "gray":
        Image.fromarray(RGB[..., 0]).save(path)
        return _gray3(RGB[..., 0])
    if kind == "bilevel":
        Image.fromarray(RGB[..., 0] > 127).save(path)
        return _gray3(np.where(RGB[..., 0] > 127, 255, 0).astype(np.uint8))
    if kind == "rgba":
        Image.fromarray(np.dstack([RGB, ALPHA])).save(path)
        return RGB  # alpha dropped, not composited
    if kind == "gray+alpha":
        Image.fromarray(np.dstack([RGB[..., 0], ALPHA]), "LA").save(path)
        return _gray3(RGB[..., 0])
    if kind == "palette":
        image = Image.fromarray(RGB).quantize(16)
        image.info["transparency"] = 0
        image.save(path, transparency=0)
        return np.asarray(image.convert("RGB"))  # entry 0 keeps its colour
    if kind == "gray16":
        Image.fromarray(DEEP[..., 0]).save(path)  # Pillow writes this one itself
        return _gray3((DEEP[..., 0] >> 8).astype(np.uint8))
    if kind == "gray16+alpha":
        _png16(path, DEEP[..., :2], 4)
        return _gray3((DEEP[..., 0] >> 8).astype(np.uint8))
    if kind == "rgb16":
        _png16(path, DEEP[..., :3], 2)
        return (DEEP[..., :3] >> 8).astype(np.uint8)
    _png16(path, DEEP, 6)
    return (DEEP[..., :3] >> 8).astype(np.uint8)


KINDS = ["rgb", "gray", "bilevel", "rgba", "gray+alpha", "palette", "gray16", "gray16+alpha", "rgb16", "rgba16"]


@pytest.mark.parametrize("kind", KINDS)
def test_every_png_kind_decodes_by_the_rule_and_as_tensorflow_does(tmp_path, kind):
    path = tmp_path / f"{kind}.png"
    expected = _write(path, kind)
    decoded = voc.load_image(path)
    assert decoded.dtype == np.uint8 and decoded.shape == (6, 7, 3)
    np.testing.assert_array_equal(decoded, expected)
    with open(path, "rb") as file:
        tensorflow = tf.io.decode_image(file.read(), channels=3, expand_animations=False).numpy()
    np.testing.assert_array_equal(decoded, tensorflow)


def test_16_bit_gray_with_small_values_is_scaled_not_taken_for_8_bit(tmp_path):
    # All values under 256: still 16-bit samples, so they are dark (as TensorFlow decodes them).
    small = np.array([[0, 255], [256, 511]], np.uint16)
    Image.fromarray(small).save(tmp_path / "small.png")
    np.testing.assert_array_equal(voc.load_image(tmp_path / "small.png")[..., 0], [[0, 0], [1, 1]])
    # A 16-bit PGM, which Pillow opens as 32-bit "I": the same rule.
    Image.fromarray(small * 200).save(tmp_path / "small.pgm")
    np.testing.assert_array_equal(voc.load_image(tmp_path / "small.pgm")[..., 0], (small * 200) >> 8)
    Image.fromarray(np.array([[3, 200]], np.uint16)).save(tmp_path / "dim.pgm")
    np.testing.assert_array_equal(voc.load_image(tmp_path / "dim.pgm")[..., 0], [[0, 0]])


def test_exif_orientation_is_ignored_by_both_decoders(tmp_path):
    image = Image.fromarray(np.kron(RGB, np.ones((4, 4, 1), np.uint8)))  # 24 x 28
    exif = image.getexif()
    exif[0x0112] = 6  # a viewer shows it 28 x 24
    image.save(tmp_path / "turned.jpg", exif=exif, quality=95)
    data = (tmp_path / "turned.jpg").read_bytes()
    decoded = voc.load_image(tmp_path / "turned.jpg")
    assert decoded.shape == tf.io.decode_image(data, channels=3).shape == (24, 28, 3)
    # Pillow's IDCT is libjpeg's accurate one; decode_image's default is the fast one (up to a few levels off).
    np.testing.assert_array_equal(decoded, tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE"))


@pytest.mark.parametrize("quality", [75, 90, 95])
def test_tensorflow_decodes_a_jpeg_photo_to_the_pixels_training_read(tmp_path, quality):
    from sklearn.datasets import load_sample_images

    path = tmp_path / "photo.jpg"
    Image.fromarray(load_sample_images().images[1]).save(path, quality=quality)
    encoded = path.read_bytes()
    trained_on = voc.load_image(str(path))
    np.testing.assert_array_equal(voc.decode_image_tf(encoded).numpy(), trained_on)
    # In a graph too, and for other formats (decode_image's branch).
    graph = tf.function(voc.decode_image_tf, input_signature=[tf.TensorSpec([], tf.string)])
    np.testing.assert_array_equal(graph(encoded).numpy(), trained_on)
    Image.fromarray(trained_on).save(tmp_path / "photo.png")
    np.testing.assert_array_equal(graph((tmp_path / "photo.png").read_bytes()).numpy(), trained_on)
    # TensorFlow's default decoder does not give them (why decode_image_tf exists).
    assert np.abs(tf.io.decode_image(encoded, channels=3).numpy().astype(int) - trained_on).max() > 0


def test_bytes_in_memory_decode_as_the_file(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 65535, (9, 7), dtype=np.uint16)).save(tmp_path / "deep.png")
    data = (tmp_path / "deep.png").read_bytes()
    np.testing.assert_array_equal(voc.decode_image_bytes(data), voc.load_image(str(tmp_path / "deep.png")))
    with pytest.raises(ValueError, match="Cannot read image upload: they are corrupt"):
        voc.decode_image_bytes(b"not an image", "upload")
    with pytest.raises(ValueError, match="empty"):
        voc.decode_image_bytes(b"")
