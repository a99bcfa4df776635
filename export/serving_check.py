"""Check an exported SavedModel the way TF Serving runs it, with TensorFlow alone.

    python export/serving_check.py exported/spp/1        # prints a JSON report

This script imports tensorflow, numpy and the standard library, never keras_spp
(nor keras itself: tensorflow may pull keras in through its ``tf.keras`` alias, and
the report says whether it did). It reads the cases that the export wrote into
``assets.extra/reference/reference.json`` (images, with a detector their proposals,
the Keras model's outputs for them, inputs that must fail) and runs each through two loaders:

* ``tf1_session``: what TF Serving does, ``tf.compat.v1.saved_model.loader.load``
  with tag "serve" into a Session, tensors fed and fetched by the names in the
  signature's SignatureDef;
* ``tf2_load``: ``tf.saved_model.load(...).signatures[name]``.

Float outputs must be within the reference's ``atol`` of the Keras outputs; ids and
names must be equal except where the Keras scores of neighbours are within the
tolerance of each other (a near-tie the two may order differently). A rule with both
``atol`` and ``ties_by`` (a detector's boxes and scores) forgives the same near-ties:
an output of more dimensions than its ``ties_by`` (boxes ``[N, D, 4]`` by scores
``[N, D]``) is compared item by item, an item being one row of the scores. Inputs that must
fail must raise the named error with the named text. It also lists device placements
in the graph outside TF's checkpoint save/restore functions (which always pin to the
host): an export made on a CPU machine must carry none, so that it runs on a GPU.

Exit status 0 when every check passed, 1 otherwise, 2 when the folder is not an export.
"""

import base64
import json
import os
import sys

import numpy as np
import tensorflow as tf

REFERENCE = os.path.join("assets.extra", "reference", "reference.json")
_SAVER_FUNCTIONS = ("__inference__traced_save", "__inference__traced_restore")


def load_reference(export_dir):
    path = os.path.join(export_dir, REFERENCE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} is missing: {export_dir} was not written by python -m export.saved_model.")
    try:
        with open(path, encoding="utf-8") as f:
            reference = json.load(f)
    except ValueError as e:  # also UnicodeDecodeError
        raise ValueError(f"{path} is not valid JSON ({e}): export the model again.") from e
    missing = [
        k for k in ("kind", "signatures", "compare", "cases") if not isinstance(reference, dict) or k not in reference
    ]
    if missing:
        raise ValueError(f"{path} is not an export's reference: it lacks {', '.join(missing)}; export the model again.")
    return reference


def case_inputs(export_dir, case, signature):
    """The case's inputs as numpy arrays of the signature's dtypes."""
    folder = os.path.dirname(os.path.join(export_dir, REFERENCE))
    arrays = {}
    for name, spec in case["inputs"].items():
        if "files" in spec:
            arrays[name] = np.array([_read(os.path.join(folder, f)) for f in spec["files"]], dtype=object)
        elif "b64" in spec:
            arrays[name] = np.array([base64.b64decode(v) for v in spec["b64"]], dtype=object)
        elif "decoded_files" in spec:
            dtype = tf.dtypes.as_dtype(signature["inputs"][name][0].lower().replace("dt_", "")).as_numpy_dtype
            images = [_decode(tf, _read(os.path.join(folder, f))) for f in spec["decoded_files"]]
            arrays[name] = np.stack(images).astype(dtype)
        elif "values" in spec:  # a numeric input (a detector's boxes), shape included
            arrays[name] = np.array(spec["values"], dtype=spec["dtype"]).reshape(spec["shape"])
            continue
        else:
            raise ValueError(f"Case {case['name']!r}: input {name!r} has none of files, b64, decoded_files, values.")
        if arrays[name].size == 0:
            arrays[name] = arrays[name].reshape(0)
    return arrays


