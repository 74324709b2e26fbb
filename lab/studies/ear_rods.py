"""Machine porion: the top of the cephalostat's ear-rod ring, found near the anatomical porion.

The head holder's ear rods show as bright rings (about 8 mm in radius; often two, left and right, slightly apart)
around the external auditory meatus. Some clinics mark porion there ("machine porion") rather than on the meatus's
anatomical top, and Frankfort-based angles change with the choice. The rings are found by a circular Hough
transform on a crop around the anatomical porion, resampled to a fixed scale taken from the skull itself (S-N
length), and each candidate is scored by the contrast of its rim against the annuli just inside and outside it.
Pure numpy + OpenCV.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import cv2
import numpy as np

SN_MM = 70.0                      # a typical adult S-N length: the scale of an image without a spacing
MM_PER_PX = 0.3                   # the crop's resampled scale
# Where ring centres are looked for, mm from the anatomical porion (x forward, y down): the rods sit in the ear
# canal, whose top the anatomical porion is.
SEARCH_MM = (-15.0, -6.0, 15.0, 20.0)
RADIUS_MM = np.arange(5.0, 11.01, 0.3)   # ear-rod rings seen on cephalostats
RIM_MM = 0.6                      # the ring's drawn width in the matched filter
MIN_SCORE = 0.15                  # rim contrast over most of the circle (in units of the crop's spread) below which
                                  # no ring is reported
CANDIDATES = 300                  # the matched filter's strongest local maxima re-ranked by completeness
SECTORS = 16


@dataclass(frozen=True)
class Ring:
    """One ear-rod ring: centre and radius in the image's pixels, and its rim contrast ``score``."""

    x: float
    y: float
    r: float
    score: float


@dataclass(frozen=True)
class MachinePorion:
    """The top of the ear-rod ring(s): ``xy`` (2,) image pixels, ``score`` (the weaker ring's contrast when two
    are averaged), and the ``rings`` it came from."""

    xy: np.ndarray
    score: float
    rings: Tuple[Ring, ...]


def _ring_kernel(r: float) -> np.ndarray:
    """A zero-mean, unit-norm matched filter for a bright ring of radius ``r`` crop pixels: the rim positive, the
    annuli just inside and outside it negative."""
    w = RIM_MM / MM_PER_PX
    half = int(np.ceil(r + 3 * w)) + 1
    yy, xx = np.mgrid[-half:half + 1, -half:half + 1]
    d = np.hypot(xx, yy)
    rim = np.exp(-0.5 * ((d - r) / (0.5 * w)) ** 2)
    around = np.exp(-0.5 * ((d - r) / (2.0 * w)) ** 2) - rim
    k = rim / rim.sum() - around / max(around.sum(), 1e-9)
    return (k / np.linalg.norm(k)).astype(np.float32)


def _completeness(img: np.ndarray, cx: float, cy: float, r: float) -> float:
    """How much brighter the rim is than just inside and outside it over most of the circle: the 25th percentile
    over :data:`SECTORS` sectors, so a strong arc of bone (condyle, mastoid) does not pass for a ring."""
    h, w = img.shape
    ang = np.linspace(0, 2 * np.pi, SECTORS * 6, endpoint=False)
    d = RIM_MM / MM_PER_PX

    def ring(rad):
        x = np.clip(np.rint(cx + rad * np.cos(ang)).astype(int), 0, w - 1)
        y = np.clip(np.rint(cy + rad * np.sin(ang)).astype(int), 0, h - 1)
        return img[y, x]

    rim = np.maximum(ring(r), np.maximum(ring(r - 0.5 * d), ring(r + 0.5 * d)))
    side = 0.5 * (ring(r - 2.5 * d) + ring(r + 2.5 * d))
    per_sector = (rim - side).reshape(SECTORS, -1).mean(axis=1)
    return float(np.percentile(per_sector, 25))


