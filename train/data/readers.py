"""Annotation readers. Each returns a list of :class:`Sample` with points in the schema's order.

A malformed annotation (missing or duplicate landmark, non-numeric or missing coordinate, unknown label, missing
image) raises :class:`sdk.AnnotationError` naming the file and the problem; indices are never shifted silently.
Points outside the image are checked when the image is first decoded (see ``cache.py``).
"""
from __future__ import annotations

import csv
import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from sdk.errors import AnnotationError
from sdk.schemas import Schema
from sdk.spacing import read_spacing_table

ISBI_SPACING_MM = 0.1


@dataclass
class Sample:
    """One labelled image. ``points``: (K, 2) float64 original-image pixels; ``spacing``: mm per pixel."""

    id: str
    image: Path
    points: np.ndarray
    spacing: float


def _num(value, where: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise AnnotationError(f"{where}: coordinate {value!r} is not a number") from None
    if not math.isfinite(v):
        raise AnnotationError(f"{where}: coordinate {value!r} is not finite")
    return v


def _read_csv_rows(path: Path) -> List[Dict[str, str]]:
    if not path.is_file():
        raise AnnotationError(f"annotation file {path} does not exist")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            header = reader.fieldnames or []
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise AnnotationError(f"annotation file {path}: cannot read it ({e})") from e
    if "image" not in header:
        raise AnnotationError(f"annotation file {path}: no 'image' column (header {header[:4]}...)")
    return rows


def read_points_csv(path: Union[str, Path], schema: Schema, gaps: bool = False) -> Dict[str, np.ndarray]:
    """A CSV ``image,<name>_x,<name>_y,...`` (the ISBI layout) -> {image file name: (K, 2) points}. ``gaps``: a
    point whose two cells are blank is unlabelled (NaN), not an error. Every problem of the file is reported at
    once."""
    path = Path(path)
    rows = _read_csv_rows(path)
    cols = set(rows[0].keys()) if rows else set()
    missing_cols = [f"'{n}_{a}'" for n in schema.names for a in ("x", "y") if f"{n}_{a}" not in cols]
    if missing_cols:
        first = next(n for n in schema.names if f"{n}_x" not in cols or f"{n}_y" not in cols)
        raise AnnotationError(f"annotation file {path}: landmark {first!r} has no column '{first}_x' or "
                              f"'{first}_y' ({len(missing_cols)} column(s) missing: {', '.join(missing_cols[:8])}"
                              f"{', ...' if len(missing_cols) > 8 else ''})")
    out: Dict[str, np.ndarray] = {}
    problems: List[str] = []
    for line, row in enumerate(rows, start=2):
        img = (row.get("image") or "").strip()
        if not img:
            problems.append(f"line {line}: empty image name")
            continue
        if img in out:
            problems.append(f"line {line}: image {img!r} is labelled twice")
            continue
        pts = np.full((schema.k, 2), np.nan)
        for j, n in enumerate(schema.names):
            xs, ys = (row.get(f"{n}_x") or "").strip(), (row.get(f"{n}_y") or "").strip()
            if gaps and not xs and not ys:
                continue                # not labelled in this image
            try:
                pts[j] = (_num(xs, f"line {line}, {n}_x"), _num(ys, f"line {line}, {n}_y"))
            except AnnotationError as e:
                problems.append(str(e))
        out[img] = pts
    if problems:
        raise AnnotationError(f"annotation file {path}: {len(problems)} problem(s): " + "; ".join(problems[:20])
                              + ("; ..." if len(problems) > 20 else ""))
    return out


def missing_per_landmark(samples: Sequence, schema: Schema) -> Dict[str, int]:
    """{landmark: how many of ``samples`` do not label it} for the landmarks some sample leaves unlabelled."""
    miss = np.sum([~np.isfinite(s.points).all(axis=1) for s in samples], axis=0) if samples else []
    return {schema.names[k]: int(m) for k, m in enumerate(miss) if m}


def read_isbi(root: Union[str, Path], schema: Schema, annotators: Sequence[str] = ("senior",),
              split: Optional[Union[str, Sequence[str]]] = None,
              spacing: Union[float, str, Path] = ISBI_SPACING_MM, gaps: bool = False) -> List[Sample]:
    """The ISBI 2015 folder layout (``images/``, ``senior.csv``, ``junior.csv``, ``splits.csv``).

    annotators: CSV stems to average (``("senior",)`` is the challenge's ground truth; ``("senior", "junior")`` the
    mean of both). split: a ``splits.csv`` name or several. spacing: mm per pixel, or a CSV ``image,spacing``.
    gaps: blank cells are unlabelled points (NaN; averaged over the annotators who labelled them), not errors.
    """
    root = Path(root)
    if not annotators:
        raise AnnotationError("read_isbi: give at least one annotator CSV stem, e.g. ('senior',)")
    tables = [read_points_csv(root / f"{a}.csv", schema, gaps) for a in annotators]
    names = sorted(tables[0])
    for a, t in zip(annotators[1:], tables[1:]):
        if set(t) != set(names):
            diff = sorted(set(t) ^ set(names))[:5]
            raise AnnotationError(f"{root / (a + '.csv')}: labels a different set of images than "
                                  f"{annotators[0]}.csv (e.g. {diff})")
    if split is not None:
        wanted = {split} if isinstance(split, str) else set(split)
        split_rows = _read_csv_rows(root / "splits.csv")
        in_split = {r["image"].strip() for r in split_rows if (r.get("split") or "").strip() in wanted}
        if not in_split:
            raise AnnotationError(f"{root / 'splits.csv'}: no image in split {sorted(wanted)}")
        names = [n for n in names if n in in_split]
    spacings = _spacing_table(spacing)
    samples = []
    for n in names:
        stack = np.stack([t[n] for t in tables])
        with warnings.catch_warnings():         # a point no annotator labelled stays NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            pts = np.nanmean(stack, axis=0) if gaps else stack.mean(axis=0)
        img = root / "images" / n
        if not img.is_file():
            raise AnnotationError(f"{root}: image {img} named in the annotations does not exist")
        samples.append(Sample(Path(n).stem, img, pts, _spacing_for(spacings, n, root)))
    return samples


def _spacing_table(spacing) -> Union[float, Dict[str, float]]:
    if isinstance(spacing, (int, float)):
        if not spacing > 0:
            raise AnnotationError(f"pixel spacing must be > 0 mm, got {spacing!r}")
        return float(spacing)
    return read_spacing_table(spacing)


def _spacing_for(spacings, image_name: str, where: Path) -> float:
    if isinstance(spacings, float):
        return spacings
    if image_name not in spacings:
        raise AnnotationError(f"{where}: no pixel spacing given for image {image_name!r}")
    return spacings[image_name]


def _points_from_labels(labels: List[tuple], schema: Schema, path: Path, ignore_unknown: bool,
                        gaps: bool = False) -> np.ndarray:
    """[(label, x, y), ...] -> (K, 2) in schema order; errors for unknown, duplicate and (unless ``gaps``: then
    NaN) missing labels."""
    pts = np.full((schema.k, 2), np.nan)
    for label, x, y in labels:
        try:
            j = schema.index(label)
        except KeyError:
            if ignore_unknown:
                continue
            raise AnnotationError(f"{path}: label {label!r} is not a landmark of schema {schema.id!r}") from None
        if not np.isnan(pts[j, 0]):
            raise AnnotationError(f"{path}: landmark {schema.names[j]!r} is labelled twice")
        pts[j] = (_num(x, f"{path}, {label} x"), _num(y, f"{path}, {label} y"))
    missing = [schema.names[j] for j in range(schema.k) if np.isnan(pts[j, 0])]
    if missing and not gaps:
        raise AnnotationError(f"{path}: missing landmark(s) {missing}")
    return pts


def _load_json(path: Path):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AnnotationError(f"annotation file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise AnnotationError(f"annotation file {path}: not readable JSON ({e})") from e


def read_labelme(path: Union[str, Path], schema: Schema, spacing: float, ignore_unknown: bool = False,
                 gaps: bool = False) -> Sample:
    """A LabelMe JSON file of ``point`` shapes; the image is ``imagePath`` relative to the JSON file."""
    path = Path(path)
    data = _load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("shapes"), list):
        raise AnnotationError(f"{path}: not a LabelMe file (no 'shapes' list)")
    labels = []
    for s in data["shapes"]:
        if s.get("shape_type", "point") != "point":
            continue
        p = s.get("points") or []
        if len(p) != 1 or len(p[0]) != 2:
            raise AnnotationError(f"{path}: point {s.get('label')!r} must have exactly one [x, y]")
        labels.append((str(s.get("label", "")), p[0][0], p[0][1]))
    if not data.get("imagePath"):
        raise AnnotationError(f"{path}: no 'imagePath'")
    image = (path.parent / data["imagePath"]).resolve()
    if not image.is_file():
        raise AnnotationError(f"{path}: its image {image} does not exist")
    return Sample(path.stem, image, _points_from_labels(labels, schema, path, ignore_unknown, gaps), float(spacing))


def read_aariz(path: Union[str, Path], image: Union[str, Path], schema: Schema, spacing: float,
               ignore_unknown: bool = False) -> Sample:
    """An Aariz-style JSON: ``{"landmarks": [{"title": "Sella", "value": {"x": .., "y": ..}}, ...]}``."""
    path = Path(path)
    data = _load_json(path)
    items = data.get("landmarks") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise AnnotationError(f"{path}: not an Aariz file (no 'landmarks' list)")
    labels = []
    for it in items:
        v = it.get("value") if isinstance(it, dict) else None
        if not isinstance(v, dict):
            raise AnnotationError(f"{path}: landmark entry {it!r} has no 'value': {{'x', 'y'}}")
        labels.append((str(it.get("title") or it.get("symbol") or ""), v.get("x"), v.get("y")))
    image = Path(image)
    if not image.is_file():
        raise AnnotationError(f"{path}: its image {image} does not exist")
    return Sample(path.stem, image, _points_from_labels(labels, schema, path, ignore_unknown), float(spacing))
