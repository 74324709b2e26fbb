"""Use the detector from another program (any language) through JSON on stdout.

The other program runs, for example:
    python examples/json_from_another_program.py ceph1.jpg ceph2.png --spacing 0.1
and parses one JSON document: {"results": [{"file": ..., "landmarks": [{"name", "x", "y", "score", ...}], ...}],
"errors": [{"file": ..., "error": ...}]}. Exit code 0 when every image succeeded, 1 otherwise. The same output
comes from the CLI: ``cephalo predict IMAGE``.
"""
import argparse
import json
import sys

from sdk import CephaloError, Detector

ap = argparse.ArgumentParser()
ap.add_argument("images", nargs="+")
ap.add_argument("--spacing", type=float, default=None)
args = ap.parse_args()

det = Detector()
out = {"model": det.info["model"], "results": [], "errors": []}
for path in args.images:
    try:
        out["results"].append({"file": path, **det(path, spacing=args.spacing).to_dict()})
    except CephaloError as e:            # bad input is reported per file, the batch goes on
        out["errors"].append({"file": path, "error": str(e)})
json.dump(out, sys.stdout, indent=2)
sys.exit(1 if out["errors"] else 0)
