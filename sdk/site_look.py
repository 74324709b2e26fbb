"""What a site's landmarks look like, for landmarks that the site marks on a structure the image shows the same way
every time: machine porion on the top of the ear rod's ring, a point on a ruler, a clinic's own habit on an edge.

A site profile's median offset (:mod:`sdk.site`) moves a landmark by the site's average convention; where the
structure itself moves from image to image (the ear rod sits in each patient's ear a little differently), the
offset alone leaves that scatter. A *look* is the mean image patch around the site's own labels, in a grid scaled
by S-N (so a rescaled export matches too); at reading, it is matched (normalised cross-correlation) around the
offset-corrected point and the point moves to the best match when the match is good enough. Which landmarks get a
look, and how good a match must be, is chosen by leave-one-out inside the site's images: a landmark keeps its look
only where that beat the offset alone. Pure numpy and OpenCV.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import cv2
import numpy as np

STEP_SN = 1 / 240       # the grid's step in S-N lengths (~0.3 mm for a 70 mm S-N)
HALF = 24               # the look's half-size in steps (~7 mm): an ear rod's ring top with its surroundings
SEARCH = 20             # how far from the offset-corrected point a match is looked for, steps (~6 mm)
MIN_SCORES = (0.0, 0.3, 0.5)        # thresholds on the match tried by leave-one-out
# A look is kept only when, in the leave-one-out, it matched on most images, cut the mean error by almost half
# and did better on most images: a structure seen the same way every time does all three; an anatomical landmark
# that the model already reads well does not, and on 10 images a weaker rule kept looks that then did harm on the
# site's other images (lab/RESULTS.md).
MIN_MATCHED = 0.8
MIN_GAIN = 0.45
MIN_WINS = 0.8


@dataclass(frozen=True)
class Look:
    """The mean patch of one landmark (``(2 * HALF + 1)`` square, zero mean, unit sd) and the weakest match kept."""

    patch: np.ndarray
    min_score: float

    def to_dict(self) -> Dict:
        return {"patch": np.round(self.patch, 3).tolist(), "min_score": self.min_score}

    @classmethod
    def from_dict(cls, d: Dict) -> "Look":
        patch = np.asarray(d["patch"], dtype=np.float32)
        if patch.shape != (2 * HALF + 1, 2 * HALF + 1) or not np.all(np.isfinite(patch)):
            raise ValueError(f"a look is a finite {2 * HALF + 1}-pixel square patch, got {patch.shape}")
        return cls(patch, float(d["min_score"]))


def to_gray(p: np.ndarray, reduction: int) -> np.ndarray:
    """Full-image pixel coordinates -> those of an image decoded at 1/reduction."""
    return (np.asarray(p, np.float64) - (reduction - 1) / 2) / reduction


def sample(gray: np.ndarray, centre: np.ndarray, step: float, half: int) -> np.ndarray:
    """(2 half + 1)^2 float32 grid of ``gray`` centred on ``centre`` (x, y in gray pixels), ``step`` pixels apart;
    smoothed first when the step is coarser than a pixel, so that the grid does not alias. Beyond the image's edges
    its edge is replicated; a grid wholly outside the image shows nothing (zeros: flat, matching no look)."""
    size = 2 * half + 1
    m = np.array([[step, 0, centre[0] - half * step], [0, step, centre[1] - half * step]], dtype=np.float64)
    h, w = gray.shape[:2]
    span = half * step
    if (centre[0] + span < 0 or centre[0] - span > w - 1 or centre[1] + span < 0 or centre[1] - span > h - 1):
        return np.zeros((size, size), np.float32)
    src = gray
    if step > 1.5:      # only the neighbourhood is smoothed: the grid and the smoothing's reach around it
        reach = (half + 2) * step
        x0, y0 = int(max(0, np.floor(centre[0] - reach))), int(max(0, np.floor(centre[1] - reach)))
        x1 = int(min(w, np.ceil(centre[0] + reach) + 1))
        y1 = int(min(h, np.ceil(centre[1] + reach) + 1))
        src = cv2.GaussianBlur(gray[y0:y1, x0:x1], (0, 0), 0.5 * step)
        m[0, 2] -= x0
        m[1, 2] -= y0
    return cv2.warpAffine(src, m, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE).astype(np.float32)


def _standard(p: np.ndarray) -> np.ndarray:
    sd = float(p.std())
    return (p - p.mean()) / sd if sd > 1e-6 else np.zeros_like(p)


def _subpixel(r: np.ndarray, i: int, j: int) -> Tuple[float, float]:
    """Parabola through the peak and its neighbours, per axis."""
    def one(a, b, c):
        d = a - 2 * b + c
        return 0.0 if d >= 0 else float(np.clip(0.5 * (a - c) / d, -0.5, 0.5))
    dy = one(r[i - 1, j], r[i, j], r[i + 1, j]) if 0 < i < r.shape[0] - 1 else 0.0
    dx = one(r[i, j - 1], r[i, j], r[i, j + 1]) if 0 < j < r.shape[1] - 1 else 0.0
    return dx, dy


def match(gray: np.ndarray, reduction: int, point: np.ndarray, sn_px: float, patch: np.ndarray) -> Tuple[np.ndarray, float]:
    """Best match of ``patch`` within SEARCH steps of ``point`` (full-image pixels; S-N ``sn_px`` long there):
    (the matched point in full-image pixels, its normalised cross-correlation)."""
    step = sn_px * STEP_SN / reduction
    region = sample(gray, to_gray(point, reduction), step, HALF + SEARCH)
    if float(region.std()) < 1e-6:
        return np.asarray(point, np.float64), 0.0
    r = cv2.matchTemplate(region, patch.astype(np.float32), cv2.TM_CCOEFF_NORMED)
    i, j = np.unravel_index(int(np.argmax(r)), r.shape)
    dx, dy = _subpixel(r, int(i), int(j))
    moved = np.array([j + dx - SEARCH, i + dy - SEARCH]) * step * reduction
    return np.asarray(point, np.float64) + moved, float(r[i, j])


def refine(gray: np.ndarray, reduction: int, xy: np.ndarray, sn_px: float,
           looks: Dict[int, Look]) -> Tuple[np.ndarray, Dict[int, float]]:
    """(K, 2) points -> the points with each looked-for landmark moved to its match where the match reaches the
    look's ``min_score``, and each looked-for landmark's score."""
    out, scores = np.array(xy, dtype=np.float64), {}
    for k, look in looks.items():
        p, s = match(gray, reduction, out[k], sn_px, look.patch)
        scores[k] = s
        if s >= look.min_score:
            out[k] = p
    return out, scores


def fit_looks(grays: Sequence[Tuple[np.ndarray, int]], placed: np.ndarray, truth: np.ndarray, sn_px: np.ndarray,
              err_scale: np.ndarray) -> Tuple[Dict[int, Look], Dict[int, Dict], np.ndarray]:
    """Looks for the landmarks where they pay. ``grays``: each site image as (gray, reduction); ``placed`` (N, K, 2):
    the model's points with the site's offsets (each by a profile of the other images, as the leave-one-out of
    the offsets made them); ``truth`` (N, K, 2): the site's labels; ``sn_px`` (N,): S-N in pixels; ``err_scale``
    (N,): mm per pixel. Returns the kept looks, per landmark the leave-one-out errors (mm) without and with, and
    ``placed`` with the kept looks' leave-one-out matches. A label missing from ``truth`` (NaN) leaves that image out
    of its landmark's look."""
    n, k_all = placed.shape[:2]
    after = np.array(placed, dtype=np.float64)
    looks: Dict[int, Look] = {}
    report: Dict[int, Dict] = {}
    for k in range(k_all):
        use = np.flatnonzero(np.isfinite(truth[:, k]).all(axis=1))      # images that label this landmark
        if len(use) < 3:
            continue
        patches = np.stack([_standard(sample(grays[i][0], to_gray(truth[i, k], grays[i][1]),
                                             sn_px[i] * STEP_SN / grays[i][1], HALF)) for i in use])
        moved = np.empty((len(use), 2))
        score = np.empty(len(use))
        for j, i in enumerate(use):
            g, r = grays[i]
            others = np.arange(len(use)) != j
            moved[j], score[j] = match(g, r, placed[i, k], sn_px[i], patches[others].mean(axis=0))
        base = np.linalg.norm(placed[use, k] - truth[use, k], axis=1) * err_scale[use]
        tried = {}
        for t in MIN_SCORES:
            if (score >= t).mean() >= MIN_MATCHED:
                pts = np.where((score >= t)[:, None], moved, placed[use, k])
                tried[t] = np.linalg.norm(pts - truth[use, k], axis=1) * err_scale[use]
        best = min(tried, key=lambda t: tried[t].mean()) if tried else None
        err = tried[best] if tried else base
        gain = 1 - err.mean() / max(base.mean(), 1e-9)
        wins = float((err < base).mean())
        kept = best is not None and gain >= MIN_GAIN and wins >= MIN_WINS
        report[k] = {"offset_only_mm": round(float(base.mean()), 3), "with_look_mm": round(float(err.mean()), 3),
                     "min_score": best, "matched": round(float((score >= (best or 0)).mean()), 3),
                     "wins": round(wins, 3), "kept": bool(kept)}
        if kept:
            looks[k] = Look(patches.mean(axis=0).astype(np.float32), float(best))
            after[use, k] = np.where((score >= best)[:, None], moved, placed[use, k])
    return looks, report, after


def sn_lengths(xy: np.ndarray, names: List[str]) -> np.ndarray:
    """(N, K, 2) -> (N,) S-N lengths in pixels."""
    return np.linalg.norm(xy[:, names.index("nasion")] - xy[:, names.index("sella")], axis=1)

