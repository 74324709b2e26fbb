"""Before and after treatment: two cephalograms of one patient superimposed (:mod:`sdk.superimpose`), and what
changed: each landmark's displacement per superimposition, along and across S-N, and each measurement's change.

A change is "within reading error" when two readings of one unchanged head could differ by that much:

- a landmark's reading error is how far two readings of the same head, tilted differently, lay apart at most
  (per landmark, :data:`READING_MM`, measured by ``python -m benchmarks.tilt``), widened for a point
  read with a low reliability (divided by the lower of its two reliabilities, at least 0.25), and for a point
  doubtful in either reading tripled;
- a displacement is within when its length is below sqrt(reading error^2 + registration error^2), the latter
  from its superimposition's residual (the RMS of the landmarks it was started on, after it) and the turn that
  residual allows over their span, times the distance from them; a regional superimposition shows its own
  bone's landmarks only;
- a measurement's change is within when it is below 2.58 x its spread (99%), propagated from its landmarks' reading
  errors (each taken as the 95th percentile of a 2-D spread, i.e. error / 2.45 per axis: conservative, the errors
  being maxima) through the measurement's own derivatives.

The Detector reads each landmark in the head's own frame (its patches turned by the head's tilt), so a tilt
between the two visits moves a reading by little; :func:`steady_reading` (``cephalo compare``'s default) reads a
tilted head a second time, the image turned upright, and averages the two readings: steadier still, at twice the
time (``python -m benchmarks.tilt --steady``).
"""
from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np

from .errors import CephaloError
from .local_stage import head_turn
from .superimpose import REGIONS, SYMPHYSIS, superimpose

# Two readings of one head, tilted by 5-10 degrees the one against the other, lay at most this far apart (mm, per
# landmark, 10 ISBI Test1 images x 6 tilts; python -m benchmarks.tilt, lab/results/tilt). Other schemas'
# landmarks get DEFAULT_MM.
READING_MM = {"sella": 0.52, "nasion": 0.79, "orbitale": 0.6, "porion": 1.22, "subspinale": 1.55, "supramentale":
              1.06, "pogonion": 0.6, "menton": 0.28, "gnathion": 0.25, "gonion": 5.43, "lower_incisal_incision":
              0.53, "upper_incisal_incision": 0.32, "upper_lip": 0.41, "lower_lip": 0.42, "subnasale": 0.47,
              "soft_tissue_pogonion": 1.56, "posterior_nasal_spine": 0.38, "anterior_nasal_spine": 1.25,
              "articulare": 3.97}
DEFAULT_MM = 1.0
MIN_MM = 0.25
RAYLEIGH_P95 = 2.448            # a 2-D spread's 95th-percentile distance over its per-axis sd
UPRIGHT_FROM_DEG = 1.0


class CompareError(CephaloError):
    """Two images that cannot be compared: which one, and why."""


def turned(gray: np.ndarray, deg: float) -> Tuple[np.ndarray, np.ndarray]:
    """``gray`` turned by ``deg`` degrees (counter-clockwise on screen) about its centre, on a canvas that holds
    all of it, and the 2x3 matrix from its pixels to the turned copy's."""
    h, w = gray.shape[:2]
    m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), deg, 1.0)
    cos, sin = abs(m[0, 0]), abs(m[0, 1])
    nw, nh = int(np.ceil(h * sin + w * cos)), int(np.ceil(h * cos + w * sin))
    m[0, 2] += (nw - w) / 2
    m[1, 2] += (nh - h) / 2
    return cv2.warpAffine(gray, m, (nw, nh), flags=cv2.INTER_LINEAR, borderValue=0), m


def steady_reading(detector, image, gray: np.ndarray, spacing: Optional[float] = None):
    """``detector``'s reading of ``image`` (its pixels ``gray``), steadied against the head's tilt: where the head
    is tilted by more than :data:`UPRIGHT_FROM_DEG` from its usual frame, the image is read a second time turned
    upright, and each point is the mean of the two readings (the second mapped back). Everything else (flags,
    reliabilities, spacing, ear rods) is the first reading's. Returns (result, the turn in degrees, 0 when the
    head was not turned)."""
    first = detector(image, spacing)
    if not first.is_cephalogram:
        return first, 0.0
    turn = head_turn(first.xy, first._schema())
    if abs(turn) < UPRIGHT_FROM_DEG:
        return first, 0.0
    # head_turn turns patches (y down); a screen rotation by -turn is the same turn of the image
    img, m = turned(gray, -turn)
    second = detector(img, first.spacing if first.spacing is not None else spacing)
    if not second.is_cephalogram:
        return first, 0.0
    back = (second.xy - m[:, 2]) @ np.linalg.inv(m[:, :2]).T
    return replace(first, xy=(first.xy + back) / 2), turn


def _facing_right(res) -> bool:
    s, n = res.xy[res._schema().index("sella")], res.xy[res._schema().index("nasion")]
    return bool(n[0] >= s[0])


