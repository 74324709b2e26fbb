"""Reading images into the SDK's working form: a (H, W) uint8 grayscale array, plus a pixel spacing when the file
says one (DICOM).

Accepted: a path (PNG, JPEG with EXIF orientation applied, BMP, TIFF, DICOM), the bytes of such a file, or a numpy
array (H, W) / (H, W, 1|3|4) of uint8 or uint16. 16-bit data is windowed linearly from its min to its max into
8 bits, the range the models are trained on.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import cv2
import numpy as np

from .errors import ImageError

MIN_SIDE = 32            # smaller than this is not a cephalogram
MAX_PIXELS = 200_000_000  # 200 MP: larger is an error, not a scan (and would exhaust memory)

ImageInput = Union[str, os.PathLike, bytes, bytearray, memoryview, np.ndarray]


@dataclass(frozen=True)
class LoadedImage:
    """A decoded image: ``gray`` (H, W) uint8; ``spacing`` mm per pixel (row, col) from the file, or None."""

    gray: np.ndarray
    spacing: Optional[float] = None
    source: str = "<array>"


def load_image(image: ImageInput) -> LoadedImage:
    """Decode ``image`` (path, file bytes or array) to a :class:`LoadedImage`; :class:`ImageError` names the problem."""
    if isinstance(image, np.ndarray):
        return LoadedImage(to_gray_u8(image, "<array>"))
    if isinstance(image, (bytes, bytearray, memoryview)):
        return _decode_bytes(bytes(image), "<bytes>")
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.exists():
            raise ImageError(f"image file {path} does not exist")
        if path.is_dir():
            raise ImageError(f"image path {path} is a folder, not a file")
        try:
            data = path.read_bytes()
        except OSError as e:
            raise ImageError(f"image file {path}: cannot read it ({e})") from e
        return _decode_bytes(data, str(path))
    raise ImageError(f"image must be a path, bytes or a numpy array, got {type(image).__name__}")


def _is_dicom(data: bytes) -> bool:
    return len(data) > 132 and data[128:132] == b"DICM"


def _decode_bytes(data: bytes, source: str) -> LoadedImage:
    if not data:
        raise ImageError(f"image {source} is empty (0 bytes)")
    if _is_dicom(data):
        from .dicom import read_dicom  # pydicom is an optional extra

        gray, spacing = read_dicom(data, source)
        return LoadedImage(to_gray_u8(gray, source), spacing, source)
    buf = np.frombuffer(data, dtype=np.uint8)
    # GRAYSCALE|ANYDEPTH keeps 16-bit data and, unlike IMREAD_UNCHANGED, applies the EXIF orientation.
    img = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE | cv2.IMREAD_ANYDEPTH)
    if img is None:
        raise ImageError(f"image {source} is not a readable image file (corrupt or unsupported format)")
    return LoadedImage(to_gray_u8(img, source), None, source)


def to_gray_u8(arr: np.ndarray, source: str = "<array>") -> np.ndarray:
    """(H, W) / (H, W, 1|3|4) uint8 or uint16 -> (H, W) uint8 gray. RGB(A) uses luminance; alpha is ignored."""
    if not isinstance(arr, np.ndarray):
        raise ImageError(f"image {source}: expected a numpy array, got {type(arr).__name__}")
    if arr.dtype not in (np.uint8, np.uint16):
        raise ImageError(f"image {source}: dtype {arr.dtype} is not supported; give uint8 or uint16 pixels")
    if arr.ndim == 3 and arr.shape[2] in (1, 3, 4):
        if arr.shape[2] == 1:
            arr = arr[:, :, 0]
        else:
            rgb = arr[:, :, :3].astype(np.float32)
            # Rec. 601 luma, the weights OpenCV uses for RGB -> gray.
            lum = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
            arr = np.clip(np.rint(lum), 0, np.iinfo(arr.dtype).max).astype(arr.dtype)
    elif arr.ndim != 2:
        raise ImageError(f"image {source}: shape {arr.shape} is not (H, W) or (H, W, 1|3|4)")
    h, w = arr.shape
    if h < MIN_SIDE or w < MIN_SIDE:
        raise ImageError(f"image {source}: {w}x{h} pixels is too small (each side must be >= {MIN_SIDE})")
    if h * w > MAX_PIXELS:
        raise ImageError(f"image {source}: {w}x{h} pixels exceeds the limit of {MAX_PIXELS} pixels")
    if arr.dtype == np.uint16:
        arr = window_to_u8(arr)
    return np.ascontiguousarray(arr)


def window_to_u8(arr: np.ndarray) -> np.ndarray:
    """Linear map of [min, max] to [0, 255]; a constant image maps to 0."""
    lo, hi = float(arr.min()), float(arr.max())
    if hi <= lo:
        return np.zeros(arr.shape, np.uint8)
    out = (arr.astype(np.float32) - lo) * np.float32(255.0 / (hi - lo))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
