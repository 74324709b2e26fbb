"""Fit the training images' framing around their landmarks (:func:`train.framing.write_framing`).

    python scripts/fit_framing.py --data ../shared/data/isbi2015 --out sdk/shapes/isbi19.framing.json
"""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from train.config import VAL_COUNT  # noqa: E402
from train.framing import write_framing  # noqa: E402

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--schema", default="isbi19")
    ap.add_argument("--annotators", default="senior,junior")
    ap.add_argument("--split", default="train")
    ap.add_argument("--val-count", type=int, default=VAL_COUNT)
    ap.add_argument("--tolerance", type=float, default=0.15)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    f = write_framing(a.data, a.out, a.schema, a.annotators, a.split, a.val_count, a.tolerance)
    print(json.dumps(f.to_dict()))
