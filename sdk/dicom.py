"""DICOM reading (optional extra ``pydicom``): pixels with MONOCHROME1 inversion and VOI LUT, and the pixel spacing."""
from __future__ import annotations

import io
import warnings
from typing import Optional, Tuple

import numpy as np

from .errors import ImageError
from .spacing import PLAUSIBLE_MM, plausible

MAX_NOTES = 3     # a malformed file can raise dozens of warnings; the first few say what is wrong


def _int(v, default: int = 1) -> int:
    try:
        return max(1, int(v))
    except (TypeError, ValueError):
        return default


def _first_frame(ds, frames: int) -> np.ndarray:
    """The first frame's pixels, decoding that frame alone where pydicom can (a multi-frame file can hold
    hundreds)."""
    try:
        from pydicom.pixels import pixel_array
    except ImportError:                    # pydicom 2: the whole array
        px = ds.pixel_array
        return px[0] if frames > 1 and px.ndim >= 3 and px.shape[-1] not in (3, 4) else px
    return pixel_array(ds, index=0) if frames > 1 else ds.pixel_array


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
    from .limits import check_declared

    with warnings.catch_warnings(record=True) as caught:     # the SDK prints nothing: deviations become notes
        warnings.simplefilter("always")
        try:
            ds = pydicom.dcmread(io.BytesIO(data))
        except Exception as e:  # pydicom raises many types for bad files
            raise ImageError(f"DICOM {source}: cannot decode its pixels ({e})") from e
        rows, cols = int(getattr(ds, "Rows", 0) or 0), int(getattr(ds, "Columns", 0) or 0)
        # the declared size, before any pixel is decoded (a deflated file can declare 15000 x 15000)
        check_declared(rows, cols, source, len(data))
        frames = _int(getattr(ds, "NumberOfFrames", 1))
        try:
            px = _first_frame(ds, frames)
        except Exception as e:
            raise ImageError(f"DICOM {source}: cannot decode its pixels ({e})") from e
        try:
            px = apply_voi_lut(px, ds)
        except Exception:
            pass  # no usable VOI LUT / window: keep the stored values
    notes = [f"DICOM file deviates from the standard: {w.message}" for w in caught
             if issubclass(w.category, UserWarning)][:MAX_NOTES]
    if frames > 1:
        notes.append(f"a multi-frame DICOM ({frames} frames): its first frame was read")
    px = np.asarray(px, dtype=np.float32)
    if str(getattr(ds, "PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        px = px.max() - px  # MONOCHROME1: high values are dark
    lo, hi = px.min(), px.max()
    scaled = np.zeros(px.shape, np.uint16) if hi <= lo else np.rint((px - lo) * (65535.0 / (hi - lo))).astype(np.uint16)
    spacing = None   # type: Optional[float]
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
