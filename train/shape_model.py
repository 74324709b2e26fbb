"""Fit :class:`sdk.quality.ShapeModel` (a schema's mean landmark configuration) from labelled images.

Generalised Procrustes analysis: every label set is centred and scaled to unit RMS radius, then each is rotated
onto the running mean until the mean settles. The residual RMS per landmark is measured after a similarity fit,
as the SDK's check measures it. The covariance of the aligned sets (what :meth:`ShapeModel.conditional_z` conditions
on) gets ``noise_mm`` of independent error per coordinate on its diagonal: a detector's point is never exact, and
without it a landmark the others pin down tightly would be doubted for an ordinary 1 mm miss.

Fitted on the training carve only (``--val-count`` images held out, as ``cephalo calibrate`` holds them out), so
the calibration sees the shape check as it behaves on unseen images.

    python scripts/fit_shape_model.py --data ../shared/data/isbi2015 --annotators senior,junior --out sdk/shapes/isbi19.json
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from sdk.quality import ShapeModel, similarity_fit
from sdk.schemas import Schema, get_schema

from .config import VAL_COUNT


def _normalise(xy: np.ndarray) -> np.ndarray:
    c = xy - xy.mean(axis=0)
    return c / np.sqrt((c ** 2).sum(axis=1).mean())


def fit_shape_model(point_sets: Sequence[np.ndarray], schema: Schema, source: str = "",
                    spacings: Optional[Sequence[float]] = None, noise_mm: float = 1.0) -> ShapeModel:
    """(N, K, 2) label sets (any pixels) -> the schema's ShapeModel. ``spacings`` (N,) mm per pixel turn
    ``noise_mm`` into the model's units; without them no covariance is fitted."""
    radius = [np.sqrt(((p - p.mean(axis=0)) ** 2).sum(axis=1).mean()) for p in np.asarray(point_sets, np.float64)]
    sets = [_normalise(np.asarray(p, np.float64)) for p in point_sets]
    if len(sets) < 3:
        raise ValueError(f"a shape model needs at least 3 labelled images, got {len(sets)}")
    mean = sets[0]
    ones = np.ones(schema.k)
    for _ in range(20):
        aligned = [similarity_fit(p, mean, ones)[0] for p in sets]
        new = _normalise(np.mean(aligned, axis=0))
        done = np.abs(new - mean).max() < 1e-9
        mean = new
        if done:
            break
    res = []
    for p in sets:
        fitted, scale = similarity_fit(mean, p, ones)
        res.append(np.linalg.norm(p - fitted, axis=1) / scale)
    rms = np.sqrt(np.mean(np.square(res), axis=0))
    cov = None
    if spacings is not None:
        flat = np.stack([similarity_fit(p, mean, ones)[0].reshape(-1) for p in sets])
        noise = noise_mm / float(np.mean(np.asarray(radius) * np.asarray(spacings, np.float64)))
        cov = np.cov(flat.T) + noise ** 2 * np.eye(flat.shape[1])
    return ShapeModel(schema.id, schema.names, mean, rms, source, cov)


def write_shape_model(data: Path, out: Path, schema: str = "isbi19", split: str = "train",
                      annotators: str = "senior,junior", val_count: int = VAL_COUNT, seed: int = 0,
                      noise_mm: float = 1.0) -> ShapeModel:
    """Fit the shape model on ``data``'s ``split`` less the validation carve and write it to ``out`` (JSON)."""
    from train.datasets import load_train_val

    sch = get_schema(schema)
    sets, spacings, n = [], [], 0
    for ann in annotators.split(","):
        samples, _ = load_train_val(data, sch, "auto", [split], (ann,), val_count, seed)
        sets += [s.points for s in samples]
        spacings += [s.spacing for s in samples]
        n = len(samples)
    model = fit_shape_model(sets, sch, f"{data.name} {split} less a {val_count}-image validation carve "
                                       f"(seed {seed}; {n} images; {annotators}), noise {noise_mm} mm, "
                                       "scripts/fit_shape_model.py", spacings, noise_mm)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(model.to_dict()), encoding="utf-8")
    print(f"{out}: {sch.id}, {len(sets)} label sets; RMS residual per landmark {np.round(model.rms, 3).tolist()}")
    return model
