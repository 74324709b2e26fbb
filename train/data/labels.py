"""Combining several annotators' labels of the same images.

ISBI's two orthodontists differ by ~2.3 mm per landmark, and much of that is *convention*, not noise: on the 150
training images the junior places soft-tissue pogonion 9 mm and gonion 3 mm from where the senior does, on average
(``lab/studies/label_drift.py``). A plain mean of both moves every target halfway to the other convention (a model
trained on it loses on the senior's labels). :func:`aligned_mean` first moves each other annotator's points by their
mean offset from the reference annotator, per landmark, then averages: the reference's convention with the
per-image noise of one annotator halved where the two are independent.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Collection, List, Sequence, Tuple

import numpy as np

from sdk.errors import AnnotationError

from .readers import Sample


def point_offsets(reference: Sequence[Sample], other: Sequence[Sample], ids: Collection[str]) -> np.ndarray:
    """(N, K, 2) ``reference - other`` in mm, per image, for the ``ids`` both label (reference's order)."""
    oth = {s.id: s for s in other}
    ids = set(ids)
    d = [(s.points - oth[s.id].points) * s.spacing for s in reference if s.id in ids and s.id in oth]
    if not d:
        raise AnnotationError("annotator alignment: no image is labelled by both annotators among the fitting images")
    return np.array(d)


def annotator_offsets(reference: Sequence[Sample], other: Sequence[Sample], fit_ids: Collection[str]) -> np.ndarray:
    """(K, 2) mean of ``reference - other`` in mm over the images ``fit_ids`` that both label (0 where none do)."""
    d = point_offsets(reference, other, fit_ids)
    both = np.isfinite(d)
    return np.where(both, d, 0.0).sum(axis=0) / np.maximum(both.sum(axis=0), 1)


def aligned_mean(per_annotator: Sequence[Sequence[Sample]], fit_ids: Collection[str]
                 ) -> Tuple[List[Sample], np.ndarray]:
    """Samples whose points are the mean of all annotators after moving each one after the first by its mean
    per-landmark offset from the first, fitted on ``fit_ids`` only (the training images: validation labels must
    not shape the targets). Returns the samples (the first annotator's order) and the offsets, (A - 1, K, 2) mm."""
    if not per_annotator:
        raise AnnotationError("annotator alignment: no annotators given")
    reference = list(per_annotator[0])
    others = [{s.id: s for s in o} for o in per_annotator[1:]]
    for o in others:
        missing = [s.id for s in reference if s.id not in o]
        if missing:
            raise AnnotationError(f"annotator alignment: images labelled by one annotator only (e.g. {missing[:3]})")
    offsets = np.array([annotator_offsets(reference, list(o.values()), fit_ids) for o in others]).reshape(
        (len(others),) + reference[0].points.shape)
    out = []
    for s in reference:
        moved = [o[s.id].points + off / o[s.id].spacing for o, off in zip(others, offsets)]
        stack = np.array([s.points] + moved)
        given = np.isfinite(stack)              # a point an annotator left blank: the others' mean (NaN if none)
        mean = np.where(given, stack, 0.0).sum(axis=0) / np.where(given.any(axis=0), given.sum(axis=0), np.nan)
        out.append(replace(s, points=mean))
    return out, offsets
