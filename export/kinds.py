"""What a serving kind is: the base class of ``export.classifier.ClassifierKind`` and
``export.detector.DetectorKind``, which ``export.saved_model.KINDS`` names.

A kind is built from a loaded Keras model and the export's ``meta`` (``labels``,
names in id order; ``labels_file``, them one per line: track a table on it and it
becomes ``assets/labels.txt``; ``max_side``, ``max_pixels``, ``jit`` and the kind's
own options, which ``options`` worked out from the command line). An instance holds:

* ``endpoints``: ``{signature: (fn, [tf.TensorSpec(shape, dtype, name=input)])}``, one
  of them ``serving_default``; each ``fn`` returns a dict of output tensors.
* ``track``: what the endpoints use beside the model's variables (lookup tables).
* ``signatures``: ``{signature: {"inputs": {name: [dtype, shape]}, "outputs": ...}}``
  with dtypes as ``DT_FLOAT`` and -1 for unknown dims: what ``saved_model_cli`` must show.
* ``compare``: ``{output: {"atol": x}}`` for floats, ``{output: {"ties_by": other}}``
  for values compared exactly except between near-tied neighbours of ``other``.
* ``smallest_side``: pixels per side the network needs (an error case uses it).
* ``bytes_input``, ``float_input``: ``(signature, input)`` of the encoded-image input
  and of the pixel input.

and answers ``reference(decoded, ...)`` (the Keras model's outputs for uint8 images,
the expectation of the exported graph), ``cases(files, decoded)`` (the verification
cases of ``reference.json``, its warmup requests and extra reference files) and
``about()`` (what ``reference.json`` records of the export's settings).
"""

import numpy as np


class ServingKind:
    """The serving endpoints of a loaded Keras model, and how to verify them."""

    name = None  # the --kind that selects it
    bytes_input = ("serving_default", "image_bytes")
    float_input = None

    @classmethod
    def options(cls, model_path, labels, options):
        """``(model file, class names, meta entries)`` from the command line's ``--model``,
        ``--labels`` and this kind's ``options`` (``{flag's keyword: value or None}``).
        Raises ``ValueError`` or ``FileNotFoundError`` naming what was wrong."""
        raise NotImplementedError

    def reference(self, decoded, *args):
        """``{output: numpy [N, ...]}``: the Keras model's answer for uint8 images ``decoded``."""
        raise NotImplementedError

    def cases(self, files, decoded):
        """``(cases, warmup inputs, extra files)``: the reference cases (as
        ``reference.json`` stores them; inputs beside the images given as ``{"dtype",
        "shape", "values"}``), the warmup requests' inputs (``[{input: numpy array}]``
        for the ``bytes_input`` signature, one per image size: each compiles its own
        XLA program) and ``[(name, bytes)]`` more files for the reference folder, for
        ``files`` ``[(name, encoded bytes)]`` and ``decoded`` ``{name: uint8 [H, W, 3]}``."""
        raise NotImplementedError

    def about(self):
        """``{key: value}`` stored at the top of ``reference.json``: the export's settings."""
        raise NotImplementedError


def label_table(labels_file):
    """``int64 id -> class name`` read from ``labels_file`` (one name a line) when the
    graph loads; ``""`` for an unknown id. Tracked, the file becomes ``assets/labels.txt``,
    so relabelling is an edit of that file, not a new graph."""
    import tensorflow as tf

    return tf.lookup.StaticHashTable(
        tf.lookup.TextFileInitializer(
            labels_file,
            tf.int64,
            tf.lookup.TextFileIndex.LINE_NUMBER,
            tf.string,
            tf.lookup.TextFileIndex.WHOLE_LINE,
        ),
        default_value="",
    )


def bytes_warmup(files, input_name="image_bytes"):
    """One warmup input per reference image: ``[{input_name: string [1]}]``."""
    return [{input_name: np.array([encoded], dtype=object)} for _, encoded in files]


def label_names(labels, found, model_path, wanted="a results.json with 'classes'"):
    """The class names, in id order: the lines of the file ``labels`` (``--labels``),
    else ``found["classes"]`` (what lies next to the model), else a ``ValueError``
    saying that there is no ``wanted`` next to ``model_path``.

    A label file is UTF-8 (a byte-order mark is dropped) with one name a line; blank
    lines at its end are ignored. Empty names, repeated names and names of several
    lines are refused, naming the line: the served labels could not tell classes apart.
    """
    if labels is not None:
        names = _label_file_lines(labels)
        source, item = f"--labels {labels}", "line"
    elif found is not None and "classes" in found:
        source = f"the {wanted.split(' ')[1] if wanted.count(' ') else 'file'} next to {model_path}"
        if not isinstance(found["classes"], list):
            raise ValueError(f"{source}: its class names must be a list; got {found['classes']!r:.80}.")
        names, item = [str(c) for c in found["classes"]], "class"
    else:
        raise ValueError(
            f"No label map: there is no {wanted} next to {model_path}; "
            "pass --labels FILE, one class name per line in class-id order."
        )
    if not names:
        raise ValueError(f"The label map from {source} is empty; give one name per class.")
    first = {}
    for number, name in enumerate(names, 1 if item == "line" else 0):
        if name.strip() == "":
            raise ValueError(f"{source}: {item} {number} is a blank class name; give one name per class, no gaps.")
        if "\n" in name or "\r" in name:
            raise ValueError(f"{source}: {item} {number}: class names must be single lines; got {name!r}.")
        if name in first:
            raise ValueError(
                f"{source}: {item} {number} repeats the class name {name!r} of {item} {first[name]}; "
                "each class needs its own name."
            )
        first[name] = number
    return names


def _label_file_lines(path):
    try:
        with open(path, encoding="utf-8-sig") as f:  # -sig: a byte-order mark is not part of the first name
            names = [line.rstrip("\r\n") for line in f]
    except FileNotFoundError:
        raise FileNotFoundError(f"--labels {path}: no such file (one class name per line).") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"--labels {path} is not UTF-8 text ({e}); save it as UTF-8.") from None
    while names and names[-1].strip() == "":  # blank lines at the end are not classes
        names.pop()
    return names