def _points_mm(res, mm: float, mirror: bool) -> Dict[str, np.ndarray]:
    """{name: (2,) mm} of a reading (mirrored to face right), under its own names and under the names the
    superimpositions ask for (a schema's aliases resolved)."""
    xy = np.asarray(res.xy, np.float64).copy()
    if mirror:
        xy[:, 0] = (res.image_size[1] - 1) - xy[:, 0]
    out = {n: xy[i] * mm for i, n in enumerate(res.names)}
    schema = res._schema()
    for name in {n for r in REGIONS for n in r.landmarks + r.axis + r.shows} | set(SYMPHYSIS):
        try:
            out.setdefault(name, xy[schema.index(name)] * mm)
        except KeyError:
            continue
    return out


def _error_mm(res_b, res_a, name: str) -> Tuple[float, bool]:
    """A landmark's reading error (mm) in this pair, and whether it is doubtful in either."""
    e = max(READING_MM.get(name, DEFAULT_MM), MIN_MM)
    rel = []
    doubtful = False
    for r in (res_b, res_a):
        i = r.names.index(name)
        if r.reliability is not None:
            rel.append(float(r.reliability[i]))
        doubtful |= bool(r.point_flags and r.point_flags[i]) or bool(r.repaired and r.repaired[i])
    if rel:
        e /= max(min(rel), 0.25)
    return (3 * e if doubtful else e), doubtful


def _measure_spread(res, name: str, errors: Dict[str, float], mm: float) -> Optional[float]:
    """The sd of a measurement's change between two readings, from its landmarks' reading errors (mm)."""
    from .measurements import measure

    schema = res._schema()
    pts = {n: np.asarray(res.xy[i], np.float64) for i, n in enumerate(res.names)}
    base = measure(pts, schema, res.spacing).get(name)
    if base is None:
        return None
    var = 0.0
    h = 0.1 / mm            # 0.1 mm in pixels
    for lm in base["landmarks"]:
        try:
            key = res.names[schema.index(lm)]
        except KeyError:
            continue
        sd_px = errors.get(key, DEFAULT_MM) / RAYLEIGH_P95 / mm
        for axis in (0, 1):
            moved = dict(pts)
            p = pts[key].copy()
            p[axis] += h
            moved[key] = p
            got = measure(moved, schema, res.spacing).get(name)
            if got is None:
                continue
            var += ((got["value"] - base["value"]) / h * sd_px) ** 2
    return float(np.sqrt(var))


