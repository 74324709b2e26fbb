"""The one decoder: heatmaps -> sub-pixel points and confidences.

Argmax, then DARK refinement (Zhang et al., "Distribution-Aware Coordinate Representation for Human Pose
Estimation", CVPR 2020): the heatmap is smoothed with a Gaussian, its log is expanded to second order around the
argmax, and the Newton step ``-H^-1 g`` gives the sub-pixel peak. For a Gaussian-shaped peak the log is exactly
quadratic, so the refinement is exact up to discretisation.

Heatmap pixel ``(u, v)`` has its centre at model-input pixel ``((u + 0.5) * stride - 0.5, (v + 0.5) * stride - 0.5)``.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Tuple

import numpy as np

DECODERS = ("argmax", "dark")


@lru_cache(maxsize=16)
def _blur_weights(sigma: float) -> np.ndarray:
    """(2r+1,) float32 Gaussian taps of ``sigma``, cut beyond ``3 sigma + 1`` and scaled so that a row of the blur
    away from the map's border sums to 1 (values outside the map are zero: near the border a row sums to less)."""
    r = int(np.floor(3 * sigma + 1))
    d = np.arange(-r, r + 1, dtype=np.float64)
    t = np.exp(-0.5 * (d / sigma) ** 2)
    return (t / t.sum()).astype(np.float32)


def decode_heatmaps(heatmaps: np.ndarray, sigma: float = 1.5, method: str = "dark") -> Tuple[np.ndarray, np.ndarray]:
    """Peak of each heatmap.

    heatmaps: (..., K, h, w) float. Returns ``(xy, scores)``: (..., K, 2) float64 heatmap pixels (x, y) and (..., K)
    float32 peak values clipped to [0, 1].
    """
    if method not in DECODERS:
        raise ValueError(f"decoder {method!r} is not one of {DECODERS}")
    hm = np.asarray(heatmaps, dtype=np.float32)
    if hm.ndim < 3:
        raise ValueError(f"heatmaps must be (..., K, h, w), got shape {hm.shape}")
    lead, (h, w) = hm.shape[:-2], hm.shape[-2:]
    flat = hm.reshape(-1, h, w)
    if not np.isfinite(flat).all():
        raise ValueError("heatmaps contain NaN or infinity")
    idx = flat.reshape(len(flat), -1).argmax(axis=1)
    py, px = np.divmod(idx, w)
    scores = np.clip(flat[np.arange(len(flat)), py, px], 0.0, 1.0)
    xy = np.stack([px, py], axis=1).astype(np.float64)
    if method == "dark" and h >= 3 and w >= 3:
        xy += _dark_offsets(flat, px, py, sigma)
    return xy.reshape(*lead, 2), scores.reshape(lead).astype(np.float32)


