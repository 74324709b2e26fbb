"""Pixel spacing (mm per pixel): the one check every spacing passes before it is used.

Cephalostats image at about 0.08-0.15 mm per pixel, scanned films at 0.04-0.3. Outside ``PLAUSIBLE_MM`` a value
is a mistake (pixels per mm instead of mm per pixel, a DICOM tag in another unit, a typo), and millimetres
computed from it would be silently absurd, so it is refused before the model runs.
"""
from __future__ import annotations

import csv
import math
import numbers
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import numpy as np

from .errors import AnnotationError, CephaloError

PLAUSIBLE_MM: Tuple[float, float] = (0.01, 1.0)


def check_spacing(value, where: str = "spacing=") -> float:
    """``value`` as a float of mm per pixel, or :class:`CephaloError` naming ``where`` (the option or argument
    the user set) and the accepted range. Python and numpy numbers are accepted; booleans are not."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise CephaloError(f"{where}: pixel spacing must be a number of mm per pixel, got {value!r} "
                           f"({type(value).__name__})")
    v = float(value)
    lo, hi = PLAUSIBLE_MM
    if not math.isfinite(v) or not lo <= v <= hi:
        hint = (f" (did you give pixels per mm? {v:g} px/mm is {1 / v:.4g} mm/px)"
                if math.isfinite(v) and v > hi else "")
        raise CephaloError(f"{where}: pixel spacing {value!r} mm per pixel is outside the plausible range "
                           f"{lo:g}-{hi:g} mm for a radiograph{hint}")
    return v


def plausible(value: Optional[float]) -> bool:
    """True when ``value`` is a spacing :func:`check_spacing` would accept."""
    try:
        check_spacing(value)
    except CephaloError:
        return False
    return True


# A cephalostat's constants, stated once per machine (``ruler_mm=``, ``magnification=``, a site profile's fields).
RULER_MM: Tuple[float, float] = (0.1, 50.0)         # the ruler's tick pitch, mm
MAGNIFICATION: Tuple[float, float] = (0.5, 2.0)     # detector plane / mid-sagittal plane (about 1.1)


def check_ruler_mm(value, where: str = "ruler_mm=") -> Optional[float]:
    """``value`` (None passes) as the ruler's tick pitch in mm, or :class:`CephaloError` naming ``where``."""
    return _in_range(value, RULER_MM, where, "the ruler's tick pitch in mm")


def check_magnification(value, where: str = "magnification=") -> Optional[float]:
    """``value`` (None passes) as a magnification factor, or :class:`CephaloError` naming ``where``."""
    return _in_range(value, MAGNIFICATION, where, "a factor (about 1.1 at the mid-sagittal plane)")


def _in_range(value, bounds: Tuple[float, float], where: str, what: str) -> Optional[float]:
    if value is None:
        return None
    lo, hi = bounds
    ok = not isinstance(value, (bool, np.bool_)) and isinstance(value, numbers.Real) and lo <= float(value) <= hi
    if not ok:
        raise CephaloError(f"{where}{value!r}: {what}, {lo:g}-{hi:g}, expected")
    return float(value)


def read_spacing_table(path: Union[str, Path]) -> Dict[str, float]:
    """A CSV ``image,spacing`` (mm per pixel, one row an image; the form ``cephalo adapt`` reads beside its images)
    -> {image: spacing}, each spacing checked (:func:`check_spacing`). Every problem of the file is reported at
    once, in one :class:`AnnotationError` that names the file and the lines."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            header = [h.strip() for h in reader.fieldnames or []]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise AnnotationError(f"spacing file {path}: cannot be read ({type(e).__name__}: {e})") from None
    if "image" not in header or "spacing" not in header:
        raise AnnotationError(f"spacing file {path}: needs the columns 'image' and 'spacing' (header {header[:4]})")
    table: Dict[str, float] = {}
    problems = []
    for line, row in enumerate(rows, start=2):
        row = {(k or "").strip(): v for k, v in row.items()}
        name, text = (row.get("image") or "").strip(), (row.get("spacing") or "").strip()
        if not name:
            problems.append(f"line {line}: no image name")
            continue
        try:
            v = check_spacing(float(text), "spacing")
        except (ValueError, CephaloError) as e:
            problems.append(f"line {line} ({name}): {text!r} is not a spacing ({e})" if isinstance(e, CephaloError)
                            else f"line {line} ({name}): {text!r} is not a number")
            continue
        if name in table and table[name] != v:
            problems.append(f"line {line}: {name} is given twice, {table[name]:g} and {v:g}")
        table[name] = v
    if problems:
        raise AnnotationError(f"spacing file {path}: {len(problems)} problem(s): " + "; ".join(problems[:10])
                              + ("; ..." if len(problems) > 10 else ""))
    return table
