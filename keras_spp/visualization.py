"""Pictures people would rather look at than numbers: detections drawn on images."""

import colorsys

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def class_colour(index):
    """A stable, well-separated colour per class (golden-ratio hues)."""
    hue = (index * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def draw_detections(image, boxes, scores, classes, class_names, ground_truth=None, scale=None):
    """A PIL image with each box (``[y1, x1, y2, x2]`` px) outlined in its class colour
    and labelled ``name score``; ``ground_truth`` boxes, if given, dashed in white.
    Small images are enlarged (``scale``, default so the shorter side is >= 400 px)
    so that labels stay readable."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    image = image.astype(np.uint8)
    if scale is None:
        scale = max(1.0, 400.0 / max(1, min(image.shape[:2])))
    picture = Image.fromarray(image).convert("RGB")
    if scale != 1.0:
        picture = picture.resize((round(picture.width * scale), round(picture.height * scale)), Image.BILINEAR)
    draw = ImageDraw.Draw(picture)
    font = ImageFont.load_default()
    width = max(2, round(2 * scale))
    if ground_truth is not None:
        for y1, x1, y2, x2 in np.asarray(ground_truth, np.float32).reshape(-1, 4) * scale:
            _dashed_rectangle(draw, (x1, y1, x2, y2), (255, 255, 255), max(1, width // 2))
    order = np.argsort(np.asarray(scores))  # best drawn last, on top
    for i in order:
        y1, x1, y2, x2 = (np.asarray(boxes[i], np.float32) * scale).tolist()
        colour = class_colour(int(classes[i]))
        draw.rectangle((x1, y1, x2, y2), outline=colour, width=width)
        label = f"{class_names[int(classes[i])]} {float(scores[i]):.2f}"
        left, top, right, bottom = draw.textbbox((x1, y1), label, font=font)
        top_y = max(0.0, y1 - (bottom - top) - 4)
        draw.rectangle((x1, top_y, x1 + (right - left) + 4, top_y + (bottom - top) + 4), fill=colour)
        draw.text((x1 + 2, top_y + 2), label, fill=(0, 0, 0), font=font)
    return picture


def _dashed_rectangle(draw, rect, colour, width, dash=6):
    x1, y1, x2, y2 = rect
    for a, b, horizontal, fixed in ((x1, x2, True, y1), (x1, x2, True, y2), (y1, y2, False, x1), (y1, y2, False, x2)):
        for start in np.arange(a, b, 2 * dash):
            end = min(start + dash, b)
            if horizontal:
                draw.line((start, fixed, end, fixed), fill=colour, width=width)
            else:
                draw.line((fixed, start, fixed, end), fill=colour, width=width)


def image_grid(pictures, columns=3, background=(32, 32, 32), pad=8):
    """Tiles PIL images into one, row by row, each cell the size of the largest."""
    if not pictures:
        raise ValueError("image_grid needs at least one picture.")
    cell_w = max(p.width for p in pictures)
    cell_h = max(p.height for p in pictures)
    rows = -(-len(pictures) // columns)
    cols = min(columns, len(pictures))
    grid = Image.new("RGB", (cols * cell_w + (cols + 1) * pad, rows * cell_h + (rows + 1) * pad), background)
    for i, p in enumerate(pictures):
        r, c = divmod(i, columns)
        grid.paste(p, (pad + c * (cell_w + pad), pad + r * (cell_h + pad)))
    return grid


def draw_examples(detector, examples, proposals, path, count=6, min_score=0.5):
    """A grid of ``detector``'s detections (score at least ``min_score``) on the first
    ``count`` readable ``examples``, their ground truth dashed, saved as ``path``
    (nothing is written if none is readable); ``proposals``: image id -> boxes.
    Returns ``path``."""
    from keras_spp.data.voc import load_image

    pictures = []
    for example in examples[:count]:
        try:
            image = load_image(example.image_path)
        except (ValueError, OSError):
            continue
        boxes, scores, classes = detector.detect(image, proposals[example.image_id])
        keep = scores >= min_score
        pictures.append(
            draw_detections(
                image, boxes[keep], scores[keep], classes[keep], detector.class_names, ground_truth=example.boxes
            )
        )
    if pictures:
        image_grid(pictures, columns=3).save(path)
    return path
