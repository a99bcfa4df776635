"""SavedModel export for TF Serving, and its verification.

``export.saved_model`` (the command line and the ``KINDS`` registry), the serving
kinds (``export.classifier``, ``export.detector`` with its ``detector_*`` modules),
graph-side image handling (``export.images``), an example client (``export.client``,
its ``client_requests`` and ``client_answers``), and ``export.verify``
with its TensorFlow-only child ``export/serving_check.py``. Nothing is imported here: the child must be able
to run without keras_spp.
"""
