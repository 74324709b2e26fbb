"""Weak local evidence at an unusual position: points the calibration keeps but whose local-stage peak is low and
whose shape distance is high at once (a linear calibration cannot see the two together). Counts, per threshold
pair, the points such a rule would flag on the validation carve x the cross-site variants (train split only), and
how many of them are wrong (> 4 mm, > 10 mm) or right (< 2 mm).

    python -m lab.studies.evidence_rule OUT.npz [--test]     (--test: Test1/Test2 and their variants, to report)
"""
import sys
from pathlib import Path

import numpy as np

from sdk import Detector
from sdk.schemas import ISBI19
from train.calibrate import collect
from train.data.variants import CROSS_SITE
from train.datasets import load_folder, load_train_val

out = Path(sys.argv[1])
if not out.is_file():
    det = Detector(backend="onnxruntime")
    if "--test" in sys.argv:
        samples = [s for sp in ("test1", "test2") for s in load_folder(Path("../shared/data/isbi2015"), ISBI19, "auto",
                                                                        [sp], ("senior", "junior"))[:25]]
    else:
        _, samples = load_train_val(Path("../shared/data/isbi2015"), ISBI19, "auto", ["train"], ("senior", "junior"),
                                    30, 0)
    d = collect(det, samples, list(CROSS_SITE))
    rel = det.local.calibration.probability(d["features"], d["landmark"])
    np.savez(out, rel=rel, **d)
d = np.load(out)
peak = 1 / (1 + np.exp(-d["features"][:, 1]))
z = np.expm1(d["features"][:, 3])
err, kept = d["error_mm"], (d["rel"] >= 0.5) & ~d["flagged_otherwise"]
print(f"points {len(err)}; kept by the flags {kept.sum()}, of them > 10 mm {(kept & (err > 10)).sum()}, "
      f"> 4 mm {(kept & (err > 4)).sum()}")
for zc in (2.0, 2.5, 3.0, 3.5):
    for pc in (0.1, 0.15, 0.2, 0.25):
        new = kept & (z > zc) & (peak < pc)
        print(f"z > {zc} and peak < {pc}: flags {new.sum():4d} more; > 10 mm {(new & (err > 10)).sum():2d}, "
              f"> 4 mm {(new & (err > 4)).sum():3d}, < 2 mm {(new & (err < 2)).sum():3d}")
