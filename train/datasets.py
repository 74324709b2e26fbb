"""Loading a labelled data folder by its layout, for the CLI and scripts."""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import List, Optional, Sequence

from sdk.errors import AnnotationError
from sdk.schemas import Schema

from .data.readers import ISBI_SPACING_MM, Sample, read_isbi, read_labelme

FORMATS = ("isbi", "labelme")


def load_folder(root: Path, schema: Schema, fmt: str = "auto", split: Optional[Sequence[str]] = None,
                annotators: Sequence[str] = ("senior",), spacing: Optional[float] = None,
                gaps: bool = False) -> List[Sample]:
    """Samples of a data folder: ``isbi`` (``images/`` + ``<annotator>.csv`` + ``splits.csv``) or ``labelme``
    (``*.json`` beside the images). ``auto`` picks by what the folder holds.

    Pixel spacing: ``spacing`` (mm) when given, else the folder's ``spacing.csv`` (``image,spacing``) when present,
    else ISBI's 0.1 mm. A ``spacing.csv`` that is there but cannot be read (a dangling link) is an error, never the
    default. ``gaps``: blank cells / absent points are unlabelled points (NaN), not errors (``cephalo adapt``).
    """
    root = Path(root)
    if not root.is_dir():
        raise AnnotationError(f"data folder {root} does not exist")
    if spacing is None:
        table = root / "spacing.csv"
        if os.path.lexists(table) and not table.is_file():
            raise AnnotationError(f"data folder {root}: {table} is there but cannot be read (a broken link?); give "
                                  f"the spacing with --spacing, or fix the file")
        spacing = table if table.is_file() else ISBI_SPACING_MM
    if fmt == "auto":
        fmt = "isbi" if (root / f"{annotators[0]}.csv").is_file() else "labelme"
    if fmt == "isbi":
        return read_isbi(root, schema, annotators, split, spacing, gaps)
    if fmt == "labelme":
        files = sorted(root.glob("*.json"))
        if not files:
            raise AnnotationError(f"data folder {root}: no {annotators[0]}.csv (the ISBI layout, with images/ and "
                                  f"splits.csv) and no LabelMe *.json files beside the images")
        if not isinstance(spacing, float):
            raise AnnotationError(f"data folder {root}: give one pixel spacing for LabelMe data")
        return [read_labelme(f, schema, spacing, gaps=gaps) for f in files]
    raise AnnotationError(f"data format {fmt!r} is not one of {FORMATS}")


def load_train_val(root: Path, schema: Schema, fmt: str, split: Optional[Sequence[str]], annotators: Sequence[str],
                   val_count: int, seed: int, align: bool = False, gaps: bool = False):
    """``(train, val)`` samples of a data folder, carved by :func:`train.trainer.split_train_val`.

    Several ``annotators`` are averaged; with ``align`` each one after the first is first moved onto the first's
    convention (:func:`train.data.labels.aligned_mean`, offsets fitted on the training carve only) and validation
    scores against the first annotator's own labels, the convention being learnt. ``gaps``: blank cells are
    unlabelled points (NaN: left out of the loss and the scores), as :func:`load_folder`.
    """
    from .data.labels import aligned_mean
    from .trainer import split_train_val

    annotators = tuple(annotators)
    if not align or len(annotators) < 2:
        return split_train_val(load_folder(root, schema, fmt, split, annotators, gaps=gaps), val_count, seed)
    per = [load_folder(root, schema, fmt, split, (a,), gaps=gaps) for a in annotators]
    tr_ref, va = split_train_val(per[0], val_count, seed)
    merged, _ = aligned_mean(per, {s.id for s in tr_ref})
    by_id = {s.id: s for s in merged}
    return [by_id[s.id] for s in tr_ref], va


IMAGE_EXT = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm"}


def image_files(folder: Path, split: Optional[str] = "train", limit: int = 100) -> List[Path]:
    """Image files of a folder of images, or of a data folder with ``images/`` (and ``splits.csv``, whose ``split``
    rows are used: INT8 calibration takes training images, never the test sets); at most ``limit`` (0 = all)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"calibration folder {folder} does not exist")
    img_dir = folder / "images" if (folder / "images").is_dir() else folder
    files = sorted(p for p in img_dir.rglob("*") if p.suffix.lower() in IMAGE_EXT)
    splits = folder / "splits.csv"
    if split and splits.is_file():
        with open(splits, newline="", encoding="utf-8") as f:
            keep = {r["image"] for r in csv.DictReader(f) if r.get("split") == split}
        files = [p for p in files if p.name in keep]
    if not files:
        raise FileNotFoundError(f"no calibration images in {img_dir}" + (f" for split {split!r}" if split else ""))
    return files[:limit] if limit else files
