"""Output of the benchmark scripts: JSON on stdout, and into a file when asked."""

import json
import os


def emit(report, out=None):
    text = json.dumps(report, indent=1)
    print(text)
    if out:
        os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
        with open(out, "w") as f:
            f.write(text + "\n")
