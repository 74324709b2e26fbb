"""The conditional shape check (:meth:`sdk.quality.ShapeModel.conditional_z`) on a cached evidence pool
(:mod:`lab.studies.point_evidence`): how many right points (within 4 mm) each threshold would doubt, how many
misses it catches, and the calibration's out-of-fold AUROC (5 folds grouped by image) with the isotropic shape
residual or the conditional one as the shape feature.

    python -m lab.studies.shape_check POOL.npz SHAPE.json [SHAPE.json ...] [--fit-on VAL.npz] [--out OUT.json]

With ``--fit-on``, the calibration is fitted on that pool (all of it) and scored on POOL (a test pool: report
only, never choose on it).
"""
import json
import sys
from pathlib import Path

import numpy as np

from sdk.metrics import auroc
from sdk.quality import ShapeModel, point_features
from train.calibrate import fit_calibration

THRESHOLDS = (3.0, 3.5, 4.0, 5.0, 6.0)


def load_pool(path: Path, model: ShapeModel):
    d = dict(np.load(path))
    d["err"] = np.linalg.norm(d["xy"] - d["gt"], axis=1) * d["mm"]
    cond = np.zeros(len(d["err"]))
    for key in np.unique(d["key"]):
        m = np.flatnonzero(d["key"] == key)
        if len(m) == len(model.names):
            cond[m] = model.conditional_z(d["xy"][m])
        else:                       # points out of the frame: no full configuration, judged by the old z
            cond[m] = d["shape_z"][m]
    d["cond"] = cond
    return d


def features(d, shape: str) -> np.ndarray:
    return point_features(d["score"], d["peak"], d["shift"], d[shape])


def oof(d, shape: str, folds: int = 5) -> np.ndarray:
    img = np.array([k.split("|")[0] for k in d["key"]])
    ids = np.random.default_rng(0).permutation(np.unique(img))
    fold = dict(zip(ids, np.arange(len(ids)) % folds))
    fo = np.array([fold[i] for i in img])
    far, x, p = d["err"] > 4, features(d, shape), np.zeros(len(d["err"]))
    for f in range(folds):
        tr = fo != f
        p[~tr] = fit_calibration(x[tr], d["landmark"][tr], ~far[tr], 19).probability(x[~tr], d["landmark"][~tr])
    return p


def main(argv) -> None:
    out = None
    if "--out" in argv:
        i = argv.index("--out"); out = Path(argv[i + 1]); argv = argv[:i] + argv[i + 2:]
    fit_on = None
    if "--fit-on" in argv:
        i = argv.index("--fit-on"); fit_on = Path(argv[i + 1]); argv = argv[:i] + argv[i + 2:]
    pool, shapes = Path(argv[0]), [Path(a) for a in argv[1:]]
    report = {}
    for sp in shapes:
        model = ShapeModel.from_dict(json.loads(sp.read_text()))
        d = load_pool(pool, model)
        far, gross, right = d["err"] > 4, d["err"] > 10, d["err"] <= 4
        r = {"points": int(len(far)), "over_4mm": int(far.sum()), "over_10mm": int(gross.sum()),
             "auroc_shape_alone": {"isotropic": auroc(d["shape_z"], far), "conditional": auroc(d["cond"], far)},
             "thresholds": {}}
        for t in THRESHOLDS:
            hit = d["cond"] > t
            r["thresholds"][t] = {"right_points_doubted_pct": float(hit[right].mean() * 100),
                                  "over_4mm_caught": int((hit & far).sum()),
                                  "over_10mm_caught": int((hit & gross).sum())}
        for shape in ("shape_z", "cond"):
            if fit_on is None:
                p = oof(d, shape)
            else:
                v = load_pool(fit_on, model)
                p = fit_calibration(features(v, shape), v["landmark"], v["err"] <= 4, 19).probability(
                    features(d, shape), d["landmark"])
            r[f"calibration_auroc_{shape}"] = auroc(1 - p, far)
            r[f"calibration_over_10mm_unflagged_{shape}"] = int((gross & (p >= 0.5)).sum())
        report[sp.name] = r
        print(sp.name, json.dumps(r, indent=1))
    if out:
        out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
