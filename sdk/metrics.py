"""The one implementation of the landmark metrics (ISBI 2015 conventions, Wang et al. 2016).

Radial error per landmark = Euclidean distance between prediction and label. MRE = its mean, SD = its standard
deviation, SDR@t = share of errors <= t mm. Reported in mm, in original pixels, and in model-input pixels.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np

SDR_THRESHOLDS_MM = (2.0, 2.5, 3.0, 4.0)


def radial_errors(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """(N, K, 2) and (N, K, 2) points in the same pixels -> (N, K) Euclidean distances in those pixels."""
    pred, gt = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    if pred.shape != gt.shape or pred.shape[-1] != 2:
        raise ValueError(f"pred {pred.shape} and gt {gt.shape} must both be (N, K, 2)")
    return np.linalg.norm(pred - gt, axis=-1)


def summarize(err_px: np.ndarray, spacing_mm: np.ndarray, input_px_size: Optional[np.ndarray] = None,
              names: Optional[Sequence[str]] = None) -> Dict:
    """Metrics of a set of images.

    err_px: (N, K) radial errors in original pixels (NaN: an unlabelled point, left out). spacing_mm: (N,) or scalar, mm per original pixel.
    input_px_size: (N,) or scalar, original pixels per model-input pixel (omit to skip input-pixel figures).
    Returns a JSON-ready dict: ``mre_mm, sd_mm, mre_px, mre_input_px, sdr`` (percent, keyed by threshold),
    and ``per_landmark`` (same figures per name).
    """
    err_px = np.asarray(err_px, np.float64)
    n, k = err_px.shape
    spacing = np.broadcast_to(np.asarray(spacing_mm, np.float64), (n,))
    err_mm = err_px * spacing[:, None]
    out = _figures(err_mm, err_px, None if input_px_size is None else
                   err_px / np.broadcast_to(np.asarray(input_px_size, np.float64), (n,))[:, None])
    out["n_images"] = int(n)
    if not np.isfinite(err_px).all():           # a point the labels leave blank (NaN) is not scored
        out["unlabelled_points"] = int((~np.isfinite(err_px)).sum())
    names = list(names) if names is not None else [str(i) for i in range(k)]
    out["per_landmark"] = {
        name: _figures(err_mm[:, j:j + 1], err_px[:, j:j + 1], None if input_px_size is None else
                       (err_px[:, j:j + 1] / np.broadcast_to(np.asarray(input_px_size, np.float64), (n,))[:, None]))
        for j, name in enumerate(names)
    }
    return out


def _figures(err_mm: np.ndarray, err_px: np.ndarray, err_in: Optional[np.ndarray]) -> Dict:
    scored = np.isfinite(err_px)
    err_mm, err_px = err_mm[scored], err_px[scored]
    err_in = None if err_in is None else err_in[scored]
    d = {
        "mre_mm": float(err_mm.mean()),
        "sd_mm": float(err_mm.std()),
        "mre_px": float(err_px.mean()),
        "sdr": {f"{t:g}mm": float(100.0 * (err_mm <= t).mean()) for t in SDR_THRESHOLDS_MM},
    }
    if err_in is not None:
        d["mre_input_px"] = float(err_in.mean())
    return d


def format_summary(m: Dict, title: str = "") -> str:
    """A short human-readable table of :func:`summarize` output."""
    lines = [title] if title else []
    sdr = "  ".join(f"SDR@{k} {v:5.1f}%" for k, v in m["sdr"].items())
    extra = f"  ({m['mre_input_px']:.2f} input px)" if "mre_input_px" in m else ""
    lines.append(f"MRE {m['mre_mm']:.3f} ± {m['sd_mm']:.3f} mm{extra}  {sdr}  [{m['n_images']} images]")
    if m.get("unlabelled_per_landmark"):
        lines.append("unlabelled points (blank cells), not scored: "
                     + ", ".join(f"{n} {c}" for n, c in m["unlabelled_per_landmark"].items()))
    for name, f in m.get("per_landmark", {}).items():
        lines.append(f"  {name:<26} {f['mre_mm']:6.3f} mm  SDR@2mm {f['sdr']['2mm']:5.1f}%")
    return "\n".join(lines)


def auroc(doubt: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``doubt`` (higher = more likely positive) for the boolean ``positive``
    (Mann-Whitney U, ties counted half)."""
    doubt, positive = np.asarray(doubt, np.float64), np.asarray(positive, bool)
    npos, nneg = int(positive.sum()), int((~positive).sum())
    if npos == 0 or nneg == 0:
        return float("nan")
    order = np.argsort(doubt, kind="mergesort")
    ranks = np.empty(len(doubt))
    sorted_d = doubt[order]
    i = 0
    while i < len(sorted_d):          # average ranks of ties
        j = i
        while j + 1 < len(sorted_d) and sorted_d[j + 1] == sorted_d[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1
        i = j + 1
    return float((ranks[positive].sum() - npos * (npos + 1) / 2.0) / (npos * nneg))
