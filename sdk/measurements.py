"""Cephalometric measurements from named landmarks. Each needs only the landmarks it names, looked up through the
schema's names and aliases (``A-point`` / ``a_point`` / ``subspinale`` are one landmark), so every built-in schema
yields every measurement its landmarks allow; :func:`unavailable` says which ones a schema cannot give and why.

Angles in degrees, distances in mm (only when a pixel spacing is known; without one a distance is listed by
:func:`unavailable`). Image y points down. Signed measurements (ANB, ODI, APDI, MW) are computed on the profile
facing right (a facing-left image is mirrored first, from nasion lying left of sella), so a sign means the same
anatomy either way: ANB < 0 is a Class III skeletal pattern, MW < 0 an anterior crossbite. Norms are the commonly
cited adult means ± SD.

The eight measurements of the ISBI 2015 challenge (ANB, SNB, SNA, ODI, APDI, FHI, FHA = FMA here, MW) also get the
challenge's class (``isbi_class``: 'C1', 'C2', ... and what it means), with the boundaries of Wang et al., "A benchmark
for comparison of dental radiography analysis algorithms", Medical Image Analysis 31 (2016) 63-76 (Table of the
classification criteria; the same boundaries appear in public reimplementations of the challenge's evaluation).
A value on a boundary belongs to the normal class. ODI and APDI follow Kim (1974, 1978); their palatal-plane term is
positive when the palatal plane runs down anteriorly against Frankfort horizontal.
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


def _signed(u: Point, v: Point) -> float:
    """Angle from vector u to vector v in degrees, in (-180, 180], positive clockwise on the screen (y down)."""
    return float(np.degrees(np.arctan2(u[0] * v[1] - u[1] * v[0], np.dot(u, v))))


@dataclass(frozen=True)
class Classes:
    """The ISBI 2015 classes of one measurement: C1 for ``lo <= value <= hi``, else ``below`` / ``above``."""

    lo: float
    hi: float
    normal: str
    below: Tuple[str, str]      # (code, meaning)
    above: Tuple[str, str]

    def of(self, value: float) -> Tuple[str, str]:
        if value < self.lo:
            return self.below
        if value > self.hi:
            return self.above
        return "C1", self.normal


@dataclass(frozen=True)
class Measurement:
    name: str
    needs: Tuple[str, ...]
    unit: str
    norm: Tuple[float, float]          # mean, SD
    reference: str
    fn: Callable[..., float]
    isbi: Optional[Classes] = None     # the ISBI 2015 challenge's classes
    mm: bool = False                   # a distance: needs a pixel spacing (fn gets it as its last argument)


def _odi(me, go, b, a, po, orb, pns, ans):
    """Overbite depth indicator (Kim 1974): A-B plane to mandibular plane, plus palatal plane to FH (signed)."""
    return angle_at(np.zeros(2), go - me, a - b) + _signed(orb - po, ans - pns)


def _apdi(orb, po, n, pog, a, b, pns, ans):
    """Anteroposterior dysplasia indicator (Kim & Vietas 1978): facial angle (FH to N-Pog), plus the A-B plane to
    the facial plane (negative when B lies behind A), plus palatal plane to FH (signed)."""
    facial = angle_at(np.zeros(2), po - orb, pog - n)
    ab = -_signed(pog - n, b - a)
    return facial + ab + _signed(orb - po, ans - pns)


def _mw(u1, l1, spacing):
    """ISBI 2015 "modified Wits": upper to lower incisal tip, mm; negative when the upper incisor's tip lies behind
    the lower one's (anterior crossbite)."""
    d = float(np.linalg.norm(u1 - l1)) * spacing
    return -d if u1[0] < l1[0] else d


def _sna(s, n, a):
    return angle_at(n, s, a)


