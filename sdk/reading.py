"""``Reading``: one image's reading as it passes through the Detector's steps (read, re-frame, settle the view,
assess, repair, spacing, site). Each step takes a Reading and returns a new one; nothing rides beside it."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

import numpy as np

from .repair import ReadingFrame
from .result import Landmarks


@dataclass(frozen=True)
class Evidence:
    """What the flags are computed from, per landmark (None where there is no local stage or no shape model).

    shift: (K,) the local stage's move from the first stage's point, first-stage input px. local_peak: (K,) the
    local stage's heatmap peak. shape_z: (K,) the conditional shape distance (:mod:`sdk.quality`), once assessed.
    """

    shift: Optional[np.ndarray] = None
    local_peak: Optional[np.ndarray] = None
    shape_z: Optional[np.ndarray] = None


@dataclass(frozen=True)
class Reading:
    """``result``: the Landmarks so far, in the given image's pixels. ``frame``: what the local stage read them on
    (the image, its letterbox and decode reduction, and the offset of a re-framed crop: :class:`sdk.repair.
    ReadingFrame`). ``evidence``: per landmark, what the flags are computed from."""

    result: Landmarks
    frame: ReadingFrame
    evidence: Evidence = Evidence()

    def with_result(self, **changes) -> "Reading":
        """This reading with fields of its result changed."""
        return replace(self, result=replace(self.result, **changes))
