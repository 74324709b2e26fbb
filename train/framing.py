"""Fit the training images' framing around their landmarks (:class:`sdk.framing.Framing`).

    python scripts/fit_framing.py --data ../shared/data/isbi2015 --out sdk/shapes/isbi19.framing.json

Mean margins over the training carve (the validation images held out, as for the models), labels averaged over
the annotators.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from sdk.framing import Framing

from .config import VAL_COUNT


def fit_framing(samples, image_hw, tolerance: float = 0.15, source: str = "") -> Framing:
    """``samples`` with ``points`` (K, 2) and ``image_hw``: one (h, w) per sample."""
    m = []
    for s, (h, w) in zip(samples, image_hw):
        (x0, y0), (x1, y1) = s.points.min(axis=0), s.points.max(axis=0)
        bw, bh = x1 - x0, y1 - y0
        m.append([x0 / bw, (w - x1) / bw, y0 / bh, (h - y1) / bh])
    left, right, top, bottom = np.mean(m, axis=0)
    return Framing(round(float(left), 4), round(float(right), 4), round(float(top), 4), round(float(bottom), 4),
                   tolerance, source)


def write_framing(data: Path, out: Path, schema: str = "isbi19", annotators: str = "senior,junior",
                  split: str = "train", val_count: int = VAL_COUNT, tolerance: float = 0.15) -> Framing:
    """Fit the framing on ``data``'s training carve and write it to ``out`` (JSON)."""
    from sdk.image_io import header_size
    from sdk.schemas import get_schema
    from train.datasets import load_train_val

    anns = tuple(annotators.split(","))
    tr, _ = load_train_val(data, get_schema(schema), "auto", [split], anns, val_count, 0, False)
    f = fit_framing(tr, [header_size(Path(s.image).read_bytes()) for s in tr], tolerance,
                    f"{data.name} {split} carve ({len(tr)} images; {annotators}), scripts/fit_framing.py")
    out.write_text(json.dumps(f.to_dict(), indent=1), encoding="utf-8")
    return f
