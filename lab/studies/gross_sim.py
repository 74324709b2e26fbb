"""Cache the calibration's rows on the validation carve x cross-site variants: the real readings
(:func:`train.calibrate.collect`) and simulated first-stage failures (:func:`collect_failures`). Result
(lab/results/flags/gross_sim_fit.json): the shipped calibration already flags 99% of simulated failures > 10 mm;
adding them to the fit lowers the real points' AUROC. Real gross errors are look-alikes the shape accepts, which
this simulation does not make.

    python -m lab.studies.gross_sim OUT.npz [PER_READING]
"""
import sys
from pathlib import Path
from typing import Dict, Sequence, Tuple

import numpy as np

from sdk import Detector
from sdk.decode import decode_to_image
from sdk.quality import IMPLAUSIBLE, OUTSIDE, assess, point_features
from sdk.schemas import ISBI19
from train.calibrate import collect
from train.data.variants import CROSS_SITE, variant_readings
from train.datasets import load_train_val


def collect_failures(det, samples: Sequence, variants: Sequence[str], per_reading: int = 2,
                     mm: Tuple[float, float] = (8.0, 30.0), seed: int = 0) -> Dict[str, np.ndarray]:
    """:func:`collect`'s rows for simulated first-stage failures: in each (sample, variant) reading,
    ``per_reading`` landmarks have their first-stage point moved ``mm`` (uniform) in a random direction, as when the
    first stage locks onto a look-alike with its usual confidence; the local stage then reads from there and the
    shape check judges the result. Held-out images never fail this way often enough to learn from (the validation
    carve has no point > 10 mm off), so the flags would otherwise never have seen what a gross error looks like.
    Rows: only the moved landmarks, with their final error."""
    rng = np.random.default_rng(seed)
    m = det.meta
    out = {k: [] for k in ("features", "error_mm", "landmark", "flagged_otherwise", "variant", "image")}
    for s, v, img, gt, inside, px_mm in variant_readings(samples, variants):
        x, lb, loaded = det.preprocess(img)
        xy, scores = decode_to_image(det.run_network(x[None])[0], lb, m.heatmap_stride, m.sigma, m.decoder)
        moved = rng.choice(np.flatnonzero(inside), size=min(per_reading, int(inside.sum())), replace=False)
        start = xy.copy()
        ang = rng.uniform(0, 2 * np.pi, len(moved))
        dist = rng.uniform(*mm, len(moved)) / px_mm
        start[moved] += np.stack([np.cos(ang), np.sin(ang)], axis=1) * dist[:, None]
        start[moved] = np.clip(start[moved], 0, np.array(img.shape[1::-1]) - 1)
        local, peaks = det.local.locate_with_peaks(loaded.gray, lb, start, loaded.reduction)
        shift = np.linalg.norm((local - start) * np.array([lb.scale_x, lb.scale_y]), axis=1)
        a = assess(local, scores, img.shape[:2], m.schema.id, m.schema.names, shift, peaks)
        err = np.linalg.norm(local - gt, axis=1) * px_mm
        other = np.array([r in (OUTSIDE, IMPLAUSIBLE) for r in a.reasons])
        out["features"].append(point_features(scores, peaks, shift, a.shape_z)[moved])
        out["error_mm"].append(err[moved])
        out["landmark"].append(moved)
        out["flagged_otherwise"].append(other[moved])
        out["variant"].append(np.array([v] * len(moved)))
        out["image"].append(np.array([s.id] * len(moved)))
    return {k: np.concatenate(v) for k, v in out.items()}


_, val = load_train_val(Path("../shared/data/isbi2015"), ISBI19, "auto", ["train"], ("senior", "junior"), 30, 0)
det = Detector(backend="onnxruntime", threads=2)
det.local.calibration = None
real = collect(det, val, CROSS_SITE)
sim = collect_failures(det, val, CROSS_SITE, per_reading=int(sys.argv[2]) if len(sys.argv) > 2 else 2)
np.savez_compressed(sys.argv[1], **{f"real_{k}": v for k, v in real.items()},
                    **{f"sim_{k}": v for k, v in sim.items()})
print("real", len(real["error_mm"]), "sim", len(sim["error_mm"]), "sim > 10 mm", int((sim["error_mm"] > 10).sum()))