def _decode(tf, encoded):
    # As keras_spp.data.voc.decode_image_tf (this process never imports keras_spp): JPEGs
    # with the exact integer DCT, the pixels the references were computed on.
    if tf.io.is_jpeg(encoded):
        return tf.io.decode_jpeg(encoded, channels=3, dct_method="INTEGER_ACCURATE").numpy()
    return tf.io.decode_image(encoded, channels=3, expand_animations=False).numpy()


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def run_tf1_session(export_dir, cases):
    """``[(outputs or None, error or None)]`` per case, through the TF1 session loader."""
    results = []
    with tf.Graph().as_default() as graph, tf.compat.v1.Session(graph=graph) as session:
        meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], export_dir)
        for case, inputs in cases:
            signature = meta_graph.signature_def[case["signature"]]
            feed = {signature.inputs[name].name: value for name, value in inputs.items()}
            fetch = {name: info.name for name, info in signature.outputs.items()}
            results.append(_attempt(session.run, fetch, feed))
    return results


def run_tf2_load(export_dir, cases):
    """As ``run_tf1_session``, through ``tf.saved_model.load`` and its signatures."""
    loaded = tf.saved_model.load(export_dir)
    results = []
    for case, inputs in cases:
        results.append(_attempt(_call, loaded.signatures[case["signature"]], inputs))
    return results


def _call(signature, inputs):
    outputs = signature(**{name: tf.constant(value) for name, value in inputs.items()})
    return {name: value.numpy() for name, value in outputs.items()}


def _attempt(run, *args):
    try:
        return run(*args), None
    except tf.errors.OpError as e:
        return None, {"type": type(e).__name__, "message": e.message}


def compare(case, outputs, error, rules):
    """``(ok, details)`` for one case's result against its expectation."""
    if "error" in case:
        want = case["error"]
        if error is None:
            return False, {"problem": f"expected {want['type']}, got outputs"}
        ok = error["type"] == want["type"] and want["contains"] in error["message"]
        return ok, {"error": error["type"], "message": _first_line(error["message"], want["contains"] or "")}
    if error is not None:
        return False, {"problem": f"{error['type']}: {_first_line(error['message'], '')}"}
    details, ok = {}, True
    expected = {name: _expected_array(spec) for name, spec in case["outputs"].items()}
    for name, want in expected.items():
        if name not in outputs:
            ok = False
            details[name] = "missing"
            continue
        got = np.asarray(outputs[name])
        if got.dtype == object:
            got = np.vectorize(lambda s: s.decode("utf-8") if isinstance(s, bytes) else s, otypes=[object])(got)
        if got.shape != want.shape:
            ok = False
            details[name] = f"shape {list(got.shape)}, expected {list(want.shape)}"
            continue
        rule = rules.get(name, {})
        if "atol" in rule:
            error = np.abs(got.astype(np.float64) - want) if want.size else np.zeros(0)
            diff = float(np.max(error)) if want.size else 0.0
            details[name] = {"max_abs_diff": diff, "atol": rule["atol"]}
            if diff > rule["atol"] and rule.get("ties_by"):
                differ = np.argwhere(error > rule["atol"])
                tied = [_near_tie(expected, rules, rule["ties_by"], tuple(i)) for i in differ]
                details[name]["explained_by_near_ties"] = f"{sum(tied)} of {len(differ)} values"
                ok &= all(tied)
            else:
                ok &= diff <= rule["atol"]
        else:
            differ = np.argwhere(got != want)
            tied = [_near_tie(expected, rules, rule.get("ties_by"), tuple(i)) for i in differ]
            details[name] = {"different": int(len(differ)), "explained_by_near_ties": int(sum(tied))}
            ok &= all(tied)
    return bool(ok), details


def _near_tie(expected, rules, by, index):
    if by is None or by not in expected:
        return False
    scores = expected[by]
    index = tuple(index[: scores.ndim])  # an item of the scores (boxes [N, D, 4] by scores [N, D])
    row, col = index[:-1], index[-1]
    atol = rules.get(by, {}).get("atol", 0.0)
    neighbours = [c for c in (col - 1, col + 1) if 0 <= c < scores.shape[-1]]
    return any(abs(scores[row + (col,)] - scores[row + (c,)]) <= 2 * atol for c in neighbours)


