"""Choosing the repair's acceptance bar (sdk.repair.MIN_PEAK) on the validation carve, by a rule written first
(lab/results/repair/rule.txt): simulated first-stage failures (a point moved 8-30 mm, the local stage reading from
there, as lab/studies/gross_sim.py makes them) on the 30 held-out images x the cross-site variants, and the real
readings of the same images.

    python -m lab.studies.repair_sim OUT.json
"""
import json
import sys
from pathlib import Path

import numpy as np

from sdk import Detector
from sdk.decode import decode_to_image
from sdk.quality import COND_Z, IMPLAUSIBLE, assess, shape_model
from sdk.repair import ReadingFrame, repair_points
from sdk.schemas import ISBI19
from train.data.variants import CROSS_SITE, variant_readings
from train.datasets import load_train_val

BARS = (0.0, 0.05, 0.1, 0.15, 0.25, 0.4)
rng = np.random.default_rng(0)
_, val = load_train_val(Path("../shared/data/isbi2015"), ISBI19, "auto", ["train"], ("senior", "junior"), 30, 0)
det = Detector(backend="onnxruntime", threads=2, repair=False)
m, model = det.meta, shape_model(ISBI19.id, ISBI19.names)
sim = {b: [] for b in BARS}          # per moved point: (error before repair, error after)
real = {b: [] for b in BARS}         # per real implausible point: (before, after)
flagged_sim = []
for s, v, img, gt, inside, px_mm in variant_readings(val, CROSS_SITE):
    x, lb, loaded = det.preprocess(img)
    xy, scores = decode_to_image(det.run_network(x[None])[0], lb, m.heatmap_stride, m.sigma, m.decoder)
    frame = ReadingFrame(loaded.gray, lb, loaded.reduction, np.zeros(2))
    for kind, start in (("real", xy.copy()), ("sim", xy.copy())):
        moved = np.array([], int)
        if kind == "sim":
            moved = rng.choice(np.flatnonzero(inside), size=1, replace=False)
            ang = rng.uniform(0, 2 * np.pi)
            start[moved] += np.array([np.cos(ang), np.sin(ang)]) * rng.uniform(8.0, 30.0) / px_mm
            start[moved] = np.clip(start[moved], 0, np.array(img.shape[1::-1]) - 1)
        local, peaks = det.local.locate_with_peaks(loaded.gray, lb, start, loaded.reduction)
        a = assess(local, scores, img.shape[:2], m.schema.id, m.schema.names)
        bad = np.array([r == IMPLAUSIBLE for r in a.reasons]) & inside
        err0 = np.linalg.norm(local - gt, axis=1) * px_mm
        if kind == "sim":
            flagged_sim.append((float(err0[moved][0]), bool(bad[moved][0])))
        if not bad.any() or "implausible_shape" in a.flags:
            continue
        for b in BARS:
            rep = repair_points(local, bad, det.local, frame, model, COND_Z, min_peak=b)
            err1 = np.linalg.norm(rep.xy - gt, axis=1) * px_mm
            rows = moved if kind == "sim" else np.flatnonzero(bad)
            (sim if kind == "sim" else real)[b] += [(float(err0[i]), float(err1[i]), bool(rep.repaired[i]))
                                                    for i in rows if bad[i] or kind == "sim"]
out = {"flagged_sim": flagged_sim, "bars": {}}
f = np.array(flagged_sim)
gross = f[:, 0] > 4
print(f"simulated: {len(f)} moved points, {int(gross.sum())} end > 4 mm after the local stage; "
      f"{int((gross & (f[:, 1] > 0)).sum())} of those flagged implausible")
for b in BARS:
    sv, rv = np.array(sim[b]).reshape(-1, 3), np.array(real[b]).reshape(-1, 3)
    s_gross = sv[:, 0] > 4
    row = {"sim_points": len(sv), "sim_gross_before": int(s_gross.sum()),
           "sim_gross_within4_after": int((s_gross & (sv[:, 1] <= 4)).sum()),
           "sim_repaired": int(sv[:, 2].sum()),
           "real_implausible": len(rv), "real_repaired": int(rv[:, 2].sum()) if len(rv) else 0,
           "real_worse_by_1mm": int((rv[:, 1] > rv[:, 0] + 1).sum()) if len(rv) else 0,
           "real_mean_before": float(rv[:, 0].mean()) if len(rv) else None,
           "real_mean_after": float(rv[:, 1].mean()) if len(rv) else None}
    out["bars"][str(b)] = row
    print(b, row)
Path(sys.argv[1]).parent.mkdir(parents=True, exist_ok=True)
Path(sys.argv[1]).write_text(json.dumps(out, indent=1))
