"""What runs on the TensorFlow backend only, said in one place.

``keras_spp.ops``, ``keras_spp.layers`` and ``keras_spp.models`` run on every Keras 3
backend (TensorFlow, JAX, PyTorch; ``tests/backends``). These stay TensorFlow:

* ``keras_spp.detection``: the detector, its window features at several scales, the
  RPN's proposal layer and training on cached conv5 (``tf.image``, ``tf.data``,
  TensorFlow's NMS, ``tf.function`` around the backbone);
* ``export``: SavedModels for TF Serving and their verification;
* ``keras_spp.data.views.evaluate`` and the recipes that train and evaluate
  (``recipes.train_classifier``, ``train_detector``, ``detect``, ``main``), which
  compile views with ``tf.function`` and use ``tf.distribute`` strategies.

Each of them calls ``require_tensorflow`` first, so that another backend gets this
error instead of a TensorFlow tensor meeting a JAX array deep inside.
"""

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
