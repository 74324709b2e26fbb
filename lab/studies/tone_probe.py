"""Probe: bring each image's tone curve to the training images' before the Detector, on the validation carve x
the cross-site variants (plus the robustness set's tone variants). Pixels at 0 or 255 (padding, collimator
shutters, burned-in labels) are left out of every histogram.

    python -m lab.studies.tone_probe OUT.json

Modes: 'off'; 'match' (full histogram matching); 'quantiles' (a piecewise-linear tone curve through the 2, 10, 25,
50, 75, 90 and 98th percentiles: undoes gamma, contrast and sigmoid curves, keeps the histogram's finer shape);
each also 'gated': applied only when the image's quantiles differ from the reference by more than the training
images' own largest difference.
"""
import json
import sys
from pathlib import Path

import numpy as np

from sdk import Detector
from sdk.image_io import load_image
from sdk.schemas import ISBI19
from train.data.variants import CROSS_SITE, variant_readings
from train.datasets import load_train_val

DATA = Path("../shared/data/isbi2015")
QS = np.array([0.02, 0.10, 0.25, 0.50, 0.75, 0.90, 0.98])


def hist(g):
    h = np.bincount(g.ravel(), minlength=256).astype(np.float64)
    h[0] = h[255] = 0.0
    return h


def cdf(g):
    c = np.cumsum(hist(g))
    return c / max(c[-1], 1.0)


def quantiles(g):
    return np.interp(QS, cdf(g), np.arange(256))


def lut_match(g, ref_cdf):
    return np.clip(np.searchsorted(ref_cdf, cdf(g), side="left"), 0, 255)


def lut_quantiles(g, ref_q):
    q = quantiles(g)
    x = np.r_[0.0, q, 255.0]
    y = np.r_[0.0, ref_q, 255.0]
    keep = np.r_[True, np.diff(x) > 0.5]          # strictly increasing knots
    return np.clip(np.interp(np.arange(256), x[keep], y[keep]), 0, 255)


def main(out: Path) -> None:
    tr, va = load_train_val(DATA, ISBI19, "auto", ["train"], ("senior", "junior"), 30, 0)
    train_g = [load_image(s.image).gray for s in tr]
    ref_cdf = np.mean([cdf(g) for g in train_g], axis=0)
    ref_q = np.interp(QS, ref_cdf, np.arange(256))
    spread = max(float(np.abs(quantiles(g) - ref_q).max()) for g in train_g)
    print("reference quantiles", ref_q.round(1), "training images' largest quantile difference", round(spread, 1))
    det = Detector(backend="onnxruntime", threads=2)
    variants = list(CROSS_SITE) + ["gamma 0.6 (brighter)", "contrast x0.6", "histogram equalised"]
    modes = ["off", "match", "quantiles", "match gated", "quantiles gated"]
    err = {m: {v: [] for v in variants} for m in modes}
    applied = {m: {v: 0 for v in variants} for m in modes}
    for s, v, img, gt, inside, mm in variant_readings(va, variants):
        far = float(np.abs(quantiles(img) - ref_q).max()) > spread
        for m in modes:
            if m == "off" or (m.endswith("gated") and not far):
                x = img
            else:
                lut = lut_match(img, ref_cdf) if m.startswith("match") else lut_quantiles(img, ref_q)
                x = lut.astype(np.uint8)[img]
                applied[m][v] += 1
            err[m][v].append((np.linalg.norm(det(x).xy - gt, axis=1) * mm)[inside])
    res = {"reference_quantiles": ref_q.tolist(), "gate": spread, "mre_mm": {}, "over_10mm": {}, "applied": applied}
    for m in modes:
        res["mre_mm"][m] = {v: float(np.concatenate(err[m][v]).mean()) for v in variants}
        res["over_10mm"][m] = {v: int((np.concatenate(err[m][v]) > 10).sum()) for v in variants}
        res["mre_mm"][m]["mean of the cross-site set"] = float(np.mean([res["mre_mm"][m][v] for v in CROSS_SITE]))
        print(m, round(res["mre_mm"][m]["mean of the cross-site set"], 4), {v[:12]: round(x, 3) for v, x in res["mre_mm"][m].items()})
    out.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
