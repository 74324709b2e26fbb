"""How the calibration could learn gross errors from simulated first-stage failures (cache of
:mod:`lab.studies.gross_sim`), by 5-fold image-grouped cross-validation on the validation carve:

- ``real only``: the shipped fit;
- ``+ sim xW``: simulated rows added with total weight W x the real rows' count.

For each: out-of-fold AUROC on the real points (error > 4 mm), real points flagged (P < 0.5) and the share of them
off by > 4 mm, real right points doubted (%), and the share of simulated points > 10 mm off that are flagged.

    python -m lab.studies.gross_fit SIM.npz [OUT.json]
"""
import json
import sys

import numpy as np

from sdk.metrics import auroc
from train.calibrate import fit_calibration

d = dict(np.load(sys.argv[1]))
R = {k[5:]: v for k, v in d.items() if k.startswith("real_")}
S = {k[4:]: v for k, v in d.items() if k.startswith("sim_")}
ids = np.random.default_rng(0).permutation(np.unique(R["image"]))
fold = dict(zip(ids, np.arange(len(ids)) % 5))
fr, fs = np.array([fold[i] for i in R["image"]]), np.array([fold[i] for i in S["image"]])
far, gross_s = R["error_mm"] > 4, S["error_mm"] > 10
report = {"real_points": int(len(far)), "real_over_4mm": int(far.sum()), "sim_points": int(len(gross_s)),
          "sim_over_10mm": int(gross_s.sum()), "options": {}}
for w in (0.0, 0.005, 0.01, 0.02, 0.05):
    pr, ps = np.zeros(len(far)), np.zeros(len(gross_s))
    for f in range(5):
        tr, ts = fr != f, fs != f
        x = np.vstack([R["features"][tr], S["features"][ts]])
        lm = np.r_[R["landmark"][tr], S["landmark"][ts]]
        y = np.r_[R["error_mm"][tr] <= 4, S["error_mm"][ts] <= 4]
        wt = np.r_[np.ones(tr.sum()), np.full(ts.sum(), w * tr.sum() / max(ts.sum(), 1))]
        keep = wt > 0
        cal = fit_calibration(x[keep], lm[keep], y[keep], 19, weight=wt[keep])
        pr[~tr] = cal.probability(R["features"][~tr], R["landmark"][~tr])
        ps[~ts] = cal.probability(S["features"][~ts], S["landmark"][~ts])
    fl = (pr < 0.5) | R["flagged_otherwise"]
    fls = (ps < 0.5) | S["flagged_otherwise"]
    r = {"auroc_real": round(auroc(1 - pr, far), 4), "real_flagged": int(fl.sum()),
         "real_flagged_precision": round(float(far[fl].mean()), 3) if fl.any() else None,
         "real_right_doubted_pct": round(float(fl[~far].mean() * 100), 3),
         "real_brier": round(float(np.mean((pr - ~far) ** 2)), 5),
         "sim_over_10mm_flagged_pct": round(float(fls[gross_s].mean() * 100), 1)}
    report["options"][f"+ sim x{w}" if w else "real only"] = r
    print(w, r)
if len(sys.argv) > 2:
    open(sys.argv[2], "w").write(json.dumps(report, indent=1))
