"""DICOM reading (optional extra ``pydicom``): pixels with MONOCHROME1 inversion and VOI LUT, and the pixel spacing."""
from __future__ import annotations

import io
from typing import Optional, Tuple

import numpy as np

from .errors import ImageError


def read_dicom(data: bytes, source: str) -> Tuple[np.ndarray, Optional[float]]:
    """DICOM bytes -> ((H, W) uint8|uint16 pixels, mm per pixel or None).

    Spacing comes from ``ImagerPixelSpacing`` (detector plane, what a cephalostat calibrates), then ``PixelSpacing``.
    Non-square spacing is averaged; the SDK reports one spacing per image.
    """
    try:
        import pydicom
        from pydicom.pixels import apply_voi_lut
    except ImportError as e:
        raise ImageError(f"image {source} is DICOM; install the 'dicom' extra (pydicom) to read it") from e
    try:
        ds = pydicom.dcmread(io.BytesIO(data))
        px = ds.pixel_array
    except Exception as e:  # pydicom raises many types for bad files
        raise ImageError(f"DICOM {source}: cannot decode its pixels ({e})") from e
    if px.ndim == 3 and px.shape[-1] not in (3, 4):
        px = px[0]  # multi-frame: the first frame
    try:
        px = apply_voi_lut(px, ds)
    except Exception:
        pass  # no usable VOI LUT / window: keep the stored values
    px = np.asarray(px, dtype=np.float64)
    if str(getattr(ds, "PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        px = px.max() - px  # MONOCHROME1: high values are dark
    lo, hi = px.min(), px.max()
    scaled = np.zeros(px.shape, np.uint16) if hi <= lo else np.rint((px - lo) * (65535.0 / (hi - lo))).astype(np.uint16)
    spacing = None
    for tag in ("ImagerPixelSpacing", "PixelSpacing"):
        val = getattr(ds, tag, None)
        if val is not None and len(val) >= 2 and float(val[0]) > 0 and float(val[1]) > 0:
            spacing = 0.5 * (float(val[0]) + float(val[1]))
            break
    return scaled, spacing
