"""Cephalometric measurements from named landmarks. Each needs only the landmarks it names, looked up through the
schema's names and aliases (``A-point`` / ``a_point`` / ``subspinale`` are one landmark), so every built-in schema
yields every measurement its landmarks allow; :func:`unavailable` says which ones a schema cannot give and why.

Angles in degrees, distances in mm (when a pixel spacing is known). Image y points down; the angles below are
unsigned angles between vectors, except ANB which is SNA - SNB (negative for a Class III skeletal pattern).
Norms are the commonly cited adult means ± SD.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Mapping, Optional, Tuple

import numpy as np

Point = np.ndarray


def angle_at(vertex: Point, a: Point, b: Point) -> float:
    """Angle a-vertex-b in degrees, in [0, 180]."""
    u, v = np.asarray(a, float) - vertex, np.asarray(b, float) - vertex
    c = np.dot(u, v) / max(np.linalg.norm(u) * np.linalg.norm(v), 1e-12)
    return float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))


def line_angle(p1: Point, p2: Point, q1: Point, q2: Point) -> float:
    """Acute angle between lines p1-p2 and q1-q2, degrees in [0, 90]."""
    u, v = np.asarray(p2, float) - p1, np.asarray(q2, float) - q1
    c = abs(np.dot(u, v)) / max(np.linalg.norm(u) * np.linalg.norm(v), 1e-12)
    return float(np.degrees(np.arccos(np.clip(c, 0.0, 1.0))))


@dataclass(frozen=True)
class Measurement:
    name: str
    needs: Tuple[str, ...]
    unit: str
    norm: Tuple[float, float]          # mean, SD
    reference: str
    fn: Callable[..., float]


def _sna(s, n, a):
    return angle_at(n, s, a)


MEASUREMENTS: Tuple[Measurement, ...] = (
    Measurement("SNA", ("sella", "nasion", "subspinale"), "deg", (82.0, 3.5),
                "Steiner, Am J Orthod 1953: maxillary prognathism, angle S-N-A", _sna),
    Measurement("SNB", ("sella", "nasion", "supramentale"), "deg", (80.0, 3.0),
                "Steiner, Am J Orthod 1953: mandibular prognathism, angle S-N-B", _sna),
    Measurement("ANB", ("sella", "nasion", "subspinale", "supramentale"), "deg", (2.0, 2.0),
                "Steiner, Am J Orthod 1953: SNA - SNB, sagittal jaw relation",
                lambda s, n, a, b: _sna(s, n, a) - _sna(s, n, b)),
    Measurement("FMA", ("porion", "orbitale", "gonion", "menton"), "deg", (25.0, 5.0),
                "Tweed, Angle Orthod 1954: Frankfort horizontal (Po-Or) to mandibular plane (Go-Me)",
                lambda po, orb, go, me: line_angle(po, orb, go, me)),
    Measurement("SN-MP", ("sella", "nasion", "gonion", "menton"), "deg", (32.0, 5.0),
                "Steiner, Am J Orthod 1953: S-N line to mandibular plane (Go-Me)",
                lambda s, n, go, me: line_angle(s, n, go, me)),
    Measurement("FHI", ("sella", "nasion", "gonion", "menton"), "ratio", (0.69, 0.04),
                "Horn, Angle Orthod 1992 (ISBI 2015 set): facial height index S-Go / N-Me",
                lambda s, n, go, me: float(np.linalg.norm(go - s) / max(np.linalg.norm(me - n), 1e-12))),
    Measurement("Gonial angle", ("articulare", "gonion", "menton"), "deg", (130.0, 7.0),
                "Bjork, Angle Orthod 1969: angle Ar-Go-Me", lambda ar, go, me: angle_at(go, ar, me)),
)


def _lookup(points: Mapping[str, Point], schema) -> Callable[[str], Optional[Point]]:
    """name -> point, through the schema's names and aliases when a schema is given, else by exact name."""
    def get(name: str) -> Optional[Point]:
        if schema is None:
            return points.get(name)
        try:
            return points.get(schema.names[schema.index(name)])
        except KeyError:
            return None
    return get


def measure(points: Mapping[str, Point], schema=None) -> Dict[str, Dict]:
    """{landmark name: (x, y)} -> {measurement: {value, unit, norm_mean, norm_sd, reference}} for those computable.
    ``schema`` (:class:`sdk.schemas.Schema`): resolve the landmarks each measurement needs by its names and aliases.

    Angles and ratios do not need a pixel spacing.
    """
    get = _lookup(points, schema)
    out = {}
    for m in MEASUREMENTS:
        pts = [get(n) for n in m.needs]
        if all(q is not None for q in pts):
            val = m.fn(*[np.asarray(q, float) for q in pts])
            out[m.name] = {"value": round(float(val), 3), "unit": m.unit, "norm_mean": m.norm[0],
                           "norm_sd": m.norm[1], "reference": m.reference}
    return out


def unavailable(schema) -> Dict[str, str]:
    """{measurement: why} for the measurements ``schema``'s landmarks cannot give."""
    out = {}
    for m in MEASUREMENTS:
        missing = []
        for n in m.needs:
            try:
                schema.index(n)
            except KeyError:
                missing.append(n)
        if missing:
            out[m.name] = f"needs {', '.join(missing)}, which schema {schema.id!r} does not have"
    return out
