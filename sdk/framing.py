"""Framing: where the anatomy sits in the image, against how the training images frame it.

A machine with a wider field (a whole-skull cassette) or a tighter one than the training images' shows the skull
smaller or larger in the model's letterboxed input. When the skull is smaller than the training images' by more
than a tolerance, the Detector reads the image once, then crops it (padding where the frame leaves the image) to
the training images' typical framing around that first reading's landmarks and reads it again, so that both
stages see the anatomy at the scale they were trained on. ``sdk/shapes/<schema>.framing.json`` holds the margins,
fitted on training labels (``scripts/fit_framing.py``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Optional, Tuple

import numpy as np

from .quality import SHAPES_DIR

MAX_ZOOM = 3.0


@dataclass(frozen=True)
class Framing:
    """The training images' frame around their landmarks, in units of the landmarks' extent: ``left`` = (first
    landmark x - image left edge) / extent width, and so on. ``tolerance``: re-frame when the anatomy in the model
    input is smaller than with the training framing by more than this fraction."""

    left: float
    right: float
    top: float
    bottom: float
    tolerance: float = 0.15
    source: str = ""

    def frame(self, xy: np.ndarray) -> Tuple[float, float, float, float]:
        """(K, 2) landmarks (pixels) -> (x0, y0, x1, y1): the frame a training image would have around them."""
        xy = np.asarray(xy, dtype=np.float64)
        (x0, y0), (x1, y1) = xy.min(axis=0), xy.max(axis=0)
        w, h = max(x1 - x0, 1.0), max(y1 - y0, 1.0)
        return (x0 - self.left * w, y0 - self.top * h, x1 + self.right * w, y1 + self.bottom * h)

    def scale_change(self, xy: np.ndarray, image_hw: Tuple[int, int], input_hw: Tuple[int, int]) -> float:
        """How much larger the anatomy would be in the model input with the training framing than as given
        (> 1: the image's field is wider than the training images')."""
        x0, y0, x1, y1 = self.frame(xy)
        now = min(input_hw[0] / image_hw[0], input_hw[1] / image_hw[1])
        framed = min(input_hw[0] / max(y1 - y0, 1.0), input_hw[1] / max(x1 - x0, 1.0))
        return framed / now

    def needs_reframe(self, xy: np.ndarray, image_hw: Tuple[int, int], input_hw: Tuple[int, int]) -> bool:
        """True when the field is wider than the training images' by more than the tolerance (the anatomy smaller
        in the model input). A tighter field is left as it is: the training's zoom augmentation (up to 1.3x)
        covers it, and padding a cut-off image to the training framing did worse on validation images. Nor when the
        anatomy would grow more than ``MAX_ZOOM`` times: landmarks that close together are a failed reading, not a
        small skull."""
        return 1.0 + self.tolerance < self.scale_change(xy, image_hw, input_hw) <= MAX_ZOOM

    def to_dict(self):
        return {"left": self.left, "right": self.right, "top": self.top, "bottom": self.bottom,
                "tolerance": self.tolerance, "source": self.source}


@lru_cache(maxsize=8)
def framing(schema_id: str) -> Optional[Framing]:
    """The bundled framing of a schema, or None (no re-framing)."""
    path = SHAPES_DIR / f"{schema_id}.framing.json"
    if not path.is_file():
        return None
    d = json.loads(path.read_text(encoding="utf-8"))
    return Framing(float(d["left"]), float(d["right"]), float(d["top"]), float(d["bottom"]),
                   float(d.get("tolerance", 0.15)), str(d.get("source", "")))


def crop_or_pad(gray: np.ndarray, box: Tuple[int, int, int, int], pad: int) -> np.ndarray:
    """``gray[y0:y1, x0:x1]``, with ``pad`` where the box leaves the image."""
    x0, y0, x1, y1 = box
    h, w = gray.shape[:2]
    out = np.full((y1 - y0, x1 - x0), pad, dtype=gray.dtype)
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = gray[sy0:sy1, sx0:sx1]
    return out
