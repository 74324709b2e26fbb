"""The cephalostat's ear rods: the rings they show around the ear canals, and the machine porion on their top.

Many clinics mark porion on the top of the ear rod ("machine porion") rather than on the bony meatus that the
model reads (anatomical porion); the two lie a few millimetres apart, and every Frankfort-based value changes with
the choice. An ear rod shows as a bright ring (a radio-opaque rim, sometimes with a dot at its centre), one per ear:
some machines show one ring (the rods aligned, or one rod marked), others two, a few millimetres apart and of
slightly different size (the rod nearer the source is magnified more). The rings are found around the anatomical
porion, on a crop resampled to a fixed scale in mm (the image's spacing, or the skull's S-N length without one):

1. local contrast normalisation, then a ridge filter at two widths (a thin rim and a thick one; a bright line, not
   the edge of a bright region: the Hessian's across-line curvature less the gradient), with each pixel's normal;
2. a circular Hough vote: each ridge pixel votes for the centres one radius away along its normal;
3. the vote's peaks, by bands of radii, are refined and scored by *completeness*: the ridge across the circle, as
   a low percentile over sectors, so an arc of bone (condyle, mastoid, the meatus's own edge) cannot pass for a
   ring; the most complete is the first ring;
4. the other rod's ring is looked for beside it (a grid of the places and sizes a second rod takes), scored only
   where its rim runs clear of the first ring's, and kept when it is nearly as complete;
5. the rings found are refined to a quarter of the crop's pixel, and each rim's outer edge is measured on the
   image itself.

The machine porion is the ring's top (the top of its rim's outer edge), or the mean of the two rings' tops. Pure
numpy and OpenCV, a few milliseconds. Checked against rings labelled by eye (``lab/data/ear_rods``,
``python -m lab.studies.ear_rods_check``).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

BOX_MM = (-22.0, -14.0, 22.0, 30.0)    # the crop around the anatomical porion (x0, y0, x1, y1; y down)
CENTRE_MM = (-12.0, -4.0, 12.0, 20.0)  # where a ring's centre may lie around the porion
RADIUS_MM = (4.0, 10.0)                # rims at radii of 4.2-4.7 mm (small rods) to 8.5 mm
COARSE_MM = 0.33                        # the search crop's scale, mm per pixel
FINE_STEPS = (0.5, 0.25)                # the last refinement's steps, crop pixels
RIDGE_MM = (0.35, 0.75)                # the ridge filter's two widths: thin rims (0.4-1 mm) and thick (~2 mm)
NORM_MM = 3.0                          # local contrast normalisation's scale
NOISE_FLOOR = 4.0                      # grey levels: a flat region's noise is not amplified into rims
EDGE_WEIGHT = 0.5                      # how much a step edge's gradient is taken off the ridge
RIM_REACH_MM = 2.5                     # how far out from a rim's middle its outer edge is looked for
SECTORS, PER_SECTOR = 24, 4            # completeness: the circle in sectors, samples per sector
MAX_SEEDS = 10                         # the vote's strongest peaks refined
QUANTILE = 0.25                        # completeness: this quantile of the per-sector ridge
MIN_SCORE = 0.045                      # a first ring less complete than this (beyond the crop's own level) is no ring
CERTAIN_SCORE = 0.06                   # below this a ring's rim is faint: the reading is reported as uncertain
CONVENTION = "the top of the ring's rim (its outer edge); with two rings, the mean of their tops"
# The other ear rod: a little larger or smaller (the rod nearer the source is magnified 6-19% more on the labelled
# ISBI images), a few millimetres from the first, and nearly as complete where it runs clear of it.
PAIR_RADIUS_RATIO = (1.03, 1.25)
PAIR_APART_MM = (0.8, 12.0)
PAIR_SHARE = 0.5

_ANG = np.linspace(0, 2 * np.pi, SECTORS * PER_SECTOR, endpoint=False)
_CA, _SA = np.cos(_ANG), np.sin(_ANG)
_MOVES = np.array([(0, 0, 0), (1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1)], np.float64)


@dataclass(frozen=True)
class Ring:
    """One ring: centre ``x``, ``y`` and the radius ``r`` of its rim's middle, in the image's pixels; ``outer``:
    the radius of the rim's outer edge (where the rim has fallen halfway to its surroundings); ``score``: its
    completeness (how much of the circle shows a thin bright rim, in units of the local contrast)."""

    x: float
    y: float
    r: float
    score: float
    outer: float = 0.0

    @property
    def top(self) -> np.ndarray:
        """(2,) the ring's highest point in the image (the top of its rim's outer edge), pixels."""
        return np.array([self.x, self.y - max(self.outer, self.r)])


@dataclass(frozen=True)
class EarRods:
    """The ear rods found in one image: ``rings`` (one or two, the most complete first), the ``machine_porion``
    (2,) (the ring's top, or the mean of the two rings' tops; image pixels) and ``score``, the weakest ring's
    completeness."""

    rings: Tuple[Ring, ...]
    machine_porion: np.ndarray
    score: float
    anatomical: Optional[np.ndarray] = None    # (2,) the model's porion, kept when porion was moved to the rods

    @property
    def certain(self) -> bool:
        """Whether every ring's rim is clear (:data:`CERTAIN_SCORE`); a faint one may be something else."""
        return self.score >= CERTAIN_SCORE

    def with_anatomical(self, xy: Sequence[float]) -> "EarRods":
        """The same reading, keeping the model's anatomical porion ``xy`` (pixels) it replaced."""
        return replace(self, anatomical=np.asarray(xy, np.float64).copy())

    def scaled(self, reduction: int) -> "EarRods":
        """The same rings found on an image decoded at 1/``reduction``, in the full image's pixels."""
        k, d = float(reduction), (reduction - 1) / 2
        return EarRods(tuple(Ring(g.x * k + d, g.y * k + d, g.r * k, g.score, g.outer * k) for g in self.rings),
                       self.machine_porion * k + d, self.score)

    def drawn(self) -> Tuple[np.ndarray, np.ndarray]:
        """What an overlay draws: (M, 3) the rings' outer edges (x, y, r) and (2,) the machine porion."""
        return np.array([(g.x, g.y, max(g.outer, g.r)) for g in self.rings]), np.asarray(self.machine_porion)

    def to_dict(self, spacing: Optional[float] = None) -> dict:
        """The record's ``ear_rods``: the machine porion (pixels, and mm with a ``spacing``), the rings, how certain
        the reading is, and the convention it follows."""
        mp = {"x": round(float(self.machine_porion[0]), 2), "y": round(float(self.machine_porion[1]), 2)}
        if spacing is not None:
            mp.update(x_mm=round(float(self.machine_porion[0]) * spacing, 3),
                      y_mm=round(float(self.machine_porion[1]) * spacing, 3))
        out = {"machine_porion": mp, "convention": CONVENTION, "score": round(self.score, 4),
               "certain": self.certain,
               "rings": [{"x": round(float(g.x), 2), "y": round(float(g.y), 2), "radius": round(float(g.r), 2),
                          "outer_radius": round(float(max(g.outer, g.r)), 2), "score": round(float(g.score), 4)}
                         for g in self.rings]}
        if self.anatomical is not None:
            out["anatomical_porion"] = {"x": round(float(self.anatomical[0]), 2),
                                        "y": round(float(self.anatomical[1]), 2)}
        return out


