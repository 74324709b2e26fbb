"""The one preprocessing: image -> model input. Training, conversion checks and the Detector all call this.

Coordinates follow the pixel-centre convention: pixel (i, j) covers [j-0.5, j+0.5] x [i-0.5, i+0.5], so a resize by
factor ``s`` maps ``x -> (x + 0.5) * s - 0.5``. The letterbox keeps the aspect ratio (per-axis factors differ only by
the rounding of the resized size, and each axis uses its own exact factor) and pads bottom/right-centred.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import cv2
import numpy as np

from .errors import ImageError


@dataclass(frozen=True)
class Letterbox:
    """Geometry of one letterbox: source image ``src_h x src_w`` resized to ``new_h x new_w`` and placed at
    ``(pad_top, pad_left)`` inside the ``dst_h x dst_w`` model input."""

    src_h: int
    src_w: int
    dst_h: int
    dst_w: int
    new_h: int
    new_w: int
    pad_top: int
    pad_left: int

    @property
    def scale_x(self) -> float:
        """Input pixels per original pixel along x."""
        return self.new_w / self.src_w

    @property
    def scale_y(self) -> float:
        return self.new_h / self.src_h

    @property
    def input_px_size(self) -> float:
        """Original pixels per model-input pixel (the larger axis factor), for reporting errors in input pixels."""
        return max(1.0 / self.scale_x, 1.0 / self.scale_y)

    def to_input(self, xy: np.ndarray) -> np.ndarray:
        """(..., 2) original-image pixels -> (..., 2) model-input pixels."""
        xy = np.asarray(xy, dtype=np.float64)
        out = np.empty_like(xy)
        out[..., 0] = (xy[..., 0] + 0.5) * self.scale_x - 0.5 + self.pad_left
        out[..., 1] = (xy[..., 1] + 0.5) * self.scale_y - 0.5 + self.pad_top
        return out

    def to_image(self, xy: np.ndarray) -> np.ndarray:
        """(..., 2) model-input pixels -> (..., 2) original-image pixels (inverse of :meth:`to_input`)."""
        xy = np.asarray(xy, dtype=np.float64)
        out = np.empty_like(xy)
        out[..., 0] = (xy[..., 0] - self.pad_left + 0.5) / self.scale_x - 0.5
        out[..., 1] = (xy[..., 1] - self.pad_top + 0.5) / self.scale_y - 0.5
        return out


def letterbox_geometry(src_hw: Tuple[int, int], dst_hw: Tuple[int, int]) -> Letterbox:
    """The letterbox placing a ``src_hw`` image inside a ``dst_hw`` input, aspect ratio kept, content centred."""
    sh, sw = int(src_hw[0]), int(src_hw[1])
    dh, dw = int(dst_hw[0]), int(dst_hw[1])
    if sh < 1 or sw < 1:
        raise ImageError(f"image size {sh}x{sw} is empty")
    s = min(dh / sh, dw / sw)
    nh = min(dh, max(1, int(round(sh * s))))
    nw = min(dw, max(1, int(round(sw * s))))
    return Letterbox(sh, sw, dh, dw, nh, nw, (dh - nh) // 2, (dw - nw) // 2)


def resize_for_letterbox(gray: np.ndarray, lb: Letterbox, reduction: int = 1) -> np.ndarray:
    """(src_h, src_w) uint8 -> (new_h, new_w) uint8, area interpolation (anti-aliased downscale).

    ``reduction`` r > 1: ``gray`` is the source decoded at 1/r scale (``ceil(src / r)`` pixels, see
    :func:`sdk.image_io.load_image`); it is resized to the same letterboxed size. Where ``src`` is not a multiple of
    r the decode's last pixel overhangs the image, which shifts points by at most half an original pixel at the
    far edge (0.05 mm on a 0.1 mm/px cephalogram).
    """
    want = (-(-lb.src_h // reduction), -(-lb.src_w // reduction))
    if gray.shape[:2] != want:
        raise ImageError(f"image is {gray.shape[:2]}, letterbox was computed for {(lb.src_h, lb.src_w)}"
                         + (f" decoded at 1/{reduction}" if reduction > 1 else ""))
    if (lb.new_h, lb.new_w) == gray.shape[:2]:
        return np.ascontiguousarray(gray)
    interp = cv2.INTER_AREA if lb.new_h < gray.shape[0] else cv2.INTER_LINEAR
    return cv2.resize(gray, (lb.new_w, lb.new_h), interpolation=interp)


def pad_to_input(resized: np.ndarray, lb: Letterbox, pad_value: float) -> np.ndarray:
    """(new_h, new_w) uint8 -> (dst_h, dst_w) uint8 with the letterbox padding. ``pad_value`` is on the [0, 1]
    scale of ``mean`` and ``std`` (as the local stage's patches use it)."""
    out = np.full((lb.dst_h, lb.dst_w), pad_pixel(pad_value), dtype=resized.dtype)
    out[lb.pad_top:lb.pad_top + lb.new_h, lb.pad_left:lb.pad_left + lb.new_w] = resized
    return out


def pad_pixel(pad_value: float) -> int:
    """The uint8 pixel of a [0, 1] pad value."""
    return int(round(min(max(float(pad_value), 0.0), 1.0) * 255))


def normalize(padded: np.ndarray, mean: float, std: float, channels: int) -> np.ndarray:
    """(H, W) uint8 -> (C, H, W) float32: ``(x / 255 - mean) / std``, the gray channel repeated C times."""
    x = (padded.astype(np.float32) * np.float32(1.0 / 255.0) - np.float32(mean)) * np.float32(1.0 / std)
    return np.repeat(x[None], channels, axis=0) if channels > 1 else x[None]


RESIZE_RULE = "letterbox-area"      # aspect kept, area interpolation when shrinking, centred padding
PREPROCESSING_VERSION = 1           # bump when any step below changes the pixels a model sees


@dataclass(frozen=True)
class Preprocessing:
    """Everything that turns an image into a model input: input size, channels, normalisation, pad value, the
    resize rule and its version. Carried whole by the model metadata (:attr:`sdk.metadata.ModelMeta.preprocessing`)
    and the training config; :meth:`apply` is the one function the Detector, the image cache and data packs,
    training and evaluation all use, and :attr:`key` names its output (cache and pack keys derive from it)."""

    input_hw: Tuple[int, int]
    channels: int = 1
    mean: float = 0.5
    std: float = 0.25
    pad_value: float = 0.0
    resize: str = RESIZE_RULE
    version: int = PREPROCESSING_VERSION

    def __post_init__(self):
        object.__setattr__(self, "input_hw", (int(self.input_hw[0]), int(self.input_hw[1])))
        if self.resize != RESIZE_RULE or self.version != PREPROCESSING_VERSION:
            raise ValueError(f"preprocessing {self.resize!r} v{self.version}: this SDK applies {RESIZE_RULE!r} "
                             f"v{PREPROCESSING_VERSION}")

    @property
    def key(self) -> str:
        """What the resized (not yet padded or normalised) image depends on: cache and pack keys."""
        return f"{self.resize}-v{self.version}-{self.input_hw[0]}x{self.input_hw[1]}"

    def resized(self, gray: np.ndarray, src_hw: Optional[Tuple[int, int]] = None,
                reduction: int = 1) -> Tuple[np.ndarray, Letterbox]:
        """The cacheable step: (H, W) uint8 -> ((new_h, new_w) uint8 letterboxed content, its Letterbox). For a
        reduced decode pass the full image's ``src_hw`` and the ``reduction``."""
        lb = letterbox_geometry(src_hw if src_hw is not None else gray.shape[:2], self.input_hw)
        return resize_for_letterbox(gray, lb, reduction), lb

    def pad(self, resized: np.ndarray, lb: Letterbox) -> np.ndarray:
        return pad_to_input(resized, lb, self.pad_value)

    def normalize(self, padded: np.ndarray) -> np.ndarray:
        return normalize(padded, self.mean, self.std, self.channels)

    def apply(self, gray: np.ndarray, src_hw: Optional[Tuple[int, int]] = None,
              reduction: int = 1) -> Tuple[np.ndarray, Letterbox]:
        """(H, W) uint8 gray image -> ((C, h_in, w_in) float32 model input, its Letterbox)."""
        small, lb = self.resized(gray, src_hw, reduction)
        return self.normalize(self.pad(small, lb)), lb

    def prepare(self, image, fast_decode: bool = True, keep: Optional[float] = None):
        """Any accepted image (path, bytes, array) -> ((C, h, w) float32 input, Letterbox, LoadedImage).

        ``fast_decode``: decode large JPEGs at reduced scale (:func:`sdk.image_io.load_image`), keeping ``keep``
        times the input's scale (default ``REDUCE_MARGIN``; the Detector passes its local stage's fine scale).
        Points move by a fraction of a millimetre against a full decode (docs/RESULTS.md); ``False``: a file gives
        exactly the points of its pixels passed as an array.
        """
        from .image_io import REDUCE_MARGIN, load_image

        loaded = load_image(image, reduce_for=self.input_hw if fast_decode else None,
                            keep=REDUCE_MARGIN if keep is None else keep)
        x, lb = self.apply(loaded.gray, loaded.full_hw, loaded.reduction)
        return x, lb, loaded

    def to_dict(self) -> dict:
        return {"input_hw": list(self.input_hw), "channels": self.channels, "mean": self.mean, "std": self.std,
                "pad_value": self.pad_value, "resize": self.resize, "version": self.version}


def preprocess(gray: np.ndarray, input_hw: Tuple[int, int], mean: float, std: float, pad_value: float,
               channels: int = 1, src_hw: Optional[Tuple[int, int]] = None,
               reduction: int = 1) -> Tuple[np.ndarray, Letterbox]:
    """:meth:`Preprocessing.apply` with its fields as arguments."""
    return Preprocessing(input_hw, channels, mean, std, pad_value).apply(gray, src_hw, reduction)


def prepare(image, input_hw: Tuple[int, int], mean: float, std: float, pad_value: float, channels: int = 1,
            fast_decode: bool = True, keep: Optional[float] = None):
    """:meth:`Preprocessing.prepare` with its fields as arguments."""
    return Preprocessing(input_hw, channels, mean, std, pad_value).prepare(image, fast_decode, keep)
