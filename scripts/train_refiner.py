"""Train the local stage on ISBI 2015 train (the first stage's own train/val split) and print val MRE per epoch.

python scripts/train_refiner.py --data ../shared/data/isbi2015 --out ~/cephalo-runs/refine96 [--epochs 40]
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from sdk import Detector
from sdk.schemas import get_schema
from train.datasets import load_folder
from train.refine import RefineConfig, first_stage_points, train_refiner
from train.trainer import split_train_val


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--patch", type=int, default=96)
    ap.add_argument("--factor", type=float, default=3.0)
    ap.add_argument("--limit", type=int, default=0, help="first N training images only (smoke runs)")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    schema = get_schema("isbi19")
    samples = load_folder(a.data, schema, split=["train"])
    train, val = split_train_val(samples, 30, 0)
    if a.limit:
        train, val = train[:a.limit], val[:max(2, a.limit // 4)]
    a.out.mkdir(parents=True, exist_ok=True)
    cache = a.out / "first_stage_val.npz"
    if cache.is_file():
        first = dict(np.load(cache))
    else:
        first = first_stage_points(Detector(threads=a.threads), val)
        np.savez(cache, **first)
    cfg = RefineConfig(epochs=a.epochs, patch=a.patch, factor=a.factor)
    train_refiner(train, val, first, schema.k, cfg, a.out, a.threads)


if __name__ == "__main__":
    main()
