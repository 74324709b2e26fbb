"""Fit the flags' calibration (:class:`sdk.quality.Calibration`) on held-out labelled images.

The Detector is run on each image and on its cross-site variants (:mod:`train.data.variants`); every point gives
the features the SDK computes at run time and whether it landed within ``tolerance_mm`` of the reference labels
(the mean of both clinicians). A logistic regression with one intercept per landmark turns the features into
P(within tolerance). Only images neither stage trained on may be used (the validation carve).
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np

from sdk.quality import IMPLAUSIBLE, OUTSIDE, Calibration, point_features

from .data.variants import variant_readings


def collect(det, samples: Sequence, variants: Sequence[str]) -> Dict[str, np.ndarray]:
    """Per point of every (sample, variant): ``features`` (N, 4), ``error_mm`` (N,), ``landmark`` (N,),
    ``flagged_otherwise`` (N,) (outside the image / implausible position: flagged whatever the calibration says),
    ``variant`` (N,), ``image`` (N,) the sample's id. Points whose label the variant moved out of the frame are left out."""
    out = {k: [] for k in ("features", "error_mm", "landmark", "flagged_otherwise", "variant", "image")}
    for s, v, img, gt, inside, mm in variant_readings(samples, variants):
        res, ev = det.evidence(img)
        if ev.shift is None or ev.shape_z is None:
            raise ValueError("calibration needs a Detector with a local stage and a schema with a shape model")
        err = np.linalg.norm(res.xy - gt, axis=1) * mm
        other = np.array([r in (OUTSIDE, IMPLAUSIBLE) for r in res.point_flags])
        out["features"].append(point_features(res.scores, ev.local_peak, ev.shift, ev.shape_z)[inside])
        out["error_mm"].append(err[inside])
        out["landmark"].append(np.arange(len(gt))[inside])
        out["flagged_otherwise"].append(other[inside])
        out["variant"].append(np.array([v] * int(inside.sum())))
        out["image"].append(np.array([s.id] * int(inside.sum())))
    return {k: np.concatenate(v) for k, v in out.items()}


def fit_calibration(features: np.ndarray, landmark: np.ndarray, within: np.ndarray, k: int,
                    l2_landmark: float = 2.0, l2_coef: float = 1e-2, iters: int = 50,
                    weight: Optional[np.ndarray] = None, **info) -> Calibration:
    """Logistic regression P(within) = sigmoid(features @ coef + c + b[landmark]) by Newton's method; the
    per-landmark offsets ``b`` are shrunk toward 0 (``l2_landmark``) so a landmark with few misses keeps the
    common intercept ``c``. ``weight`` (N,): each row's weight (default 1)."""
    x = np.asarray(features, np.float64)
    n, f = x.shape
    wt = np.ones(n) if weight is None else np.asarray(weight, np.float64)
    design = np.hstack([x, np.ones((n, 1)), np.eye(k)[np.asarray(landmark)]])
    y = np.asarray(within, np.float64)
    reg = np.r_[np.full(f, l2_coef), 0.0, np.full(k, l2_landmark)]
    theta = np.zeros(design.shape[1])
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(design @ theta)))
        grad = design.T @ (wt * (p - y)) + reg * theta
        hess = (design * (wt * p * (1 - p))[:, None]).T @ design + np.diag(reg + 1e-9)
        step = np.linalg.solve(hess, grad)
        theta -= step
        if np.abs(step).max() < 1e-8:
            break
    coef, c, b = theta[:f], theta[f], theta[f + 1:]
    return Calibration(coef, c + b, **info)
