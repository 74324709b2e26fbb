"""Does calibrating on more image variants help? Out-of-fold AUROC (5 folds grouped by image) on the validation
carve's 12 cross-site variants, with the calibration fitted on those rows alone or on them plus the other variants
of train.data.variants (rule: lab/results/flags/calib_variants_rule.txt).

    python -m lab.studies.calib_variants OUT.json
"""
import json
import sys
from pathlib import Path

import numpy as np

from sdk import Detector
from sdk.metrics import auroc
from sdk.schemas import ISBI19
from train.calibrate import collect, fit_calibration
from train.data.variants import CROSS_SITE, VARIANTS
from train.datasets import load_train_val

_, val = load_train_val(Path("../shared/data/isbi2015"), ISBI19, "auto", ["train"], ("senior", "junior"), 30, 0)
det = Detector(backend="onnxruntime", threads=2)
det.local.calibration = None
extra = [v for v in VARIANTS if v not in CROSS_SITE]
d = collect(det, val, list(CROSS_SITE) + extra)
cross = np.isin(d["variant"], CROSS_SITE)
far = d["error_mm"] > 4
ids = np.random.default_rng(0).permutation(np.unique(d["image"]))
fold = dict(zip(ids, np.arange(len(ids)) % 5))
fo = np.array([fold[i] for i in d["image"]])
report = {"extra_variants": extra, "points_cross_site": int(cross.sum()), "points_extra": int((~cross).sum()),
          "over_4mm_extra": int(far[~cross].sum())}
for name, use in {"cross-site rows only": cross, "all variants": np.ones_like(cross)}.items():
    p = np.zeros(len(far))
    for f in range(5):
        tr = (fo != f) & use
        te = (fo == f) & cross
        cal = fit_calibration(d["features"][tr], d["landmark"][tr], ~far[tr], ISBI19.k)
        p[te] = cal.probability(d["features"][te], d["landmark"][te])
    full = fit_calibration(d["features"][use], d["landmark"][use], ~far[use], ISBI19.k)
    pf = full.probability(d["features"], d["landmark"])
    flagged = (pf < 0.5) | d["flagged_otherwise"]
    report[name] = {"oof_auroc_cross_site": auroc(1 - p[cross], far[cross]),
                    "in_sample_over_10mm_unflagged": int(((d["error_mm"] > 10) & ~flagged & use).sum()),
                    "coef": np.round(full.coef, 3).tolist()}
    print(name, report[name], flush=True)
Path(sys.argv[1]).write_text(json.dumps(report, indent=1))