class _Crop:
    """The region ``box`` (mm around ``centre``) of ``gray`` resampled to ``step`` mm per pixel; maps crop pixels
    back to the image's."""

    def __init__(self, gray: np.ndarray, centre: Sequence[float], mm_per_px: float, step: float, box):
        s = step / mm_per_px                              # image px per crop px
        x0, y0, x1, y1 = box
        self.w, self.h, self.s, self.step = int(round((x1 - x0) / step)), int(round((y1 - y0) / step)), s, step
        self.ox = float(centre[0]) + x0 / mm_per_px       # image coordinates of crop pixel (0, 0)
        self.oy = float(centre[1]) + y0 / mm_per_px
        # only the region is blurred (against aliasing) and resampled
        pad = int(np.ceil(2 * s)) + 2
        ix0, iy0 = max(0, int(np.floor(self.ox)) - pad), max(0, int(np.floor(self.oy)) - pad)
        ix1 = min(gray.shape[1], int(np.ceil(self.ox + self.w * s)) + pad)
        iy1 = min(gray.shape[0], int(np.ceil(self.oy + self.h * s)) + pad)
        src = np.zeros((1, 1), np.float32) if ix1 <= ix0 or iy1 <= iy0 else gray[iy0:iy1, ix0:ix1].astype(np.float32)
        if s > 1.5:
            src = cv2.GaussianBlur(src, (0, 0), 0.4 * s)
        m = np.array([[s, 0, self.ox - ix0], [0, s, self.oy - iy0]], dtype=np.float64)
        self.img = cv2.warpAffine(src, m, (self.w, self.h), flags=cv2.WARP_INVERSE_MAP | cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_REPLICATE)
        # where the crop shows the image (not its replicated border), two pixels in from its edge: nothing beyond
        # an image's edge is evidence of a rim
        h, w = gray.shape[:2]
        cols = self.ox + np.arange(self.w) * s
        rows = self.oy + np.arange(self.h) * s
        in_x = (cols >= 0) & (cols <= w - 1)
        in_y = (rows >= 0) & (rows <= h - 1)
        in_x = np.convolve(in_x, np.ones(5), "same") >= 5
        in_y = np.convolve(in_y, np.ones(5), "same") >= 5
        self.valid = in_y[:, None] & in_x[None, :]

    def to_image(self, c: np.ndarray) -> np.ndarray:
        """(..., 3) circles (x, y, r) in crop pixels -> the image's."""
        return np.asarray(c, np.float64) * self.s + np.array([self.ox, self.oy, 0.0])