def compare(before, after, before_image: Optional[np.ndarray] = None, after_image: Optional[np.ndarray] = None,
            labels: Tuple[str, str] = ("before", "after")) -> dict:
    """Two readings (``sdk.Landmarks``) of one patient -> the comparison (a JSON-ready dict): the
    superimpositions, each landmark's displacement per superimposition, each measurement's change, and what is
    doubtful. With ``before_image`` / ``after_image`` (the gray images read) the superimpositions are refined on
    the images. ``labels``: how the two are named (file names or dates)."""
    for res, name in zip((before, after), labels):
        if not res.is_cephalogram:          # (flags say why: a reading is refused only by a flag)
            raise CompareError(f"{name}: not read as a cephalogram ({', '.join(res.flags)}): nothing to compare")
    if list(before.names) != list(after.names):
        raise CompareError(f"{labels[0]} and {labels[1]} were read with different landmark sets")
    schema = before._schema()
    for need in ("sella", "nasion"):        # the overall superimposition and its frame
        try:
            schema.index(need)
        except KeyError:
            raise CompareError(f"the landmarks read ({schema.id}) have no {need}: no superimposition") from None
    notes: List[str] = []
    doubtful: List[str] = []
    mm_known = before.spacing is not None and after.spacing is not None
    mm_b = before.spacing if mm_known else 1.0
    mm_a = after.spacing if mm_known else 1.0
    if not mm_known:
        notes.append("no pixel spacing for " + " and ".join(n for r, n in zip((before, after), labels)
                                                            if r.spacing is None)
                     + ": angles only (displacements need mm: --spacing, DICOM, a ruler or a site)")
    right_b, right_a = _facing_right(before), _facing_right(after)
    mirror_b, mirror_a = not right_b, not right_a
    if right_b != right_a:
        notes.append(f"the two face different ways: {labels[1] if right_b else labels[0]} was mirrored to compare")
    pb, pa = _points_mm(before, mm_b, mirror_b), _points_mm(after, mm_a, mirror_a)
    gb = before_image if before_image is None or not mirror_b else np.ascontiguousarray(before_image[:, ::-1])
    ga = after_image if after_image is None or not mirror_a else np.ascontiguousarray(after_image[:, ::-1])
    for name in ("sella", "nasion"):
        i = schema.index(name)
        for res, lab in zip((before, after), labels):
            if (res.point_flags and res.point_flags[i]) or (res.repaired and res.repaired[i]):
                doubtful.append(f"{name} is doubtful in {lab}: the overall superimposition is doubtful")
    regs = superimpose(pb, pa, gb, mm_b, ga, mm_a)
    errors = {n: _error_mm(before, after, n) for n in before.names}
    s, n_ = pb["sella"], pb["nasion"]
    u = (n_ - s) / max(float(np.linalg.norm(n_ - s)), 1e-9)
    v = np.array([-u[1], u[0]])                 # across S-N, downwards (both faced right)
    displacements = {}
    for reg in regs:
        rows = []
        for name in before.names:
            if reg.shows and name not in reg.shows:
                continue
            d = reg.apply(pa[name]) - pb[name]
            e, dbt = errors[name]
            limit = float(np.hypot(e, reg.error_at(pb[name])))
            row = {"name": name, "dx_mm": round(float(d @ u), 3), "dy_mm": round(float(d @ v), 3),
                   "distance_mm": round(float(np.linalg.norm(d)), 3), "limit_mm": round(limit, 3),
                   "within_reading_error": bool(np.linalg.norm(d) <= limit), "doubtful": dbt}
            if not mm_known:        # pixels, not mm: the numbers keep their place, in px, said as such
                row = {k.replace("_mm", "_px"): val for k, val in row.items()}
            rows.append(row)
        displacements[reg.name] = rows
    changes = {}
    mb, ma = before.measurements(), after.measurements()
    err_only = {k: e for k, (e, _) in errors.items()}
    for name, eb in mb.items():
        ea = ma.get(name)
        if ea is None or eb["unit"] != ea["unit"]:
            continue
        limit = 2.576 * _measure_spread(before, name, err_only, mm_b)      # mm_b: 1 (pixels) without a spacing
        change = ea["value"] - eb["value"]
        entry = {"before": eb["value"], "after": ea["value"], "change": round(change, 3), "unit": eb["unit"],
                 "limit": round(limit, 3), "within_reading_error": bool(abs(change) <= limit),
                 "doubtful": bool(eb.get("doubtful") or ea.get("doubtful"))}
        if "isbi_class" in eb:
            entry["isbi_class_before"], entry["isbi_class_after"] = eb["isbi_class"], ea.get("isbi_class")
        changes[name] = entry
    # the earlier reading drawn on the later image: before mm -> after mm (overall) -> after pixels
    on_after = regs[0].inverse(np.array([pb[n] for n in before.names])) / mm_a
    if mirror_a:
        on_after[:, 0] = (after.image_size[1] - 1) - on_after[:, 0]
    return {"before": _summary(before, labels[0], mirror_b), "after": _summary(after, labels[1], mirror_a),
            "units": "mm" if mm_known else "px (no spacing: angles only)",
            "frame": "dx along S-N (forward, the face turned right), dy across it (downward), in the earlier "
                     "image's S-N; the later image's points moved by each superimposition",
            "superimpositions": {r.name: r.to_dict() for r in regs},
            "displacements": displacements, "changes": changes,
            "reading_error": __doc__.split("\n\n")[1].strip(),
            "doubtful": doubtful, "notes": notes,
            "before_on_after_px": [[round(float(x), 2), round(float(y), 2)] for x, y in on_after],
            "caution": "nothing here can tell that the two images are of one patient"}


def _summary(res, label: str, mirrored: bool) -> dict:
    return {"label": label, "image_size": list(res.image_size), "spacing_mm": res.spacing,
            "spacing_source": res.spacing_source, "mirrored": mirrored, "flags": list(res.flags),
            "doubtful_landmarks": [n for i, n in enumerate(res.names) if res.point_flags and res.point_flags[i]]}


def write_outputs(result: dict, after, after_image: np.ndarray, out_dir: Path) -> List[Path]:
    """``compare.json``, ``compare.csv`` (one row per displacement and per change) and ``compare.png`` (both
    tracings over the later image) in ``out_dir``."""
    from .draw import draw_comparison, save_png

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "compare.json", out_dir / "compare.csv", out_dir / "compare.png"]
    paths[0].write_text(json.dumps(result, indent=1))
    unit = "mm" if result["units"] == "mm" else "px"
    with open(paths[1], "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["kind", "superimposition", "name", "dx", "dy", "distance", "before", "after", "change", "unit",
                    "limit", "within_reading_error", "doubtful"])
        for sup, rows in result["displacements"].items():
            for r in rows:
                w.writerow(["displacement", sup, r["name"], r[f"dx_{unit}"], r[f"dy_{unit}"], r[f"distance_{unit}"],
                            "", "", "", unit, r[f"limit_{unit}"], r["within_reading_error"], r["doubtful"]])
        for name, c in result["changes"].items():
            w.writerow(["change", "", name, "", "", "", c["before"], c["after"], c["change"], c["unit"], c["limit"],
                        c["within_reading_error"], c["doubtful"]])
    save_png(draw_comparison(result, after, after_image), paths[2])
    return paths