def _dark_offsets(flat: np.ndarray, px: np.ndarray, py: np.ndarray, sigma: float) -> np.ndarray:
    """(M, 2) Newton offsets of the log of the smoothed heatmaps at their argmax; 0 where undefined.

    Only the 3x3 smoothed values around each argmax are computed (the derivatives need no more), from the window
    the blur reaches, by a loop-based einsum: no BLAS call, whose worker threads would otherwise keep spinning after
    it and slow the next model run (lab/RESULTS.md).
    Within 2 pixels of the map's border the blur would read the zeros beyond it and pull the point up to 0.7 px
    inwards, so there the log of the map itself is used (exact for a Gaussian peak).
    """
    n, h, w = flat.shape
    # Derivatives at the argmax, pushed one pixel in from the border so central differences exist.
    x = np.clip(px, 1, w - 2)
    y = np.clip(py, 1, h - 2)
    i = np.arange(n)
    taps = _blur_weights(sigma)
    r = len(taps) // 2
    # The blur of the 3x3 around (y, x) needs the (2r+3)^2 window around it; zeros stand for outside the map.
    pad = np.pad(flat, ((0, 0), (r + 1, r + 1), (r + 1, r + 1)))
    span = np.arange(-r - 1, r + 2)
    win = pad[i[:, None, None], (y[:, None] + r + 1 + span)[:, :, None], (x[:, None] + r + 1 + span)[:, None, :]]
    k = np.zeros((3, 2 * r + 3), np.float32)          # row a: the taps centred on offset a - 1
    for a in range(3):
        k[a, a:a + 2 * r + 1] = taps
    smooth = np.einsum("ah,nhw,bw->nab", k, win, k, optimize=False)   # (n, 3, 3) around (y, x)
    # Keep the peak's height as DARK does (it only moves the log's floor), then log of a floor-clipped map.
    peak = flat[i, py, px]
    centre = np.maximum(smooth[:, 1, 1], 1e-12)
    smooth = smooth * (peak / centre)[:, None, None]
    near = (px < 2) | (px > w - 3) | (py < 2) | (py > h - 3)
    if near.any():
        rows = (y[near][:, None] + np.arange(-1, 2))[:, :, None]
        cols = (x[near][:, None] + np.arange(-1, 2))[:, None, :]
        smooth[near] = flat[i[near][:, None, None], rows, cols]
    logh = np.log(np.maximum(smooth, 1e-10)).astype(np.float64)

    def at(dy, dx):
        return logh[:, 1 + dy, 1 + dx]

    c = at(0, 0)
    dx = 0.5 * (at(0, 1) - at(0, -1))
    dy = 0.5 * (at(1, 0) - at(-1, 0))
    dxx = at(0, 1) - 2 * c + at(0, -1)
    dyy = at(1, 0) - 2 * c + at(-1, 0)
    dxy = 0.25 * (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1))
    det = dxx * dyy - dxy * dxy
    # A maximum needs a negative-definite Hessian; elsewhere the argmax stands.
    ok = (det > 1e-12) & (dxx < 0)
    safe = np.where(ok, det, 1.0)
    ox = -(dyy * dx - dxy * dy) / safe
    oy = -(dxx * dy - dxy * dx) / safe
    off = np.stack([ox, oy], axis=1) + np.stack([x - px, y - py], axis=1)
    off[~ok] = 0.0
    return np.clip(off, -1.5, 1.5)


def heatmap_to_input(xy: np.ndarray, stride: float) -> np.ndarray:
    """(..., 2) heatmap pixels -> (..., 2) model-input pixels (pixel-centre convention)."""
    return (np.asarray(xy, dtype=np.float64) + 0.5) * stride - 0.5


def input_to_heatmap(xy: np.ndarray, stride: float) -> np.ndarray:
    """(..., 2) model-input pixels -> (..., 2) heatmap pixels; inverse of :func:`heatmap_to_input`."""
    return (np.asarray(xy, dtype=np.float64) + 0.5) / stride - 0.5


def gaussian_heatmaps(xy: np.ndarray, hw: Tuple[int, int], sigma: float) -> np.ndarray:
    """Training targets: (K, 2) heatmap pixels -> (K, h, w) float32 unnormalised Gaussians (peak 1 at the point).

    A point outside the map gives an all-zero channel. Used by training and by the decoder's round-trip test.
    """
    h, w = hw
    xy = np.asarray(xy, dtype=np.float32)
    gx = np.arange(w, dtype=np.float32)[None, :] - xy[:, 0:1]
    gy = np.arange(h, dtype=np.float32)[None, :] - xy[:, 1:2]
    ex = np.exp(-0.5 * (gx / sigma) ** 2)
    ey = np.exp(-0.5 * (gy / sigma) ** 2)
    out = ey[:, :, None] * ex[:, None, :]
    inside = (xy[:, 0] >= -0.5) & (xy[:, 0] <= w - 0.5) & (xy[:, 1] >= -0.5) & (xy[:, 1] <= h - 0.5)
    out[~inside] = 0.0
    return out.astype(np.float32)


def decode_to_image(heatmaps: np.ndarray, letterbox, stride: float, sigma: float,
                    method: str = "dark") -> Tuple[np.ndarray, np.ndarray]:
    """(K, h, w) heatmaps of one image -> ((K, 2) float64 original-image pixels, (K,) scores).

    ``letterbox`` is the :class:`sdk.preprocess.Letterbox` the image went through.
    """
    xy, scores = decode_heatmaps(heatmaps, sigma, method)
    return letterbox.to_image(heatmap_to_input(xy, stride)), scores