def find_rings(gray: np.ndarray, porion: np.ndarray, px_per_mm: float, max_rings: int = 2) -> Sequence[Ring]:
    """Ear-rod rings whose centres lie in :data:`SEARCH_MM` around ``porion`` (2,) on ``gray`` (H, W) uint8,
    strongest first: a matched ring filter at each radius of :data:`RADIUS_MM` on the crop resampled to
    :data:`MM_PER_PX`. A second ring is kept only as the other ear rod: about the same size, its centre less
    than a radius away."""
    s = MM_PER_PX * px_per_mm                      # image pixels per crop pixel
    margin = RADIUS_MM[-1] + 3 * RIM_MM
    lo = np.array(SEARCH_MM[:2]) - margin
    hi = np.array(SEARCH_MM[2:]) + margin
    x0, y0 = (np.asarray(porion, float) + lo * px_per_mm).astype(int)
    x1, y1 = (np.asarray(porion, float) + hi * px_per_mm).astype(int)
    h, w = gray.shape
    cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if cx1 - cx0 < 16 or cy1 - cy0 < 16:
        return []
    size = (max(16, int(round((cx1 - cx0) / s))), max(16, int(round((cy1 - cy0) / s))))
    img = cv2.resize(gray[cy0:cy1, cx0:cx1], size, interpolation=cv2.INTER_AREA).astype(np.float32)
    img -= cv2.GaussianBlur(img, (0, 0), 4.0 / MM_PER_PX)      # the anatomy's slow shading out
    resp = np.stack([cv2.filter2D(img, cv2.CV_32F, _ring_kernel(r / MM_PER_PX), borderType=cv2.BORDER_REFLECT)
                     for r in RADIUS_MM])
    # centres allowed: the search box, in crop pixels
    ox, oy = (cx0 - (porion[0] + lo[0] * px_per_mm)) / s, (cy0 - (porion[1] + lo[1] * px_per_mm)) / s
    bx0 = int(max(0, (margin / MM_PER_PX) - ox))
    by0 = int(max(0, (margin / MM_PER_PX) - oy))
    bx1 = int(min(size[0], bx0 + (SEARCH_MM[2] - SEARCH_MM[0]) / MM_PER_PX))
    by1 = int(min(size[1], by0 + (SEARCH_MM[3] - SEARCH_MM[1]) / MM_PER_PX))
    if bx1 <= bx0 or by1 <= by0:
        return []
    box = resp[:, by0:by1, bx0:bx1]
    # candidates: the filter's local maxima over position and radius, strongest first
    peak = box == cv2.dilate(box.reshape(-1, box.shape[2]), np.ones((3, 3), np.uint8)).reshape(box.shape)
    peak &= box > 0
    idx = np.flatnonzero(peak)
    idx = idx[np.argsort(box.ravel()[idx])[::-1][:CANDIDATES]]
    noise = float(np.std(img)) + 1e-6
    scored = []
    for i in idx:
        ri, yy, xx = np.unravel_index(i, box.shape)
        cx, cy, r = bx0 + xx, by0 + yy, RADIUS_MM[ri] / MM_PER_PX
        scored.append((_completeness(img, cx, cy, r) / noise, cx, cy, r))
    scored.sort(reverse=True)
    rings: list = []
    for score, cx, cy, r in scored:
        if score < MIN_SCORE or len(rings) == max_rings:
            break
        ring = Ring(cx0 + (cx + 0.5) * s - 0.5, cy0 + (cy + 0.5) * s - 0.5, r * s, float(score))
        if rings:
            first = rings[0]
            apart = np.hypot(ring.x - first.x, ring.y - first.y)
            if apart < 0.15 * first.r:               # the same ring again, a pixel off
                continue
            if not (apart < first.r and abs(ring.r - first.r) < 0.2 * first.r and score > 0.5 * first.score):
                continue
        rings.append(ring)
    return rings


def machine_porion(gray: np.ndarray, xy: np.ndarray, names: Sequence[str],
                   spacing: Optional[float] = None) -> Optional[MachinePorion]:
    """The top of the ear-rod ring(s) near the anatomical porion of a reading ``xy`` (K, 2) with landmark
    ``names``; None where the schema has no porion or no ring is seen (no rods, or cut off)."""
    names = list(names)
    if "porion" not in names:
        return None
    if spacing:
        px_per_mm = 1.0 / spacing
    elif "sella" in names and "nasion" in names:
        px_per_mm = float(np.linalg.norm(xy[names.index("nasion")] - xy[names.index("sella")])) / SN_MM
    else:
        return None
    if not np.isfinite(px_per_mm) or px_per_mm <= 0:
        return None
    rings = find_rings(gray, xy[names.index("porion")], px_per_mm)
    if not rings:
        return None
    tops = np.array([[r.x, r.y - r.r] for r in rings])
    return MachinePorion(tops.mean(axis=0), min(r.score for r in rings), tuple(rings))