def _ridges(img: np.ndarray, step: float) -> np.ndarray:
    """(H, W) crop at ``step`` mm/px -> (3, H, W) the components R n n^T (xx, xy, yy) of the ridge strength R along
    its normal n, the strongest over :data:`RIDGE_MM`, each scale-normalised."""
    s = NORM_MM / step
    d = img - cv2.GaussianBlur(img, (0, 0), s)
    sd = np.sqrt(cv2.GaussianBlur(d * d, (0, 0), s))
    n = d / np.maximum(sd, max(0.5 * float(_median(sd)), NOISE_FLOOR))
    best = angle = None
    for width in RIDGE_MM:
        sigma = width / step
        g = cv2.GaussianBlur(n, (0, 0), sigma)
        dxx = cv2.Sobel(g, cv2.CV_32F, 2, 0, ksize=3)
        dyy = cv2.Sobel(g, cv2.CV_32F, 0, 2, ksize=3)
        dxy = cv2.Sobel(g, cv2.CV_32F, 1, 1, ksize=3)
        gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3) / 8
        gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3) / 8
        tr, root = dxx + dyy, np.sqrt((dxx - dyy) ** 2 + 4 * dxy ** 2)
        lmin, lmax = (tr - root) / 2, (tr + root) / 2
        # scale-normalised, so that a bar as wide as the scale answers alike at every scale
        r = np.maximum((-lmin / 4 - np.abs(lmax) / 4) * sigma ** 2 - EDGE_WEIGHT * np.sqrt(gx * gx + gy * gy) * sigma, 0)
        ang = 0.5 * np.arctan2(2 * dxy, dxx - dyy)          # the direction of lmax; the normal is across it
        if best is None:
            best, angle = r, ang
        else:
            take = r > best
            np.copyto(best, r, where=take)
            np.copyto(angle, ang, where=take)
    nx, ny = np.sin(angle), np.cos(angle)
    np.negative(nx, out=nx)
    out = np.empty((3,) + best.shape, np.float32)
    for o, (p, q) in zip(out, ((nx, nx), (nx, ny), (ny, ny))):
        np.multiply(best, p, out=o)
        o *= q
    return out


def _median(x: np.ndarray) -> float:
    """``np.median`` of a float32 array, several times faster (no NaN check: the ridge filter makes none)."""
    v = x.ravel()
    k = v.size // 2
    if v.size % 2:
        return float(np.partition(v, k)[k])
    p = np.partition(v, (k - 1, k))
    return float((p[k - 1] + p[k]) / 2)


_BANDS = np.array([-1.0, 0.0, 1.0])
_W = np.stack([_CA * _CA, 2 * _CA * _SA, _SA * _SA]).astype(np.float32)     # (3, S): n^T A n's weights


