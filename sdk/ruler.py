"""Reading the cephalostat's ruler: where its comb of ticks is, their pitch in pixels, and P1/P2.

Every cephalostat carries a scale on its nasion rod, a comb of evenly spaced ticks that the image shows. Given the
ticks' physical pitch (stated once per machine), the pitch in pixels gives the image's spacing at the ruler, near
the mid-sagittal plane. The search is classical and runs only when asked for:

1. The image is reduced to about :data:`SEARCH_SIDE` pixels on its long side and averaged over narrow bands
   (columns for an upright ruler, rows for a lying one), less its slow trend.
2. Along each band, windows of :data:`WINDOW` pixels are Fourier transformed; a comb shows as one sharp peak
   (its pitch) far above the window's other frequencies, and harmonics at its multiples.
   Upright combs (a nasion rod's) are searched first; the lying orientation only when no upright comb is read.
3. The strongest window is read again at full resolution: its ticks (the notches of the profile across the band)
   are located to sub-pixel precision, and a line fitted through their positions gives the pitch, its standard
   error, and P1/P2 (the first and last tick found).

A second comb of the same pitch far from the first (another scale, on the back of the head) is reported.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Optional, Tuple

import cv2
import numpy as np

SEARCH_SIDE = 1024              # long side of the image the search runs on
WINDOW = 64                     # search window along a band (search pixels)
STRIDE = 16                     # (WINDOW a multiple of it)
PAD = 4                         # zero-padding of the window's Fourier transform
BAND = 4                        # search pixels averaged across a band
PITCH_RANGE = (3.0, 16.0)       # tick pitch looked for, search pixels (a comb of 4-20 ticks per window)
MIN_PEAK = 0.7                  # share of a window's power near its peak frequency below which no comb is seen
HARMONICS = 4                   # multiples of the peak frequency whose power counts as the comb's
MIN_TICKS = 5                   # ticks a reading needs
MIN_TICKS_LYING = 8
MIN_TICKS_FAINT = 8             # a faint comb must be long: bone repeats too (vertebrae, five or six times)
MAX_REL_SE = 0.01               # pitch standard error, relative, above which the pitch is too uncertain to use
RUN_TOLERANCE = 0.1             # a tick spacing this far from the median ends the run of ticks
ENERGY_SHARE = 0.03             # the share of windows, by detail energy, that are Fourier transformed
FAINT_SHARE = 0.1               # ... again when none gave a ruler: a faint comb beside brighter bone (2 of 400)
TRIES = 5                       # candidates read at full resolution before giving up
FINE_ENOUGH = 0.75              # share of the finer scale's longest pitch below which the coarser is not searched
SECOND_APART = 0.25             # a second comb lies this far (share of the long side) from the first

_HANN = np.hanning(WINDOW).astype(np.float32)
_FREQS = np.fft.rfftfreq(PAD * WINDOW)
_ONES = np.ones(STRIDE, np.float32)


@dataclass(frozen=True)
class Ruler:
    """A read ruler: ``pitch_px`` and its standard error ``pitch_se_px`` (image pixels), ``p1``/``p2`` (2,) the
    first and last tick used (image pixels), ``ticks`` how many, ``upright`` its orientation, ``second_scale``
    another comb of the same pitch elsewhere in the image."""

    pitch_px: float
    pitch_se_px: float
    p1: np.ndarray
    p2: np.ndarray
    ticks: int
    upright: bool
    second_scale: bool = False

    @property
    def certain(self) -> bool:
        # a lying comb must be longer: lines of burned-in text are lying, regular, and a few characters long
        return (self.ticks >= (MIN_TICKS if self.upright else MIN_TICKS_LYING)
                and self.pitch_se_px <= MAX_REL_SE * self.pitch_px)

    def to_dict(self) -> dict:
        return {"pitch_px": round(self.pitch_px, 4), "pitch_se_px": round(self.pitch_se_px, 4),
                "p1": [round(float(v), 2) for v in self.p1], "p2": [round(float(v), 2) for v in self.p2],
                "ticks": self.ticks, "second_scale": self.second_scale}


def _search_image(gray: np.ndarray, s: float) -> np.ndarray:
    """``gray`` at scale ``s``: first by the largest whole factor that keeps it at least that size (OpenCV's area
    resize is fast for whole factors), then the rest (a factor over 0.5) linearly."""
    h, w = gray.shape
    size = (max(8, int(w * s)), max(8, int(h * s)))
    f = int(1 / s) if s < 1 else 1
    if f > 1:
        gray = cv2.resize(gray[:h // f * f, :w // f * f], (w // f, h // f), interpolation=cv2.INTER_AREA)
    return gray if gray.shape[::-1] == size else cv2.resize(gray, size, interpolation=cv2.INTER_LINEAR)


def _band_grid(small: np.ndarray, upright: bool) -> np.ndarray:
    """(bands, length) float32: the search image ``small`` averaged over bands :data:`BAND` pixels wide across the
    ruler's direction. (An area resize straight to this grid would save the search image but smooths the thin
    ticks of a millimetre scale more along the band: fewer of them were found.)"""
    img = cv2.transpose(small) if upright else small       # the bands' pixels as rows: summed in whole rows
    nb = img.shape[0] // BAND
    return img[:nb * BAND].reshape(nb, BAND, -1).sum(axis=1, dtype=np.float32) * np.float32(1 / BAND)


def _halved(grid: np.ndarray) -> np.ndarray:
    """The band grid of half the scale (bands twice as wide in search pixels of the half scale: still BAND)."""
    return cv2.resize(grid, (max(8, grid.shape[1] // 2), max(1, grid.shape[0] // 2)), interpolation=cv2.INTER_AREA)


def _detrended(grid: np.ndarray) -> np.ndarray:
    """The grid less its slow trend (two box blurs about the longest pitch wide, along and across the bands; a
    Gaussian that size costs ten times more): what is left of a comb is a wave along its band."""
    k = int(2 * PITCH_RANGE[1]) | 1
    size = (k, max(1, k // BAND) | 1)
    return grid - cv2.blur(cv2.blur(grid, size), size)


def _candidates(bands: np.ndarray, share: float = ENERGY_SHARE):
    """Per (band, window): the share of the window's power in its peak frequency and the pitch there, for the
    detrended ``bands`` of one orientation (:func:`_bands`)."""
    nb, h = bands.shape
    starts = np.arange(0, h - WINDOW + 1, STRIDE)
    if not len(starts) or not nb:
        return None
    # a comb is a strong, sharp wave: only the windows with the most energy, or the most energy in its steps
    # along the band, are Fourier transformed (a millimetre scale's thin ticks carry little energy beside a bone's
    # broad edge, but their steps are as sharp as any)
    keep = np.zeros((nb, len(starts)), bool)
    per = WINDOW // STRIDE                        # a window is this many stride-long chunks
    n = (len(starts) + per - 1) * STRIDE
    m = min(n, h - 1)                             # the steps along the band (the last one 0)
    steps = np.zeros((nb, n), np.float32)
    np.subtract(bands[:, 1:m + 1], bands[:, :m], out=steps[:, :m])
    for wave in (bands[:, :n], steps):
        chunks = (np.square(wave).reshape(-1, STRIDE) @ _ONES).reshape(nb, -1)   # a product: numpy sums short rows slowly
        energy = sum(chunks[:, i:i + len(starts)] for i in range(per)).ravel()
        # the top share by energy (np.quantile's set, by a partial sort)
        kth = int(np.ceil((energy.size - 1) * (1.0 - share)))
        keep |= (energy >= np.partition(energy, kth)[kth]).reshape(keep.shape)
    bi, wi = np.nonzero(keep)
    win = bands[bi[:, None], starts[wi][:, None] + np.arange(WINDOW)]
    win -= win.mean(axis=1, keepdims=True)
    spec = _power(win * _HANN)
    ok = np.flatnonzero((_FREQS >= 1 / PITCH_RANGE[1]) & (_FREQS <= 1 / PITCH_RANGE[0]))
    k = ok[spec[:, ok].argmax(axis=1)]
    # a comb puts its power in one frequency and its harmonics (thin ticks, a millimetre scale's, are pulses: rich
    # in harmonics); a bone edge or noise spreads it: the share of the power within one of the window's own
    # frequency steps of the peak and of its multiples
    top = spec.shape[1] - 1
    # each frequency's power summed with its neighbours' within one of the window's own steps (zeros past the end)
    boxed = cv2.boxFilter(np.pad(spec, ((0, 0), (0, PAD))), -1, (2 * PAD + 1, 1), normalize=False,
                          borderType=cv2.BORDER_CONSTANT)
    near = np.zeros(len(k), np.float32)
    for h in range(1, HARMONICS + 1):
        c = h * k
        near += np.where(c <= top + PAD, boxed[np.arange(len(k)), np.minimum(c, top + PAD)], 0.0)
    share = near / (spec[:, PAD + 1:].sum(axis=1) + 1e-9)
    inner = (k > ok[0]) & (k < ok[-1])                 # a peak at the range's edge is a trend, not a comb
    ratio = np.zeros(keep.shape)
    pitch = np.ones(keep.shape)
    ratio[bi, wi] = np.where(inner, share, 0.0)
    pitch[bi, wi] = 1.0 / _FREQS[k]
    return ratio, pitch, starts


def _power(win: np.ndarray) -> np.ndarray:
    """(n, WINDOW) float32 windows -> (n, PAD * WINDOW / 2 + 1) their power spectra, zero-padded so that a pitch
    between two of the window's frequencies is not split between them. OpenCV's real transform of rows (its packed
    output: re0, re1, im1, ..., re(n/2)) takes half the time of numpy's."""
    n, m = len(win), PAD * WINDOW
    padded = np.zeros((n, m), np.float32)
    padded[:, :WINDOW] = win
    d = cv2.dft(padded, flags=cv2.DFT_ROWS)
    spec = np.empty((n, m // 2 + 1), np.float32)
    spec[:, 0], spec[:, -1] = np.square(d[:, 0]), np.square(d[:, -1])
    re, im = d[:, 1:-1:2], d[:, 2:-1:2]
    spec[:, 1:-1] = np.square(re) + np.square(im)
    return spec


def _ticks(gray: np.ndarray, centre: Tuple[float, float], along: float, span: float, pitch: float,
           upright: bool) -> Optional[Tuple[np.ndarray, float]]:
    """Tick positions (along the ruler, image pixels) and the band's centre across it: the profile along a band
    of half-width ``span`` around ``centre`` (the band among a few beside it whose wave at ``pitch`` is strongest),
    its extremes at least 0.6 pitch apart, each to sub-pixel by a parabola."""
    img = gray if upright else gray.T
    cx, cy = (centre[0], centre[1]) if upright else (centre[1], centre[0])
    h, w = img.shape
    y0, y1 = int(max(0, cy - along)), int(min(h, cy + along))
    if y1 - y0 < 4 * pitch:
        return None
    # the comb's teeth may lie beside the band found: five bands side by side, the one whose wave is strongest
    bands = [(int(max(0, cx + d - span)), int(min(w, cx + d + span + 1))) for d in np.arange(-2, 3) * span]
    bands = [(x0, x1) for x0, x1 in bands if x1 > x0]
    if not bands:
        return None
    lo, hi = bands[0][0], bands[-1][1]
    cols = np.zeros((y1 - y0, hi - lo + 1), np.float32)        # column sums, cumulated: each band's mean at once
    np.cumsum(img[y0:y1, lo:hi], axis=1, dtype=np.float32, out=cols[:, 1:])
    prof = np.stack([(cols[:, x1 - lo] - cols[:, x0 - lo]) / (x1 - x0) for x0, x1 in bands], axis=1)
    waves = (_blur_along(prof, max(0.5, pitch / 8)) - _blur_along(prof, pitch)).T
    power = np.abs(waves @ np.exp(-2j * np.pi * np.arange(waves.shape[1]) / pitch))
    b = int(np.argmax(power))
    wave, across = waves[b], (bands[b][0] + bands[b][1] - 1) / 2
    # a tick: a local extreme of the wave, the sign whose extremes are sharper (notches dark or bright)
    sign = 1.0 if np.percentile(wave, 95) > -np.percentile(wave, 5) else -1.0
    v = sign * wave
    m = np.flatnonzero((v[1:-1] > v[:-2]) & (v[1:-1] >= v[2:])) + 1
    if len(m) < MIN_TICKS:
        return None
    # ticks stand out from the wave's small wiggles; a step at the comb's end stands out more, so the bar is set
    # by the typical strong extreme rather than the strongest
    m = m[v[m] > 0.4 * np.percentile(v[m], 75)]
    kept: list = []
    for i in m[np.argsort(v[m])[::-1]]:                  # strongest first, none within 0.6 pitch of another
        if all(abs(i - j) >= 0.6 * pitch for j in kept):
            kept.append(i)
    if len(kept) < MIN_TICKS:
        return None
    i = np.sort(np.array(kept))
    g0, g1, g2 = v[i - 1], v[i], v[i + 1]
    den = g0 - 2 * g1 + g2
    pos = i + 0.5 * (g0 - g2) / np.where(np.abs(den) > 1e-9, den, -1e-9)
    return pos + y0, float(across)


def _blur_along(a: np.ndarray, sigma: float) -> np.ndarray:
    """A Gaussian blur of each column of ``a`` (down its rows) alone."""
    return cv2.GaussianBlur(a, (1, int(round(sigma * 8 + 1)) | 1), 0, sigmaY=sigma)


def _fit(pos: np.ndarray, pitch: float) -> Optional[Tuple[float, float, np.ndarray]]:
    """Tick positions -> (pitch, its standard error, the ticks used): the longest run of consecutive ticks whose
    spacings stay within :data:`RUN_TOLERANCE` of the median spacing (a comb's ends and the rod beside it are not
    ticks), and a line through them."""
    if len(pos) < MIN_TICKS:
        return None
    d = np.diff(pos)
    step = float(np.median(d))
    if not 0.5 * pitch < step < 1.5 * pitch:
        return None
    good = np.abs(d - step) <= RUN_TOLERANCE * step
    best, start = (0, 0), None
    for i, g in enumerate(np.append(good, False)):
        if g and start is None:
            start = i
        elif not g and start is not None:
            best = max(best, (i - start, start))
            start = None
    n, first = best
    p = pos[first:first + n + 1]
    if len(p) < MIN_TICKS:
        return None
    idx = np.arange(len(p), dtype=np.float64)
    a = np.c_[np.ones(len(p)), idx]
    coef = np.linalg.lstsq(a, p, rcond=None)[0]
    resid = p - a @ coef
    s2 = float(resid @ resid) / max(1, len(p) - 2)
    se = float(np.sqrt(s2 / np.sum((idx - idx.mean()) ** 2)))
    return float(coef[1]), se, p


class _Cands(NamedTuple):
    """Comb candidates, best first: score (n,), centre (n, 2) image px, pitch (n,) image px, search px per image px
    along the ruler (n,)."""

    score: np.ndarray
    centre: np.ndarray
    pitch: np.ndarray
    scale: np.ndarray

    def __add__(self, other: "_Cands") -> "_Cands":      # merged, best first (ties: this one's first)
        both = [np.concatenate([a, b]) for a, b in zip(self, other)]
        order = np.argsort(-both[0], kind="stable")
        return _Cands(*(v[order] for v in both))


def _search(grid: np.ndarray, sy: float, sx: float, upright: bool, share: float = ENERGY_SHARE) -> _Cands:
    """The comb candidates of a band grid (:func:`_band_grid`) in one orientation, its search image at ``sy`` /
    ``sx`` search px per image px down / across, best first, one per place."""
    c = _candidates(_detrended(grid), share)
    if c is None:
        return _Cands(np.zeros(0), np.zeros((0, 2)), np.zeros(0), np.zeros(0))
    along_s, across_s = (sy, sx) if upright else (sx, sy)
    ratio, pitch, starts = c
    b, wi = np.nonzero(ratio >= MIN_PEAK)
    score = ratio[b, wi]
    along, across = (starts[wi] + WINDOW / 2) / along_s, (b * BAND + BAND / 2) / across_s
    centre = np.stack([across, along] if upright else [along, across], axis=1)
    order = np.argsort(-score, kind="stable")
    return _Cands(score[order], centre[order], pitch[b, wi][order] / along_s, np.full(len(b), along_s))


def _read(gray: np.ndarray, cands: _Cands, i: int, upright: bool) -> Optional[Ruler]:
    """The ruler at candidate ``i``, read at full resolution (None when no run of ticks is found); the other
    candidates tell whether a second comb of the same pitch lies elsewhere."""
    s = float(cands.scale[i])
    h, w = gray.shape
    found = _ticks(gray, tuple(cands.centre[i]), 1.5 * WINDOW / s, BAND / s, float(cands.pitch[i]), upright)
    fit = None if found is None else _fit(found[0], float(cands.pitch[i]))
    if fit is None:
        return None
    p_px, se, p = fit
    ends = np.array([p[0], p[-1]])
    pts = np.stack([np.full(2, found[1]), ends], 1) if upright else np.stack([ends, np.full(2, found[1])], 1)
    mid = pts.mean(axis=0)
    second = np.any((np.abs(cands.pitch - p_px) < 0.1 * p_px)
                    & (np.hypot(*(cands.centre - mid).T) > SECOND_APART * max(h, w)))
    return Ruler(p_px, se, pts[0], pts[1], len(p), upright, bool(second))


def read_ruler(gray: np.ndarray) -> Optional[Ruler]:
    """The image's ruler (a comb of ticks), or None when none is seen or its pitch is not certain enough. Searched
    at two scales (pitches of 3-16 and 6-32 pixels at :data:`SEARCH_SIDE`); upright combs (a nasion rod's) are
    searched and read first, lying ones only when no upright one is certain. When nothing is read among the
    windows with the most detail, the upright search is repeated over more of them (:data:`FAINT_SHARE`): slower,
    and only for an image whose ruler is faint or absent."""
    h, w = gray.shape
    small = _search_image(gray, min(1.0, SEARCH_SIDE / max(h, w)))
    grids = {}
    for share, ticks, sides in ((ENERGY_SHARE, MIN_TICKS, (True, False)), (FAINT_SHARE, MIN_TICKS_FAINT, (True,))):
        ruler = _read_at(gray, small, share, ticks, grids, sides)
        if ruler is not None:
            return ruler
    return None


def _read_at(gray: np.ndarray, small: np.ndarray, share: float, min_ticks: int, grids: dict,
             sides=(True, False)) -> Optional[Ruler]:
    """:func:`read_ruler` over the ``share`` of windows with the most detail, for a comb of at least ``min_ticks``
    in the orientations ``sides`` (True: upright; ``grids``: band grids by orientation, kept between calls)."""
    h, w = gray.shape
    sy, sx = small.shape[0] / h, small.shape[1] / w
    tries = TRIES
    for upright in sides:
        grid = grids[upright] = grids[upright] if upright in grids else _band_grid(small, upright)
        cands = _search(grid, sy, sx, upright, share)
        # the common case first: the finer scale's best comb, certain and well inside that scale's pitches, is
        # what the two scales together would read first; the coarser scale is searched only when it is not
        if len(cands.score) and cands.pitch[0] * cands.scale[0] <= FINE_ENOUGH * PITCH_RANGE[1]:
            ruler = _read(gray, cands, 0, upright)
            if ruler is not None and ruler.certain and ruler.ticks >= min_ticks:
                return ruler
        cands = cands + _search(_halved(grid), sy / 2, sx / 2, upright, share)
        for i in range(min(tries, len(cands.score))):
            tries -= 1
            ruler = _read(gray, cands, i, upright)
            if ruler is not None and ruler.certain and ruler.ticks >= min_ticks:
                return ruler
    return None
