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
from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

Point = np.ndarray


def angle_at(vertex: Point, a: Point, b: Point) -> float:
    """Angle a-vertex-b in degrees, in [0, 180] (atan2 of cross and dot: exact near 0 and 180 degrees and for short
    vectors; 0 when a point coincides with the vertex)."""
    u, v = np.asarray(a, float) - vertex, np.asarray(b, float) - vertex
    return float(np.degrees(np.arctan2(abs(u[0] * v[1] - u[1] * v[0]), np.dot(u, v))))


def line_angle(p1: Point, p2: Point, q1: Point, q2: Point) -> float:
    """Acute angle between lines p1-p2 and q1-q2, degrees in [0, 90]."""
    u, v = np.asarray(p2, float) - p1, np.asarray(q2, float) - q1
    return float(np.degrees(np.arctan2(abs(u[0] * v[1] - u[1] * v[0]), abs(np.dot(u, v)))))


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

    def band(self, value: float) -> str:
        """The range that decided ``value``'s class, e.g. '< 3.2', '3.2-5.7', '> 5.7'."""
        if value < self.lo:
            return f"< {self.lo:g}"
        if value > self.hi:
            return f"> {self.hi:g}"
        return f"{self.lo:g}-{self.hi:g}"


def isbi_mw_band(mw: float) -> str:
    """The range that decided MW's class (:func:`isbi_mw_class`)."""
    return "2-4.5" if 2.0 <= mw <= 4.5 else "> 4.5" if mw > 4.5 else "0" if mw == 0.0 else "< 2, not 0"


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


def _unit(v: Point) -> Point:
    return v / max(float(np.linalg.norm(v)), 1e-12)


def _ahead(p: Point, a: Point, b: Point) -> float:
    """Signed distance (pixels) of ``p`` from the line a-b running down the face: positive anterior (+x)."""
    d = _unit(b - a) if b[1] >= a[1] else _unit(a - b)      # oriented downwards
    return float(np.dot(p - a, np.array([d[1], -d[0]])))


def _convexity(n, a, pog):
    """Downs' angle of convexity: 180 - N-A-Pog, positive when A lies ahead of the N-Pog line."""
    v = 180.0 - angle_at(a, n, pog)
    return v if _ahead(a, n, pog) >= 0 else -v


def _to_fh(p, n, po, orb, spacing):
    """McNamara: mm from ``p`` to the nasion perpendicular (through N, perpendicular to FH), + anterior."""
    return float(np.dot(p - n, _unit(orb - po))) * spacing


def _wits(a, b, u6, l6, u4, l4, spacing):
    """Jacobson's AO-BO: A and B projected on the functional occlusal plane (through the molars' and premolars'
    cusp midpoints), mm, + when AO lies ahead of BO."""
    back, front = (u6 + l6) / 2, (u4 + l4) / 2
    return float(np.dot(a - b, _unit(front - back))) * spacing


