"""Repair, not only flag: a landmark the shape check finds implausible is read again where the other landmarks put it.

The shape model's Gaussian conditioning gives each implausible point a position and a spread predicted from the
others (:meth:`sdk.quality.ShapeModel.conditional_positions`); the local stage re-reads the landmark on a patch
centred there, with its decode prior widened to that spread. The new reading is kept only if the configuration
then passes the shape check at that point and the local stage found its landmark there (its heatmap peak); else
the first reading stays, flagged. Rounds repeat on what is still implausible, a few at most. Points that pass the
check are never moved, so one repaired gross error cannot move good points.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .preprocess import Letterbox

MAX_ROUNDS = 2
# Local heatmap peak (prior-weighted) below which a re-read found no landmark on its patch: chosen on the validation
# carve (lab/results/repair/).
MIN_PEAK = 0.15


@dataclass(frozen=True)
class ReadingFrame:
    """What a reading was made on: the gray image the local stage cut patches from, its letterbox and decode
    reduction, ``offset`` (2,) from that image's pixels to the given image's (a re-framed reading's crop), and the
    ``turn`` (degrees) and ``zoom`` its patches were cut at (:func:`sdk.local_stage.head_turn`,
    :meth:`sdk.local_stage.LocalStage.zoom`)."""

    gray: np.ndarray
    lb: Letterbox
    reduction: int
    offset: np.ndarray
    turn: float = 0.0
    zoom: float = 1.0


@dataclass(frozen=True)
class Repair:
    """(K, 2) points after repair, (K,) bool which were repaired, and for those the local stage's move from the
    predicted position (first-stage input px) and its heatmap peak (the flags' inputs)."""

    xy: np.ndarray
    repaired: np.ndarray
    shift: np.ndarray
    peak: np.ndarray


def repair_points(xy: np.ndarray, implausible: np.ndarray, local, frame: ReadingFrame, model,
                  limit: float, min_peak: float = MIN_PEAK) -> Repair:
    """Re-read the ``implausible`` (K,) points of ``xy`` (K, 2, given image's pixels) with ``local`` (a
    :class:`sdk.local_stage.LocalStage`) where ``model`` (a shape model with covariance) puts them."""
    xy = np.array(xy, dtype=np.float64)
    k = len(xy)
    fixed = np.zeros(k, bool)
    shift, peak = np.zeros(k), np.zeros(k)
    to_input = np.array([frame.lb.scale_x, frame.lb.scale_y])
    bad = np.flatnonzero(implausible)
    for _ in range(MAX_ROUNDS):
        if not len(bad):
            break
        pos, cov = model.conditional_positions(xy, bad)
        spread = np.sqrt(np.linalg.eigvalsh(cov)[:, -1]) * float(to_input.max())     # first-stage input px
        new, pk = local.locate_at(frame.gray, frame.lb, pos - frame.offset, bad, frame.reduction,
                                  prior_sd=float(spread.max()), turn=frame.turn, zoom=frame.zoom)
        new = new + frame.offset
        cand = xy.copy()
        cand[bad] = new
        ok = (model.conditional_z(cand)[bad] <= limit) & (pk >= min_peak)
        xy[bad[ok]] = new[ok]
        fixed[bad[ok]] = True
        shift[bad[ok]] = np.linalg.norm((new[ok] - pos[ok]) * to_input, axis=1)
        peak[bad[ok]] = pk[ok]
        if not ok.any():
            break
        z = model.conditional_z(xy)
        bad = np.flatnonzero((z > limit) & ~fixed)
    return Repair(xy, fixed, shift, peak)
