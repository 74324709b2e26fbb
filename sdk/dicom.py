"""DICOM reading (optional extra ``pydicom``): pixels with MONOCHROME1 inversion and VOI LUT, and the pixel spacing."""
from __future__ import annotations

import io
from typing import Optional, Tuple

import numpy as np

from .errors import ImageError
from .spacing import PLAUSIBLE_MM, plausible


def read_dicom(data: bytes, source: str) -> Tuple[np.ndarray, Optional[float], Tuple[str, ...]]:
    """DICOM bytes -> ((H, W) uint8|uint16 pixels, mm per pixel or None, notes).

    Spacing comes from ``ImagerPixelSpacing`` (detector plane, what a cephalostat calibrates), then ``PixelSpacing``.
    Non-square spacing is averaged; the SDK reports one spacing per image. A tag that is present but zero,
    unreadable or outside the plausible range is skipped, and ``notes`` says so (the caller shows it to the user).
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
    spacing, notes = None, []   # type: Optional[float], List[str]
    for tag in ("ImagerPixelSpacing", "PixelSpacing"):
        val = getattr(ds, tag, None)
        if val is None:
            continue
        try:
            pair = [float(v) for v in val][:2]
            s = 0.5 * (pair[0] + pair[1])
        except (TypeError, ValueError, IndexError):
            notes.append(f"DICOM {tag} {val!r} is not a pair of numbers; ignored")
            continue
        if min(pair) > 0 and plausible(s):
            spacing = s
            break
        notes.append(f"DICOM {tag} {list(pair)} mm is not a usable spacing (expected {PLAUSIBLE_MM[0]:g}-"
                     f"{PLAUSIBLE_MM[1]:g} mm); ignored")
    if spacing is None and notes:
        notes.append("no pixel spacing from the file: pass spacing= (--spacing) for millimetres")
    return scaled, spacing, tuple(notes)
