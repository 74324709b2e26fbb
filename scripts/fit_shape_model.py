"""Fit a schema's shape model (:func:`train.shape_model.write_shape_model`) on the training carve.

    python scripts/fit_shape_model.py --data ../shared/data/isbi2015 --annotators senior,junior --out sdk/shapes/isbi19.json
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from train.config import VAL_COUNT  # noqa: E402
from train.shape_model import write_shape_model  # noqa: E402

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--schema", default="isbi19")
    ap.add_argument("--split", default="train")
    ap.add_argument("--annotators", default="senior,junior",
                    help="each annotator's labels are one shape each (both clinicians' variation)")
    ap.add_argument("--val-count", type=int, default=VAL_COUNT, help="held out as cephalo calibrate holds them out")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--noise-mm", type=float, default=1.0, help="a detector's own error per coordinate, mm")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    write_shape_model(a.data, a.out, a.schema, a.split, a.annotators, a.val_count, a.seed, a.noise_mm)