def _profiles(a, circles: np.ndarray) -> np.ndarray:
    """(N, 3) circles (x, y, r; crop px) -> (N, SECTORS) the ridge across each circle per sector (the best of three
    radii a pixel apart; nothing beyond the crop). ``a``: the ridge tensor as (3, H, W)."""
    h, w = a.shape[1:]
    c = np.asarray(circles, np.float64).reshape(-1, 3)
    rr = c[:, 2:3, None] + _BANDS[None, :, None]                      # (N, 3, 1)
    xf = np.rint(c[:, :1, None] + rr * _CA).astype(np.intp)           # (N, 3, S)
    yf = np.rint(c[:, 1:2, None] + rr * _SA).astype(np.intp)
    flat = yf * w
    flat += xf
    axx, axy, ayy = a.reshape(3, -1)
    inside = None
    if xf.min() < 0 or yf.min() < 0 or xf.max() >= w or yf.max() >= h:    # rare: a circle leaves the crop
        inside = (xf >= 0) & (xf < w) & (yf >= 0) & (yf < h)
        flat = np.where(inside, flat, 0)
    v = np.take(axx, flat)
    v *= _W[0]
    t = np.take(axy, flat)
    t *= _W[1]
    v += t
    np.take(ayy, flat, out=t)
    t *= _W[2]
    v += t
    if inside is not None:
        v *= inside
    return np.add.reduce(v.max(axis=1).reshape(len(c), SECTORS, PER_SECTOR), axis=2) / PER_SECTOR


