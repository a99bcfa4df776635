"""Verify an export as TF Serving would see it, without keras_spp.

    python -m export.verify exported/spp/1 [--json]

1. Layout: ``<base>/<integer>/`` with ``saved_model.pb``, ``variables/``, the label map
   in ``assets/`` and ``assets.extra/tf_serving_warmup_requests``.
2. ``saved_model_cli show --all``: tag-set "serve", and every signature the export
   declared (``reference.json``) with its inputs' and outputs' dtypes and shapes,
   method ``tensorflow/serving/predict``.
3. ``export/serving_check.py`` in a child process that imports TensorFlow alone:
   the TF1 session loader (TF Serving's) and ``tf.saved_model.load`` on the
   reference images of several sizes against the Keras model's outputs, within the
   stated tolerance (``atol`` 1e-4 on probabilities and scores for the classifier;
   for the detector 1e-4 on normalized boxes and on scores, classes, labels and
   ``num_detections`` equal, up to the order of near-tied scores), the bad inputs'
   errors, no device placement, XLA as exported.

Prints what was checked and exits 0 when all passed, 1 when something failed, 2
when the folder is no export.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys

REFERENCE = os.path.join("assets.extra", "reference", "reference.json")
CHECK_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "serving_check.py")


def saved_model_cli():
    """The command that runs saved_model_cli: the one beside this Python, on PATH, or as a module."""
    beside = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    if os.path.exists(beside):
        return [beside]
    found = shutil.which("saved_model_cli")
    return [found] if found else [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli"]


def parse_show_all(text):
    """``{"tag_sets": [...], "signatures": {name: {"inputs": {name: [dtype, shape]}, "outputs": ..., "method": ...}}}``
    from the text of ``saved_model_cli show --all``. Shapes as lists, -1 for unknown
    dims, ``None`` for unknown rank."""
    tag_sets = re.findall(r"MetaGraphDef with tag-set: '([^']*)'", text)
    signatures = {}
    current, section, tensor = None, None, None
    for line in text.splitlines():
        m = re.match(r"signature_def\['([^']+)'\]:", line)
        if m:
            current = signatures.setdefault(m.group(1), {"inputs": {}, "outputs": {}, "method": None})
            continue
        if current is None:
            continue
        m = re.match(r"\s+(inputs|outputs)\['([^']+)'\] tensor_info:", line)
        if m:
            section, tensor = m.group(1), m.group(2)
            current[section][tensor] = [None, None]
            continue
        m = re.match(r"\s+dtype: (\S+)", line)
        if m and tensor is not None:
            current[section][tensor][0] = m.group(1)
            continue
        m = re.match(r"\s+shape: (.*)", line)
        if m and tensor is not None:
            current[section][tensor][1] = _shape(m.group(1).strip())
            continue
        m = re.match(r"\s+Method name is: (.*)", line)
        if m:
            current["method"] = m.group(1).strip()
            current, tensor = None, None
    return {"tag_sets": tag_sets, "signatures": signatures}


def _shape(text):
    if text == "unknown_rank":
        return None
    return [int(d) for d in text.strip("()").replace(" ", "").split(",") if d]


def check_layout(export_dir, reference):
    problems = []
    if not os.path.basename(os.path.normpath(export_dir)).isdigit():
        problems.append("the folder is not named by a version number, which TF Serving needs (<base>/<integer>)")
    for need in [
        "saved_model.pb",
        os.path.join("variables", "variables.index"),
        os.path.join("assets.extra", "tf_serving_warmup_requests"),
    ] + [os.path.join("assets", a) for a in reference.get("assets", [])]:
        if not os.path.exists(os.path.join(export_dir, need)):
            problems.append(f"{need} is missing")
    return problems


def check_signatures(shown, reference):
    problems = []
    if "serve" not in shown["tag_sets"]:
        problems.append(f"no tag-set 'serve' (found {shown['tag_sets']})")
    for name, want in reference["signatures"].items():
        got = shown["signatures"].get(name)
        if got is None:
            problems.append(f"signature {name!r} is missing")
            continue
        if got["method"] != "tensorflow/serving/predict":
            problems.append(f"{name}: method {got['method']!r}, expected tensorflow/serving/predict")
        for part in ("inputs", "outputs"):
            if set(got[part]) != set(want[part]):
                problems.append(f"{name}: {part} {sorted(got[part])}, expected {sorted(want[part])}")
            for tensor, (dtype, shape) in want[part].items():
                if tensor in got[part] and got[part][tensor] != [dtype, shape]:
                    problems.append(f"{name}: {part}[{tensor!r}] is {got[part][tensor]}, expected {[dtype, shape]}")
    return problems


def verify(export_dir, timeout=600):
    """The report (a dict with ``ok``) of the three checks of the module docstring."""
    export_dir = os.path.abspath(export_dir)
    path = os.path.join(export_dir, REFERENCE)
    if not os.path.isfile(path):
        versions = sorted(d for d in os.listdir(export_dir) if d.isdigit()) if os.path.isdir(export_dir) else []
        hint = f" (its versions: {', '.join(os.path.join(export_dir, v) for v in versions)})" if versions else ""
        raise FileNotFoundError(
            f"{path} is missing: {export_dir} is not a version folder written by python -m export.saved_model{hint}."
        )
    reference = read_reference(path)
    report = {"export_dir": export_dir, "layout": check_layout(export_dir, reference)}

    # Both children at once: each spends most of its time importing and loading TensorFlow.
    show = subprocess.Popen(
        saved_model_cli() + ["show", "--dir", export_dir, "--all"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # A script path, not -m: the child must not import this package's parents.
    child = subprocess.Popen(
        [sys.executable, CHECK_SCRIPT, export_dir], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    shown_out, shown_err = _communicate(show, timeout)
    child_out, child_err = _communicate(child, timeout)
    if show.returncode:
        report["saved_model_cli"] = [f"saved_model_cli failed: {_tail(shown_err)}"]
    else:
        parsed = parse_show_all(shown_out)
        report["signatures"] = parsed["signatures"]
        report["saved_model_cli"] = check_signatures(parsed, reference)
    try:
        report["serving_check"] = json.loads(child_out)
    except ValueError:
        report["serving_check"] = {"ok": False, "problem": f"exit {child.returncode}: {_tail(child_err)}"}
    report["ok"] = not report["layout"] and not report["saved_model_cli"] and bool(report["serving_check"].get("ok"))
    return report


def read_reference(path):
    """``reference.json`` as a dict; a ``ValueError`` naming it when it is not what an export writes."""
    try:
        with open(path, encoding="utf-8") as f:
            reference = json.load(f)
    except ValueError as e:  # also UnicodeDecodeError
        raise ValueError(f"{path} is not valid JSON ({e}): export the model again.") from e
    missing = [
        k for k in ("kind", "signatures", "compare", "cases") if not isinstance(reference, dict) or k not in reference
    ]
    if missing or not isinstance(reference["signatures"], dict):
        raise ValueError(
            f"{path} is not an export's reference (it needs kind, signatures, compare and cases; missing "
            f"{missing or ['signatures as an object']}): export the model again."
        )
    return reference


def _communicate(process, timeout):
    try:
        return process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        return out, f"{err}\ntimed out after {timeout} s"


def _tail(text, lines=5):
    return " | ".join(line for line in text.strip().splitlines()[-lines:])


def summary(report):
    """Human-readable lines for a report."""
    mark = {True: "ok  ", False: "FAIL"}
    out = [f"{report['export_dir']}"]
    out.append(f"{mark[not report['layout']]} TF Serving layout" + "".join(f"\n       {p}" for p in report["layout"]))
    out.append(
        f"{mark[not report['saved_model_cli']]} saved_model_cli show --all: signatures, dtypes, shapes"
        + "".join(f"\n       {p}" for p in report["saved_model_cli"])
    )
    for name, sig in report.get("signatures", {}).items():
        if name.startswith("__"):
            continue
        inputs, outputs = (
            ", ".join(f"{k} {d} {s}" for k, (d, s) in sorted(sig[part].items())) for part in ("inputs", "outputs")
        )
        out.append(f"       {name}: ({inputs}) -> ({outputs})")
    check = report["serving_check"]
    out.append(
        f"{mark[bool(check.get('ok'))]} serving_check.py (TensorFlow only, keras_spp imported: "
        f"{check.get('modules', {}).get('keras_spp')})"
    )
    if "problem" in check:
        out.append(f"       {check['problem']}")
    tolerance = {k: v["atol"] for k, v in check.get("tolerance", {}).items() if "atol" in v}
    if tolerance:
        out.append(f"       tolerance: |served - Keras| <= {tolerance}; ids and labels equal up to near-ties")
    for loader, rows in check.get("loaders", {}).items():
        for row in rows:
            details = row.get("details", {})
            diffs = {k: v["max_abs_diff"] for k, v in details.items() if isinstance(v, dict) and "max_abs_diff" in v}
            said = f" max |diff| {diffs}" if diffs else f" {details['message']}" if "message" in details else ""
            problem = f" {details['problem']}" if "problem" in details else ""
            out.append(f"  {mark[row['ok']]} {loader}: {row['case']}:{said}{problem}")
    if "device_placements" in check:
        out.append(
            f"{mark[not check['device_placements']]} device placements outside the saver: "
            f"{check['device_placements'] or 'none'}"
        )
        out.append(
            f"       XLA-compiled calls in the graph: {check.get('xla_compiled_calls')}"
            + (f" ({check['xla_problem']})" if "xla_problem" in check else "")
        )
    out.append("PASSED" if report["ok"] else "FAILED")
    return "\n".join(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("export_dir", help="the version folder, e.g. exported/spp/1")
    p.add_argument("--json", action="store_true", help="print the whole report as JSON")
    args = p.parse_args(argv)
    try:
        report = verify(args.export_dir)
    except (OSError, ValueError, subprocess.TimeoutExpired) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=1) if args.json else summary(report))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
