"""The views a ``Detector`` may read an image in (mirrored, inverted, turned) and the exact way back to the given
image's pixels."""
from __future__ import annotations

from typing import Tuple

import numpy as np

VIEWS = ("mirrored", "inverted", "mirrored+inverted", "rotated90", "rotated270", "rotated180")


def _quarter_turns(view: str) -> int:
    """Counter-clockwise quarter turns of a view: 'rotated90' -> 1, 'rotated270' -> 3, any other view -> 0."""
    return int(view.removeprefix("rotated")) // 90 if view.startswith("rotated") else 0


def view_image(gray: np.ndarray, view: str) -> np.ndarray:
    """(H, W) image as the model reads it in ``view`` (mirrored, inverted, turned counter-clockwise)."""
    img = gray[:, ::-1] if view.startswith("mirrored") else gray
    img = 255 - img if view.endswith("inverted") else img
    if view.startswith("rotated"):
        img = np.rot90(img, _quarter_turns(view))
    return np.ascontiguousarray(img)


def view_points_back(xy: np.ndarray, view: str, given_hw: Tuple[int, int]) -> np.ndarray:
    """(K, 2) points read in ``view`` -> the given image's pixels (exact inverse of :func:`view_image`)."""
    h, w = given_hw
    x, y = xy[:, 0], xy[:, 1]
    if view.startswith("mirrored"):
        return np.stack([w - 1 - x, y], axis=1)
    turns = _quarter_turns(view)
    if turns == 1:           # np.rot90: reading (x, y) came from given (w - 1 - y, x)
        return np.stack([w - 1 - y, x], axis=1)
    if turns == 2:
        return np.stack([w - 1 - x, h - 1 - y], axis=1)
    if turns == 3:
        return np.stack([y, h - 1 - x], axis=1)
    return np.asarray(xy, np.float64).copy()
