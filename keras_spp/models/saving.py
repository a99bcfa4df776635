"""Loading a ``.keras`` file with errors that name it.

Keras's ``load_model`` answers an empty or corrupt ``.keras`` file with "File not
found" (the file is there), and an archive without ``config.json`` with a KeyError.
"""

import os
import zipfile

import keras

# What Keras's loading raises on a file that is not a model it can rebuild.
_LOAD_ERRORS = (ValueError, KeyError, TypeError, OSError, EOFError, zipfile.BadZipFile)


def load_keras_model(path, what="model", **kwargs):
    """``keras.saving.load_model(path, **kwargs)``, its failures as clear errors.

    ``what`` names the file's role in the messages (e.g. ``"--pretrained"``). The
    custom layers the model holds must be registered (imported) by the caller.

    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "broken.keras")
    >>> _ = open(path, "wb").write(b"not a zip")
    >>> load_keras_model(path, "--pretrained")
    Traceback (most recent call last):
    ...
    ValueError: --pretrained .../broken.keras is not a .keras archive (not a zip file):
    it is corrupt, cut short or of another format (.h5, a SavedModel folder).

    Raises:
      FileNotFoundError: no file at ``path``.
      ValueError: the file is empty, not a zip archive, has no ``config.json``, or
        Keras cannot rebuild the model from it; the message names the file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} {path}: no such file (a .keras file saved by Keras 3).")
    if os.path.getsize(path) == 0:
        raise ValueError(f"{what} {path} is an empty file, not a .keras model.")
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"{what} {path} is not a .keras archive (not a zip file): it is corrupt, cut short or of another "
            "format (.h5, a SavedModel folder)."
        )
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
    except _LOAD_ERRORS as error:
        raise ValueError(f"{what} {path} is a corrupt .keras archive ({error}).") from error
    if "config.json" not in names:
        raise ValueError(f"{what} {path} is a zip archive without config.json, not a .keras model.")
    try:
        return keras.saving.load_model(path, **kwargs)
    except _LOAD_ERRORS as error:
        raise ValueError(f"Cannot load {what} {path} as a Keras model: {error}") from error