def _lip_to_eline(lip, prn, stpog, spacing):
    """Ricketts: mm from the lip to the E-line (pronasale - soft-tissue pogonion), + ahead of it."""
    return _ahead(lip, prn, stpog) * spacing


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
    Measurement("SN-GoGn", ("sella", "nasion", "gonion", "gnathion"), "deg", (32.0, 5.0),
                "Steiner, Am J Orthod 1953: S-N line to Go-Gn", lambda s, n, go, gn: line_angle(s, n, go, gn)),
    Measurement("U1-NA", ("upper_incisor_apex", "upper_incisal_incision", "nasion", "subspinale"), "deg",
                (22.0, 6.0), "Steiner, Am J Orthod 1953: upper incisor axis to N-A",
                lambda ap, tip, n, a: line_angle(ap, tip, n, a)),
    Measurement("L1-NB", ("lower_incisor_apex", "lower_incisal_incision", "nasion", "supramentale"), "deg",
                (25.0, 6.0), "Steiner, Am J Orthod 1953: lower incisor axis to N-B",
                lambda ap, tip, n, b: line_angle(ap, tip, n, b)),
    Measurement("Interincisal angle", ("upper_incisor_apex", "upper_incisal_incision", "lower_incisor_apex",
                                       "lower_incisal_incision"), "deg", (131.0, 6.0),
                "Steiner, Am J Orthod 1953 / Downs 1948: angle between the incisor axes",
                lambda ua, ut, la, lt: angle_at(np.zeros(2), ua - ut, la - lt)),
    Measurement("Facial angle", ("porion", "orbitale", "nasion", "pogonion"), "deg", (87.8, 3.6),
                "Downs, Am J Orthod 1948: FH to the facial line N-Pog (inferior-posterior angle)",
                lambda po, orb, n, pog: angle_at(np.zeros(2), po - orb, pog - n)),
    Measurement("Angle of convexity", ("nasion", "subspinale", "pogonion"), "deg", (0.0, 5.1),
                "Downs, Am J Orthod 1948: 180 - N-A-Pog, + when A lies ahead of N-Pog", _convexity),
    Measurement("A-B plane angle", ("nasion", "pogonion", "subspinale", "supramentale"), "deg", (-4.6, 3.7),
                "Downs, Am J Orthod 1948: A-B line to N-Pog, - when B lies behind A",
                lambda n, pog, a, b: -_signed(pog - n, b - a)),
    Measurement("Y-axis", ("porion", "orbitale", "sella", "gnathion"), "deg", (59.4, 3.8),
                "Downs, Am J Orthod 1948: FH to S-Gn (anterior-inferior angle)",
                lambda po, orb, s, gn: angle_at(np.zeros(2), orb - po, gn - s)),
    Measurement("IMPA", ("lower_incisor_apex", "lower_incisal_incision", "gonion", "menton"), "deg", (90.0, 5.0),
                "Tweed, Angle Orthod 1954: lower incisor axis to the mandibular plane Go-Me",
                lambda ap, tip, go, me: angle_at(np.zeros(2), tip - ap, go - me)),
    Measurement("FMIA", ("lower_incisor_apex", "lower_incisal_incision", "gonion", "menton", "porion", "orbitale"),
                "deg", (65.0, 5.0), "Tweed, Angle Orthod 1954: 180 - FMA - IMPA",
                lambda ap, tip, go, me, po, orb: 180.0 - line_angle(po, orb, go, me)
                - angle_at(np.zeros(2), tip - ap, go - me)),
    Measurement("A to N-perp", ("subspinale", "nasion", "porion", "orbitale"), "mm", (0.5, 2.0),
                "McNamara, Am J Orthod 1984: A to the nasion perpendicular of FH (adults 0-1 mm), + ahead",
                _to_fh, mm=True),
    Measurement("Pog to N-perp", ("pogonion", "nasion", "porion", "orbitale"), "mm", (1.0, 3.0),
                "McNamara, Am J Orthod 1984: Pog to the nasion perpendicular (adults -2 to +4 mm), + ahead",
                _to_fh, mm=True),
    Measurement("Co-A", ("condylion", "subspinale"), "mm", (91.0, 4.0),
                "McNamara, Am J Orthod 1984: effective midface length (medium-sized adult)",
                lambda co, a, sp: float(np.linalg.norm(a - co)) * sp, mm=True),
    Measurement("Co-Gn", ("condylion", "gnathion"), "mm", (120.0, 5.0),
                "McNamara, Am J Orthod 1984: effective mandibular length (medium-sized adult)",
                lambda co, gn, sp: float(np.linalg.norm(gn - co)) * sp, mm=True),
    Measurement("Upper lip to E-line", ("upper_lip", "pronasale", "soft_tissue_pogonion"), "mm", (-4.0, 2.0),
                "Ricketts, Angle Orthod 1957/1968: labrale superius to the E-line, - behind it", _lip_to_eline,
                mm=True),
    Measurement("Lower lip to E-line", ("lower_lip", "pronasale", "soft_tissue_pogonion"), "mm", (-2.0, 2.0),
                "Ricketts, Angle Orthod 1957/1968: labrale inferius to the E-line, - behind it", _lip_to_eline,
                mm=True),
    Measurement("Wits", ("subspinale", "supramentale", "upper_molar_cusp_tip", "lower_molar_cusp_tip",
                         "upper_2nd_pm_cusp_tip", "lower_2nd_pm_cusp_tip"), "mm", (-0.5, 1.5),
                "Jacobson, Am J Orthod 1975: AO-BO on the functional occlusal plane (0 mm women, -1 mm men); "
                "+ = Class II, - = Class III", _wits, mm=True),
)

# What the overlay draws for each measurement: the lines (landmark pairs) it is read from.
_FH, _SN, _MP, _PP = ("porion", "orbitale"), ("sella", "nasion"), ("gonion", "menton"), ("posterior_nasal_spine",
                                                                                       "anterior_nasal_spine")