def _quantile(values: np.ndarray, use: Optional[np.ndarray] = None) -> np.ndarray:
    """(N, S) -> (N,) the :data:`QUANTILE` of each row over its ``use`` entries (all by default; 0 where fewer
    than half are used)."""
    if use is None:
        k = int(QUANTILE * (values.shape[1] - 1))
        return np.partition(values, k, axis=1)[:, k]
    n = use.sum(axis=1)
    srt = np.sort(np.where(use, values, np.inf), axis=1)
    k = np.maximum(np.floor(QUANTILE * (n - 1)).astype(np.intp), 0)     # n <= S: never past the row's end
    out = np.take_along_axis(srt, k[:, None], axis=1)[:, 0]
    return np.where(n >= values.shape[1] // 2, out, 0.0)


def _completeness(a, circles: np.ndarray) -> np.ndarray:
    """(N, 3) circles -> (N,) how much of each circle shows a rim: a low quantile of its per-sector ridge."""
    return _quantile(_profiles(a, circles))


def _clear_of(circles: np.ndarray, other: np.ndarray, width: float) -> np.ndarray:
    """(N, SECTORS) bool: the sectors of each circle that run clear of circle ``other`` (x, y, r)."""
    c = np.asarray(circles, np.float64).reshape(-1, 3)
    px = c[:, :1] + c[:, 2:] * _CA
    py = c[:, 1:2] + c[:, 2:] * _SA
    far = np.abs(np.hypot(px - other[0], py - other[1]) - other[2]) > width
    return far.reshape(len(c), SECTORS, PER_SECTOR).mean(axis=2) > 0.5


def _refine(a, circles: np.ndarray, score, steps=(1.0, 0.5, 0.25), rounds: int = 2, scored: bool = True):
    """Hill-climb of ``score(a, (N, 3)) -> (N,)`` over each circle's centre and radius, all circles at once:
    (N, 3) circles and, when ``scored``, their (N,) scores."""
    c = np.asarray(circles, np.float64).reshape(-1, 3)
    for step in steps:
        for _ in range(rounds):
            trial = (c[:, None, :] + step * _MOVES[None]).reshape(-1, 3)
            s = score(a, trial).reshape(len(c), len(_MOVES))
            c = trial.reshape(len(c), len(_MOVES), 3)[np.arange(len(c)), s.argmax(axis=1)]
    return (c, score(a, c)) if scored else c


def _hough(a, radii: np.ndarray, box: Tuple[int, int, int, int]) -> np.ndarray:
    """(len(radii), y1 - y0, x1 - x0) votes for the centres in ``box`` (x0, y0, x1, y1; crop px, end exclusive):
    each ridge pixel votes for the centres ``r`` away along its normal, both ways."""
    x0, y0, x1, y1 = box
    h, w = y1 - y0, x1 - x0
    flat = a.reshape(3, -1)
    strength = flat[0] + flat[2]
    at = np.flatnonzero(strength > _percentile90(strength))
    ys, xs = np.divmod(at, a.shape[2])
    wgt = strength[at]
    part = flat[:, at]
    nx = np.sqrt(np.maximum(part[0], 0) / np.maximum(wgt, 1e-12))      # the normal from the tensor's parts
    ny = np.sign(part[1]) * np.sqrt(np.maximum(part[2], 0) / np.maximum(wgt, 1e-12))
    sr = np.array([1.0, -1.0])[None, :, None] * radii[:, None, None]    # (R, 2, 1): both ways, every radius
    cx = np.rint(xs + sr * nx).astype(np.intp) - x0
    cy = np.rint(ys + sr * ny).astype(np.intp) - y0
    size = len(radii) * h * w
    idx = np.arange(0, size, h * w)[:, None, None] + cy * w + cx
    # votes outside the box go to one extra bin, dropped: the others are summed in the same order as before
    idx[(cx.view(np.uintp) >= w) | (cy.view(np.uintp) >= h)] = size     # as unsigned, a negative is past the end
    acc = np.bincount(idx.ravel(), weights=np.broadcast_to(wgt, idx.shape).ravel(), minlength=size + 1)[:size]
    acc = (acc.reshape(len(radii), h, w) / radii[:, None, None]).astype(np.float32)
    return np.stack([cv2.GaussianBlur(m, (0, 0), 1.0) for m in acc])


def _percentile90(x: np.ndarray):
    """``np.percentile(x, 90)`` of a 1-D float32 array, as numpy's linear method computes it, by a partition."""
    at = 0.9 * (x.size - 1)
    lo = int(np.floor(at))
    hi = min(lo + 1, x.size - 1)
    p = np.partition(x, (lo, hi))
    a, b, t = p[lo], p[hi], at - lo
    return b - (b - a) * (1 - t) if t >= 0.5 else a + (b - a) * t


_VOTE_MARGIN = 6        # px around the allowed centres voted into: the blur's reach (3) and the peaks' (2), exact
_KERNEL = np.ones((5, 5), np.uint8)


def _seeds(a, radii: np.ndarray, allowed: Tuple[int, int, int, int], per_band: int = 3, band: int = 3) -> np.ndarray:
    """(M, 3) circles at the vote's strongest local maxima, ``per_band`` in each band of ``band`` radii (a strong
    small circle cannot hide a large one centred near it), centres in ``allowed`` (x0, y0, x1, y1; crop px, end
    inclusive)."""
    h, w = a.shape[1:]
    x0, y0, x1, y1 = allowed
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w - 1, x1), min(h - 1, y1)
    if x1 < x0 or y1 < y0:
        return np.zeros((0, 3))
    bx0, by0 = max(0, x0 - _VOTE_MARGIN), max(0, y0 - _VOTE_MARGIN)
    bx1, by1 = min(w, x1 + 1 + _VOTE_MARGIN), min(h, y1 + 1 + _VOTE_MARGIN)
    acc = _hough(a, radii, (bx0, by0, bx1, by1))
    starts = np.arange(0, len(radii), band)
    # (B, band, h, w): the radii in bands, the last filled with planes that never win
    bands = np.concatenate([acc, np.full((len(starts) * band - len(radii),) + acc.shape[1:], -np.inf, acc.dtype)])
    bands = bands.reshape(len(starts), band, *acc.shape[1:])
    best = bands.max(axis=1)                                            # (B, h, w) the strongest radius per band
    peak = best > 0
    peak[:, :y0 - by0] = peak[:, y1 + 1 - by0:] = False
    peak[:, :, :x0 - bx0] = peak[:, :, x1 + 1 - bx0:] = False
    for b in range(len(starts)):
        peak[b] &= best[b] >= cv2.dilate(best[b], _KERNEL)
    bs, ys, xs = np.nonzero(peak)
    vals = best[bs, ys, xs]
    ends = np.searchsorted(bs, np.arange(len(starts) + 1))
    top = np.concatenate([lo + np.argsort(-vals[lo:hi])[:per_band] for lo, hi in zip(ends[:-1], ends[1:])])
    bs, ys, xs, vals = bs[top], ys[top], xs[top], vals[top]
    arg = bands[bs, :, ys, xs].argmax(axis=1)                          # the radius within the band: its first best
    order = np.argsort(-vals, kind="stable")[:MAX_SEEDS]
    return np.stack([xs[order] + bx0, ys[order] + by0, radii[(starts[bs] + arg)[order]]], axis=1).astype(np.float64)