MEASUREMENTS: Tuple[Measurement, ...] = (
    Measurement("SNA", ("sella", "nasion", "subspinale"), "deg", (82.0, 3.5),
                "Steiner, Am J Orthod 1953: maxillary prognathism, angle S-N-A", _sna,
                Classes(79.4, 83.2, "normal maxilla", ("C3", "retrognathic maxilla"), ("C2", "prognathic maxilla"))),
    Measurement("SNB", ("sella", "nasion", "supramentale"), "deg", (80.0, 3.0),
                "Steiner, Am J Orthod 1953: mandibular prognathism, angle S-N-B", _sna,
                Classes(74.6, 78.7, "normal mandible", ("C2", "retrognathic mandible"),
                        ("C3", "prognathic mandible"))),
    Measurement("ANB", ("sella", "nasion", "subspinale", "supramentale"), "deg", (2.0, 2.0),
                "Steiner, Am J Orthod 1953: SNA - SNB, sagittal jaw relation",
                lambda s, n, a, b: _sna(s, n, a) - _sna(s, n, b),
                Classes(3.2, 5.7, "skeletal Class I", ("C3", "skeletal Class III"), ("C2", "skeletal Class II"))),
    Measurement("FMA", ("porion", "orbitale", "gonion", "menton"), "deg", (25.0, 5.0),
                "Tweed, Angle Orthod 1954: Frankfort horizontal (Po-Or) to mandibular plane (Go-Me); the ISBI 2015 "
                "'FHA'", lambda po, orb, go, me: line_angle(po, orb, go, me),
                Classes(26.8, 31.4, "normal mandibular plane", ("C3", "low angle"), ("C2", "high angle"))),
    Measurement("ODI", ("menton", "gonion", "supramentale", "subspinale", "porion", "orbitale",
                        "posterior_nasal_spine", "anterior_nasal_spine"), "deg", (74.5, 6.07),
                "Kim, Am J Orthod 1974: overbite depth indicator (vertical: low = open-bite tendency)", _odi,
                Classes(68.4, 80.5, "normal overbite", ("C3", "open-bite tendency"), ("C2", "deep-bite tendency"))),
    Measurement("APDI", ("orbitale", "porion", "nasion", "pogonion", "subspinale", "supramentale",
                         "posterior_nasal_spine", "anterior_nasal_spine"), "deg", (81.4, 3.79),
                "Kim & Vietas, Am J Orthod 1978: anteroposterior dysplasia indicator (low = Class II tendency)",
                _apdi, Classes(77.6, 85.2, "normal", ("C2", "Class II tendency"), ("C3", "Class III tendency"))),
    Measurement("MW", ("upper_incisal_incision", "lower_incisal_incision"), "mm", (3.25, 1.25),
                "ISBI 2015 (Wang et al., Med Image Anal 2016): 'modified Wits', upper to lower incisal tip, negative "
                "for an anterior crossbite", _mw, None, mm=True),
    Measurement("SN-MP", ("sella", "nasion", "gonion", "menton"), "deg", (32.0, 5.0),
                "Steiner, Am J Orthod 1953: S-N line to mandibular plane (Go-Me)",
                lambda s, n, go, me: line_angle(s, n, go, me)),
    Measurement("FHI", ("sella", "nasion", "gonion", "menton"), "ratio", (0.69, 0.04),
                "Horn, Angle Orthod 1992 (ISBI 2015 set): facial height index S-Go / N-Me",
                lambda s, n, go, me: float(np.linalg.norm(go - s) / max(np.linalg.norm(me - n), 1e-12)),
                Classes(0.65, 0.75, "normal face height ratio", ("C3", "long face"), ("C2", "short face"))),
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


def isbi_mw_class(mw: float) -> Tuple[str, str]:
    """The ISBI 2015 classes of MW (mm): four, not three."""
    if 2.0 <= mw <= 4.5:
        return "C1", "normal overjet"
    if mw > 4.5:
        return "C4", "large overjet"
    if mw == 0.0:
        return "C2", "edge to edge"
    return "C3", "anterior crossbite or small overjet"


def _facing_right(get) -> Callable[[str], Optional[Point]]:
    """``get`` on a profile facing right: x mirrored when nasion lies left of sella."""
    s, n = get("sella"), get("nasion")
    if s is None or n is None or n[0] >= s[0]:
        return get

    def mirrored(name: str) -> Optional[Point]:
        p = get(name)
        return None if p is None else np.array([-float(p[0]), float(p[1])])
    return mirrored


def measure(points: Mapping[str, Point], schema=None, spacing: Optional[float] = None) -> Dict[str, Dict]:
    """{landmark name: (x, y)} -> {measurement: {value, unit, norm_mean, norm_sd, reference[, isbi_class,
    isbi_class_meaning]}} for those computable. ``schema`` (:class:`sdk.schemas.Schema`): resolve the landmarks
    each measurement needs by its names and aliases. ``spacing``: mm per pixel, for distances (MW).

    Angles and ratios do not need a pixel spacing.
    """
    raw = _lookup(points, schema)
    get = _facing_right(lambda n: None if raw(n) is None else np.asarray(raw(n), float))
    out = {}
    for m in MEASUREMENTS:
        pts = [get(n) for n in m.needs]
        if any(q is None for q in pts) or (m.mm and spacing is None):
            continue
        val = float(m.fn(*pts, spacing) if m.mm else m.fn(*pts))
        e = {"value": round(val, 3), "unit": m.unit, "norm_mean": m.norm[0], "norm_sd": m.norm[1],
             "reference": m.reference}
        cls = isbi_mw_class(val) if m.name == "MW" else (m.isbi.of(val) if m.isbi is not None else None)
        if cls is not None:
            e["isbi_class"], e["isbi_class_meaning"] = cls
        out[m.name] = e
    return out


def unavailable(schema, spacing: Optional[float] = 1.0) -> Dict[str, str]:
    """{measurement: why} for the measurements ``schema``'s landmarks (or a missing ``spacing``) cannot give."""
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
        elif m.mm and spacing is None:
            out[m.name] = "a distance: needs a pixel spacing (spacing=, DICOM, or a ruler)"
    return out