_AB, _NPOG = ("subspinale", "supramentale"), ("nasion", "pogonion")
TRACING: Dict[str, Tuple[Tuple[str, str], ...]] = {
    "SNA": (_SN, ("nasion", "subspinale")), "SNB": (_SN, ("nasion", "supramentale")),
    "ANB": (("nasion", "subspinale"), ("nasion", "supramentale")), "FMA": (_FH, _MP),
    "ODI": (_AB, _MP, _PP, _FH), "APDI": (_FH, _NPOG, _AB, _PP),
    "FHI": (("sella", "gonion"), ("nasion", "menton")), "MW": (("upper_incisal_incision", "lower_incisal_incision"),),
    "SN-MP": (_SN, _MP), "Gonial angle": (("articulare", "gonion"), _MP), "SN-GoGn": (_SN, ("gonion", "gnathion")),
    "U1-NA": (("upper_incisor_apex", "upper_incisal_incision"), ("nasion", "subspinale")),
    "L1-NB": (("lower_incisor_apex", "lower_incisal_incision"), ("nasion", "supramentale")),
    "Interincisal angle": (("upper_incisor_apex", "upper_incisal_incision"),
                           ("lower_incisor_apex", "lower_incisal_incision")),
    "Facial angle": (_FH, _NPOG), "Angle of convexity": (("nasion", "subspinale"), ("subspinale", "pogonion")),
    "A-B plane angle": (_AB, _NPOG), "Y-axis": (_FH, ("sella", "gnathion")),
    "IMPA": (("lower_incisor_apex", "lower_incisal_incision"), _MP),
    "FMIA": (("lower_incisor_apex", "lower_incisal_incision"), _FH),
    "A to N-perp": (_FH, ("nasion", "subspinale")), "Pog to N-perp": (_FH, _NPOG),
    "Co-A": (("condylion", "subspinale"),), "Co-Gn": (("condylion", "gnathion"),),
    "Upper lip to E-line": (("pronasale", "soft_tissue_pogonion"),),
    "Lower lip to E-line": (("pronasale", "soft_tissue_pogonion"),),
    "Wits": (("upper_molar_cusp_tip", "upper_2nd_pm_cusp_tip"), _AB),
}

# The analyses orthodontists run, as lists of the measurements above (each measurement's own reference gives
# its source and norm). What a schema's landmarks cannot give is listed by unavailable(), never dropped silently.
ANALYSES: Dict[str, Tuple[str, Tuple[str, ...]]] = {
    "isbi2015": ("ISBI 2015 challenge (Wang et al., Med Image Anal 2016), with its classes",
                 ("SNA", "SNB", "ANB", "FMA", "ODI", "APDI", "FHI", "MW")),
    "steiner": ("Steiner, Am J Orthod 1953", ("SNA", "SNB", "ANB", "SN-GoGn", "U1-NA", "L1-NB",
                                              "Interincisal angle")),
    "downs": ("Downs, Am J Orthod 1948", ("Facial angle", "Angle of convexity", "A-B plane angle", "FMA", "Y-axis",
                                          "Interincisal angle")),
    "tweed": ("Tweed, Angle Orthod 1954", ("FMA", "IMPA", "FMIA")),
    "mcnamara": ("McNamara, Am J Orthod 1984", ("A to N-perp", "Pog to N-perp", "Co-A", "Co-Gn")),
    "ricketts": ("Ricketts' E-line, Angle Orthod 1957/1968", ("Upper lip to E-line", "Lower lip to E-line")),
    "wits": ("Jacobson, Am J Orthod 1975", ("Wits",)),
    "other": ("", ("SN-MP", "Gonial angle")),
}


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


def measure(points: Mapping[str, Point], schema=None, spacing: Optional[float] = None,
            analyses: Optional[Sequence[str]] = None) -> Dict[str, Dict]:
    """{landmark name: (x, y)} -> {measurement: {value, unit, norm_mean, norm_sd, reference[, isbi_class,
    isbi_class_meaning]}} for those computable. ``schema`` (:class:`sdk.schemas.Schema`): resolve the landmarks
    each measurement needs by its names and aliases. ``spacing``: mm per pixel, for distances (MW, McNamara,
    E-line, Wits). ``analyses``: only the measurements of these :data:`ANALYSES` (default: all).

    Angles and ratios do not need a pixel spacing.
    """
    raw = _lookup(points, schema)
    get = _facing_right(lambda n: None if raw(n) is None else np.asarray(raw(n), float))
    out = {}
    for m in _selected(analyses):
        pts = [get(n) for n in m.needs]
        if any(q is None for q in pts) or (m.mm and spacing is None):
            continue
        val = float(m.fn(*pts, spacing) if m.mm else m.fn(*pts))
        e = {"value": round(val, 3), "unit": m.unit, "norm_mean": m.norm[0], "norm_sd": m.norm[1],
             "reference": m.reference, "landmarks": list(m.needs)}
        cls = isbi_mw_class(val) if m.name == "MW" else (m.isbi.of(val) if m.isbi is not None else None)
        if cls is not None:
            e["isbi_class"], e["isbi_class_meaning"] = cls
            e["isbi_band"] = isbi_mw_band(val) if m.name == "MW" else m.isbi.band(val)
        out[m.name] = e
    return out


def _selected(analyses: Optional[Sequence[str]]) -> Tuple[Measurement, ...]:
    if analyses is None:
        return MEASUREMENTS
    unknown = [a for a in analyses if a not in ANALYSES]
    if unknown:
        raise ValueError(f"unknown analysis {unknown[0]!r}; choose from {', '.join(ANALYSES)}")
    names = {n for a in analyses for n in ANALYSES[a][1]}
    return tuple(m for m in MEASUREMENTS if m.name in names)


def unavailable(schema, spacing: Optional[float] = 1.0, analyses: Optional[Sequence[str]] = None) -> Dict[str, str]:
    """{measurement: why} for the measurements ``schema``'s landmarks (or a missing ``spacing``) cannot give."""
    out = {}
    for m in _selected(analyses):
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