def _expected_array(spec):
    if spec["dtype"] == "string":
        return np.array(spec["values"], dtype=object).reshape(spec["shape"])
    dtype = np.float64 if spec["dtype"].startswith("float") else spec["dtype"]
    return np.array(spec["values"], dtype=dtype).reshape(spec["shape"])


def _first_line(message, containing):
    """The line of a TF error message that says what went wrong (not where it was raised)."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    for line in lines:
        if containing and containing in line:
            return line[:400]
    plumbing = ("Graph execution error", "Detected at node", "<stack traces", "File ", "[[")
    said = [line for line in lines if not line.startswith(plumbing)]
    return (said or lines or [""])[0][:400]


def graph_facts(export_dir):
    """Device placements outside the saver functions, and the XLA-compiled calls."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel()
    with open(os.path.join(export_dir, "saved_model.pb"), "rb") as f:
        saved_model.ParseFromString(f.read())
    graph = saved_model.meta_graphs[0].graph_def
    placed, xla = [], 0
    for function in graph.library.function:
        saver = function.signature.name.startswith(_SAVER_FUNCTIONS)
        for node in function.node_def:
            if node.device and not saver:
                placed.append(f"{function.signature.name}/{node.name}: {node.device}")
            if "_XlaMustCompile" in node.attr and node.attr["_XlaMustCompile"].b:
                xla += 1
    # Top-level nodes: the loader's plumbing; the object-graph string constant sits on the host.
    for node in graph.node:
        string_const = node.op == "Const" and node.attr["dtype"].type == tf.string.as_datatype_enum
        if node.device and not string_const:
            placed.append(f"{node.name}: {node.device}")
    return {"device_placements": placed, "xla_compiled_calls": xla}


def check(export_dir):
    """The whole report (a dict); ``report["ok"]`` says whether everything passed."""
    reference = load_reference(export_dir)
    signatures, rules = reference["signatures"], reference["compare"]
    cases = [(case, case_inputs(export_dir, case, signatures[case["signature"]])) for case in reference["cases"]]
    report = {"export_dir": export_dir, "kind": reference["kind"], "tolerance": rules, "loaders": {}}
    ok = True
    for loader, run in (("tf1_session", run_tf1_session), ("tf2_load", run_tf2_load)):
        rows = []
        for (case, _), (outputs, error) in zip(cases, run(export_dir, cases), strict=True):
            passed, details = compare(case, outputs, error, rules)
            ok &= passed
            rows.append({"case": case["name"], "ok": passed, **({"details": details} if details else {})})
        report["loaders"][loader] = rows
    facts = graph_facts(export_dir)
    report.update(facts)
    if facts["device_placements"]:
        ok = False
    if bool(facts["xla_compiled_calls"]) != bool(reference.get("xla")):
        ok = False
        report["xla_problem"] = (
            f"the export says xla={reference.get('xla')} but the graph has {facts['xla_compiled_calls']} XLA calls"
        )
    report["modules"] = {
        "keras_spp": any(m == "keras_spp" or m.startswith("keras_spp.") for m in sys.modules),
        "keras": "keras" in sys.modules,
    }
    ok &= not report["modules"]["keras_spp"]
    report["ok"] = bool(ok)
    return report


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print(
            "usage: python export/serving_check.py EXPORT_DIR (the version folder, e.g. exported/spp/1)",
            file=sys.stderr,
        )
        return 2
    try:
        report = check(argv[0])
    except (OSError, ValueError, KeyError, tf.errors.OpError) as e:  # OpError: a SavedModel the loader refuses
        print(f"error: {type(e).__name__}: {e}" if isinstance(e, KeyError) else f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=1))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
