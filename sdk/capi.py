"""The Python side of the C API (``capi/cephalo.c``): what the shared library calls, with plain types only.

The library hands over the host's pixel buffer as a read-only ``memoryview``; :func:`detect` wraps it in a numpy
array without copying (rows ``stride`` bytes apart) and runs the Detector. Every outcome is a tuple: ``(0, values)``
or ``(code, message)``, so no exception crosses into C. Codes match ``cephalo_status`` in ``capi/cephalo.h``.
"""
from __future__ import annotations

import json
from typing import Optional, Tuple

import numpy as np

from .errors import CephaloError, ImageError, ModelError

OK, E_ARGUMENT, E_IMAGE, E_MODEL, E_PYTHON = 0, 1, 2, 3, 4


def _fail(e: BaseException) -> Tuple[int, str]:
    if isinstance(e, ModelError):
        return E_MODEL, str(e)
    if isinstance(e, ImageError):
        return E_IMAGE, str(e)
    if isinstance(e, CephaloError):
        return E_ARGUMENT, str(e)
    return E_PYTHON, f"{type(e).__name__}: {e}"


OPTIONS = ("site", "labels", "ruler_mm", "magnification", "repair", "precision", "porion", "ear_rods")


def open_detector(model: Optional[str], backend: Optional[str], threads: int, options_json: Optional[str] = None):
    """``(0, Detector)`` or ``(code, message)``; ``model`` None = the bundled one, ``threads`` 0 = all cores;
    ``options_json``: a JSON object of :data:`OPTIONS` (Detector keywords)."""
    from .detector import Detector

    try:
        options = json.loads(options_json) if options_json else {}
        if not isinstance(options, dict) or set(options) - set(OPTIONS):
            raise CephaloError(f"cephalo_open_with: options must be a JSON object of {list(OPTIONS)}, got "
                               f"{options_json!r}")
        return OK, Detector(model or None, backend=backend or "auto", threads=threads or None, **options)
    except json.JSONDecodeError as e:
        return E_ARGUMENT, f"cephalo_open_with: options are not JSON ({e})"
    except BaseException as e:   # noqa: B902 - nothing may escape into the host
        return _fail(e)


def pixels(buf: memoryview, width: int, height: int, stride: int, bits: int, channels: int) -> np.ndarray:
    """The host's buffer as an (H, W[, C]) uint8/uint16 array sharing its memory (no copy)."""
    dtype = np.dtype(np.uint8 if bits == 8 else "=u2")
    item = dtype.itemsize
    shape = (height, width) if channels == 1 else (height, width, channels)
    strides = (stride, item) if channels == 1 else (stride, item * channels, item)
    return np.ndarray(shape, dtype=dtype, buffer=buf, strides=strides)


def detect(det, buf: memoryview, width: int, height: int, stride: int, bits: int, channels: int,
           spacing: float):
    """``(0, (xy bytes, scores bytes, reliability bytes or b'', names, point flags, spacing or 0, spacing source,
    view, status, is cephalogram, low confidence, confidence, measurement names, values, units, json, machine
    porion: () or (x, y, certain)))`` or ``(code, message)``."""
    try:
        arr = pixels(buf, width, height, stride, bits, channels)
        res = det(arr, spacing=spacing if spacing > 0 else None)
        doc = res.to_dict()          # computes the measurements once, for the JSON and the C struct
        meas = doc["measurements"]
        return OK, (np.ascontiguousarray(res.xy, np.float64).tobytes(),
                    np.ascontiguousarray(res.scores, np.float32).tobytes(),
                    b"" if res.reliability is None else np.ascontiguousarray(res.reliability, np.float32).tobytes(),
                    list(res.names), list(res.point_flags) or [""] * len(res.names),
                    float(res.spacing or 0.0), res.spacing_source or "", res.view, res.status,
                    int(res.is_cephalogram), int("low_confidence" in res.flags), float(res.confidence),
                    list(meas), [float(m["value"]) for m in meas.values()], [m["unit"] for m in meas.values()],
                    json.dumps(doc),
                    () if res.ear_rods is None else (float(res.ear_rods.machine_porion[0]),
                                                     float(res.ear_rods.machine_porion[1]),
                                                     int(res.ear_rods.certain)))
    except BaseException as e:   # noqa: B902
        return _fail(e)
