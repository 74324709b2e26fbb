"""The points > 10 mm off that the flags miss, with the evidence the calibration saw (bundled pair, onnxruntime).

    python -m lab.studies.unflagged_gross
"""
from pathlib import Path

import numpy as np

from sdk import Detector
from sdk.image_io import load_image
from sdk.schemas import get_schema
from train.data.variants import VARIANTS
from train.datasets import load_folder

sch = get_schema("isbi19")
det = Detector(backend="onnxruntime")
CASES = [("test1", "as is", 150), ("test2", "as is", 100), ("test1", "CLAHE (clip 2, 8x8 tiles)", 25),
         ("test2", "other machine (170x212 mm field, 0.127 mm/px)", 25), ("test2", "sigmoid tone curve", 25),
         ("test2", "crop 10% each side", 25)]
for split, variant, n in CASES:
    S = load_folder(Path("../shared/data/isbi2015"), sch, "auto", [split], ("senior", "junior"))[:n]
    for s in S:
        g = load_image(s.image).gray
        fimg, fpts, factor = VARIANTS[variant]
        img = fimg(g); gt = fpts(s.points, g.shape)
        r, ev = det.evidence(img)
        err = np.linalg.norm(r.xy - gt, axis=1) * s.spacing * factor
        for k in np.where((err > 10) & ~r.flagged)[0]:
            print(split, variant[:20], Path(s.image).name, sch.names[k], round(float(err[k]), 1),
                  "rel", round(float(r.reliability[k]), 2), "score", round(float(r.scores[k]), 2),
                  "shift", round(float(ev.shift[k]), 1), "shape_z", round(float(ev.shape_z[k]), 2),
                  "peak", round(float(ev.local_peak[k]), 2))
