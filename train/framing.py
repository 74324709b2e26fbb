"""Fit the training images' framing around their landmarks (:class:`sdk.framing.Framing`).

    python -m train.framing --data ../shared/data/isbi2015 --out sdk/shapes/isbi19.framing.json

Mean margins over the training carve (the validation images held out, as for the models), labels averaged over
the annotators.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from sdk.framing import Framing


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


def main(argv=None) -> None:
    from sdk.image_io import header_size
    from sdk.schemas import get_schema
    from train.datasets import load_train_val

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--schema", default="isbi19")
    ap.add_argument("--annotators", default="senior,junior")
    ap.add_argument("--split", default="train")
    ap.add_argument("--val-count", type=int, default=30)
    ap.add_argument("--tolerance", type=float, default=0.15)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    anns = tuple(a.annotators.split(","))
    tr, _ = load_train_val(a.data, get_schema(a.schema), "auto", [a.split], anns, a.val_count, 0, False)
    f = fit_framing(tr, [header_size(Path(s.image).read_bytes()) for s in tr], a.tolerance,
                    f"{a.data.name} {a.split} carve ({len(tr)} images; {a.annotators}), python -m train.framing")
    a.out.write_text(json.dumps(f.to_dict(), indent=1), encoding="utf-8")
    print(json.dumps(f.to_dict()))


if __name__ == "__main__":
    main()
