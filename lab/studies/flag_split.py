"""Where the flags' AUROC is lost: reliability vs error > 4 mm (mean labels) per test split, and the landmarks with
the most such points (the bundled pair, onnxruntime, images as they are).

    python -m lab.studies.flag_split [OUT.json]
"""
import json
import sys
from pathlib import Path

import numpy as np

from sdk import Detector
from sdk.metrics import auroc
from sdk.schemas import get_schema
from train.datasets import load_folder

det = Detector(backend="onnxruntime")
names = get_schema("isbi19").names
out = {}
for split in ["test1", "test2"]:
    S = load_folder(Path("../shared/data/isbi2015"), get_schema("isbi19"), "auto", [split], ("senior", "junior"))
    rel, err, lm = [], [], []
    for s in S:
        r = det(s.image)
        rel.append(r.reliability if r.reliability is not None else r.scores)
        err.append(np.linalg.norm(r.xy - s.points, axis=1) * s.spacing)
        lm.append(np.arange(19))
    rel, err, lm = map(np.concatenate, (rel, err, lm))
    bad = err > 4
    print(split, "points", len(err), ">4mm", bad.sum(), "AUROC", round(auroc(-rel, bad), 3))
    out[split] = {"points": int(len(err)), "over_4mm": int(bad.sum()), "auroc": round(float(auroc(-rel, bad)), 3),
                  "by_landmark": {}}
    for k in np.argsort(-np.bincount(lm[bad], minlength=19))[:6]:
        m = lm == k
        print("   ", names[k], ">4mm", int(bad[m].sum()), "AUROC within landmark", round(auroc(-rel[m], bad[m]), 3))
        out[split]["by_landmark"][names[k]] = {"over_4mm": int(bad[m].sum()),
                                               "auroc_within": round(float(auroc(-rel[m], bad[m])), 3)}
if len(sys.argv) > 1:
    Path(sys.argv[1]).write_text(json.dumps(out, indent=1))
