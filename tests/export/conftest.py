import contextlib
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from export import saved_model
from keras_spp.models import backbone, spp_classifier

CLASSES = ["cat", "dog", "bird", "fish", "horse", "ship", "truck"]
MIN_SIDE = 64
MAX_SIDE = 320  # small, so that a 1 : 10 panorama is capped (64 x 640 -> 32 x 320)


def encode(array, fmt="PNG", **options):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, fmt, **options)
    return buffer.getvalue()


def photo(height, width, seed=0, channels=3):
    """A smooth random image (JPEG-friendly), uint8."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(max(2, height // 8), max(2, width // 8), channels)).astype(np.uint8)
    mode = {1: "L", 3: "RGB", 4: "RGBA"}[channels]
    image = Image.fromarray(small.squeeze(-1) if channels == 1 else small, mode).resize((width, height), Image.BILINEAR)
    return np.asarray(image)


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """A tiny random classifier saved as .keras with a results.json, exported once.

    ``(export_dir, keras_model, loaded SavedModel)``.
    """
    root = tmp_path_factory.mktemp("export")
    keras.utils.set_random_seed(1)
    model = spp_classifier(backbone("zf5", width=0.125), len(CLASSES), fc_units=32, dropout=0.0)
    run = root / "run"
    run.mkdir()
    model.save(run / "model.keras")
    (run / "results.json").write_text(json.dumps({"classes": CLASSES, "config": {"min_side": MIN_SIDE}}))
    out = saved_model.export(str(run / "model.keras"), "classifier", str(root / "served" / "1"), max_side=MAX_SIDE)
    return out, model, tf.saved_model.load(out)


def keras_full_view(model, image, min_side=MIN_SIDE, max_side=MAX_SIDE):
    """The Keras model's probabilities for one uint8 image at the full-image view."""
    from keras_spp.data.transforms import resize_min_side

    x = resize_min_side(image, min_side, max_side)
    return model(x[tf.newaxis], training=False).numpy()[0]


@contextlib.contextmanager
def fake_rest_server(predict):
    """A local HTTP server standing in for TF Serving's REST predict: each POST body
    (parsed JSON) goes to ``predict(body) -> (status, payload)``. Yields its URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            status, payload = predict(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