def _second_ring(a, first: np.ndarray, step: float) -> Tuple[Optional[np.ndarray], float]:
    """The other rod's ring beside ``first`` (x, y, r; crop px at ``step`` mm/px) and its completeness where it
    runs clear of the first: seeds on a grid of the places and sizes a second rod takes, the best refined."""
    fx, fy, fr = first
    offs = np.arange(-PAIR_APART_MM[1], PAIR_APART_MM[1] + 1e-6, 1.5) / step
    dys = np.array([-1.5, 0.0, 1.5]) / step
    shape = (len(offs), len(dys), 2)
    grid = np.stack([np.broadcast_to(fx + offs[:, None, None], shape), np.broadcast_to(fy + dys[None, :, None], shape),
                     np.broadcast_to(fr * np.array([1 / 1.12, 1.12]), shape)], axis=-1).reshape(-1, 3)
    d = np.hypot(grid[:, 0] - fx, grid[:, 1] - fy) * step
    grid = grid[(d >= PAIR_APART_MM[0]) & (d <= PAIR_APART_MM[1])]
    width = 0.6 / step

    def beside(b, c):
        return _quantile(_profiles(b, c), _clear_of(c, first, width))

    s = beside(a, grid)
    best = grid[np.argsort(-s)[:3]]
    cand, score = _refine(a, best, beside, rounds=1)
    d = np.hypot(cand[:, 0] - fx, cand[:, 1] - fy) * step
    ratio = np.maximum(cand[:, 2], fr) / np.minimum(cand[:, 2], fr)
    ok = ((d >= PAIR_APART_MM[0]) & (d <= PAIR_APART_MM[1]) & (ratio >= PAIR_RADIUS_RATIO[0])
          & (ratio <= PAIR_RADIUS_RATIO[1]))
    if not ok.any():
        return None, 0.0
    i = int(np.argmax(np.where(ok, score, -np.inf)))
    return cand[i], float(score[i])


_RANDOM = np.random.default_rng(0).random((64, 3))       # fixed: the same baseline for the same crop


def _baseline(a, step: float) -> float:
    """The completeness a circle gets anywhere in this crop (the median over fixed random circles): what a ring
    must exceed, so that noise or a busy texture, on which every circle finds some ridge, is no ring."""
    h, w = a.shape[1:]
    lo, hi = RADIUS_MM[0] / step, RADIUS_MM[1] / step
    c = _RANDOM * np.array([w, h, hi - lo]) + np.array([0.0, 0.0, lo])
    return float(np.median(_completeness(a, c)))


def _coarse(gray: np.ndarray, porion: Sequence[float], mm_per_px: float, n: int = 1):
    """The coarse search: (its crop, ridge tensor, (M, 3) refined circles, (M,) their completeness beyond the crop's
    own level, that level), the most complete first."""
    crop = _Crop(gray, porion, mm_per_px, COARSE_MM, BOX_MM)
    a = _ridges(crop.img, COARSE_MM) * crop.valid
    radii = np.arange(RADIUS_MM[0], RADIUS_MM[1] + 1e-6, 0.5) / COARSE_MM
    allowed = ((np.array(CENTRE_MM) - np.array(BOX_MM[:2] * 2)) / COARSE_MM).round().astype(int)
    seeds = _seeds(a, radii, tuple(allowed))
    if not len(seeds):
        return crop, a, np.zeros((0, 3)), np.zeros(0), 0.0
    circles, score = _refine(a, seeds, _completeness, steps=(1.0, 0.5), rounds=1)
    order = np.argsort(-score)
    base = _baseline(a, COARSE_MM)
    return crop, a, circles[order], score[order] - base, base


