"""Overlay drawing: numbered landmarks on the image, written as PNG (paths handled as bytes: non-ASCII and
Windows paths work)."""
from __future__ import annotations

from pathlib import Path
from typing import Union

import cv2
import numpy as np

from .errors import ImageError


def draw_landmarks(gray: np.ndarray, xy: np.ndarray, labels=None, radius: int = 0) -> np.ndarray:
    """(H, W) uint8 gray + (K, 2) points -> (H, W, 3) uint8 BGR overlay with numbered points (1-based)."""
    img = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    scale = max(gray.shape) / 1000.0
    r = radius or max(2, int(round(6 * scale)))
    thick = max(1, int(round(2 * scale)))
    for i, (x, y) in enumerate(np.asarray(xy, float)):
        c = (int(round(x)), int(round(y)))
        cv2.circle(img, c, r, (0, 0, 255), -1, cv2.LINE_AA)
        text = str(labels[i]) if labels is not None else str(i + 1)
        cv2.putText(img, text, (c[0] + r + 2, c[1] - r - 2), cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, (0, 255, 255),
                    thick, cv2.LINE_AA)
    return img


def save_png(img: np.ndarray, path: Union[str, Path]) -> Path:
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise ImageError(f"cannot encode the overlay for {path}")
    path = Path(path)
    path.write_bytes(buf.tobytes())
    return path
