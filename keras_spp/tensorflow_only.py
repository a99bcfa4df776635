"""What runs on the TensorFlow backend only, said in one place.

``keras_spp.ops``, ``keras_spp.layers``, ``keras_spp.models``, the classification
recipe (``recipes.train_classifier``, with ``keras_spp.data``'s tf.data pipelines
feeding ``model.fit`` and ``keras_spp.data.views.evaluate``; ``--distribution
data-parallel`` on JAX) run on every Keras 3 backend (TensorFlow, JAX, PyTorch;
``tests/backends``). These stay TensorFlow:

* ``keras_spp.detection``: ``Detector``, training (the heads, SVMs, box regression,
  the RPN on cached conv5), evaluation, proposals (``tf.image``, ``tf.data``,
  TensorFlow's NMS, ``tf.function`` around the backbone). ``SppNetDetector``'s call,
  image to detections, with given boxes or its RPN's, runs on every backend, under
  ``jax.jit`` too (``keras_spp.detection.detector_ops``; ``docs/detection.md``);
  its ``raw_outputs`` too, but not ``jit_compile``, which is TensorFlow's XLA;
* ``export``: SavedModels for TF Serving and their verification;
* the detection recipes (``recipes.train_detector``, ``detect``, and so ``main``);
* ``train_classifier --strategy`` (``tf.distribute``; on JAX, ``--distribution``).

Each of them calls ``require_tensorflow`` first, so that another backend gets this
error instead of a TensorFlow tensor meeting a JAX array deep inside.

TensorFlow need not be installed for ``import keras_spp``, ``keras_spp.ops``,
``keras_spp.layers`` and ``keras_spp.models`` (Keras with JAX or PyTorch is enough).
``keras_spp.data`` (tf.data, on any backend) and ``keras_spp.detection`` import it;
without it they raise ``require_tensorflow_installed``'s error on import.
"""

import importlib.util

import keras


def require_tensorflow(what):
    """Raises RuntimeError unless Keras runs on TensorFlow; ``what`` names the caller."""
    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise RuntimeError(
            f"{what} runs on the TensorFlow backend only, and Keras runs on {backend!r} "
            "(KERAS_BACKEND). Set KERAS_BACKEND=tensorflow for it; keras_spp.ops, "
            "keras_spp.layers and keras_spp.models run on every backend "
            "(keras_spp/tensorflow_only.py lists what does not)."
        )


def require_tensorflow_installed(what):
    """Raises ModuleNotFoundError unless TensorFlow can be imported; ``what`` names the
    caller. Looks the package up without importing it, so a caller pays nothing here."""
    try:
        found = importlib.util.find_spec("tensorflow") is not None
    except (ImportError, ValueError):  # ValueError: blocked with sys.modules["tensorflow"] = None
        found = False
    if not found:
        raise ModuleNotFoundError(
            f"{what} needs TensorFlow installed, and this Python has none (no module named "
            "'tensorflow'). Install it with `pip install keras-spp[cpu]` (or [gpu], or "
            "tensorflow-cpu alone); keras_spp.ops, keras_spp.layers and keras_spp.models run "
            "without it on Keras with JAX or PyTorch (keras_spp/tensorflow_only.py).",
            name="tensorflow",
        )