def ring_candidates(gray: np.ndarray, porion: Sequence[float], mm_per_px: float, n: int = 8) -> List[Ring]:
    """Up to ``n`` distinct circles around ``porion`` (x, y, pixels of ``gray``), the most complete first, in
    ``gray``'s pixels; ``mm_per_px``: its scale. For labelling and studies; :func:`find_rings` decides."""
    crop, _, circles, score, _ = _coarse(gray, porion, mm_per_px)
    out: List[np.ndarray] = []
    for c, s in zip(circles, score):
        if all(np.hypot(*(c[:2] - o[:2])) > 1.5 or abs(c[2] - o[2]) > 1.5 for o, _ in out):
            out.append((c, s))
    return [Ring(*crop.to_image(c), score=float(s)) for c, s in out[:n]]


def find_rings(gray: np.ndarray, porion: Sequence[float], mm_per_px: float) -> Optional[EarRods]:
    """The ear rods around ``porion`` (x, y: the anatomical porion, pixels of ``gray``) in ``gray`` at
    ``mm_per_px``; None when no ring is complete enough (:data:`MIN_SCORE`)."""
    crop, a, circles, score, base = _coarse(gray, porion, mm_per_px)
    if not len(circles) or score[0] < MIN_SCORE:
        return None
    first = circles[0]
    second, s2 = _second_ring(a, first, COARSE_MM)
    s2 -= base                  # beyond the crop's own level, as the first
    found = [first] + ([second] if second is not None and s2 >= PAIR_SHARE * score[0] else [])
    found_scores = [float(score[0])] + ([s2] if len(found) == 2 else [])
    # centres and radii to a quarter of the crop's pixel (a finer crop placed them no better on the labelled rings)
    start = np.array(found)
    circles = _refine(a, start[:1], _completeness, steps=FINE_STEPS, rounds=1, scored=False)
    if len(start) == 2:         # the second ring, as above, judged where it runs clear of the first
        width = 0.6 / COARSE_MM

        def beside(b, c):
            return _quantile(_profiles(b, c), _clear_of(c, circles[0], width))

        circles = np.vstack([circles, _refine(a, start[1:], beside, steps=FINE_STEPS, rounds=1, scored=False)])
    rings = []
    for c, s in zip(circles, found_scores):     # each rim's outer edge on the image itself, at its own resolution
        x, y, r = crop.to_image(c)
        rings.append(Ring(x, y, r, score=s, outer=outer_radius(gray, x, y, r, RIM_REACH_MM / mm_per_px)))
    return EarRods(tuple(rings), np.mean([g.top for g in rings], axis=0), float(min(g.score for g in rings)))


def outer_radius(img: np.ndarray, x: float, y: float, r: float, reach: float) -> float:
    """The radius of a ring's outer edge: from the rim's middle ``r``, outwards to where the rim's median
    brightness over the circle has fallen halfway to that of its surroundings (``reach`` pixels out; ``img``
    any float or uint8 image, the ring in its pixels)."""
    steps = np.arange(0.0, reach + 1e-6, max(reach / 24, 0.25))
    th = np.linspace(0, 2 * np.pi, 180, endpoint=False)
    # only the ring's neighbourhood is read (and converted): the samples and their interpolation stay inside it
    h, w = img.shape[:2]
    far = r + steps[-1] + 2
    x0, y0 = min(max(int(np.floor(x - far)), 0), w - 1), min(max(int(np.floor(y - far)), 0), h - 1)
    x1, y1 = max(min(int(np.ceil(x + far)) + 1, w), x0 + 1), max(min(int(np.ceil(y + far)) + 1, h), y0 + 1)
    region = np.asarray(img[y0:y1, x0:x1], np.float32)
    xs = (x - x0 + (r + steps)[:, None] * np.cos(th)).astype(np.float32)
    ys = (y - y0 + (r + steps)[:, None] * np.sin(th)).astype(np.float32)
    prof = np.median(cv2.remap(region, xs, ys, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE), axis=1)
    head = max(2, len(prof) // 3)
    peak, at = float(prof[:head].max()), int(np.argmax(prof[:head]))
    base = float(prof[-3:].mean())
    if peak - base <= 1e-6:
        return r
    below = np.flatnonzero(prof[at:] <= base + 0.5 * (peak - base))
    return float(r + steps[at + below[0]]) if len(below) else r
