"""How the local stage changes the first stage's points on the 30 held-out training images, per landmark.

python -m lab.studies.local_stage_probe --data ../shared/data/isbi2015 --run ~/cephalo-runs/refine96 [--ckpt last.pt]
    [--first OTHER_RUN/first_stage_val.npz] [--out FILE]

Reads ``first_stage_val.npz`` (the bundled Detector's points) and ``best.pt`` from the run folder. Reports, in mm:
first stage alone, refined (1 and 2 passes), the mean of both points, and a refinement whose heatmap is weighted
by a Gaussian prior around the first-stage point (sd in first-stage input pixels).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from sdk.schemas import get_schema
from train.datasets import load_folder
from train.local_stage import (
    LocalConfig,
    load_fine,
    load_local_checkpoint,
    local_stage_points,
    model_from_local_checkpoint,
)
from train.trainer import split_train_val


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--ckpt", default="best.pt")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--first", type=Path, help="first-stage points (.npz by image id; default RUN/first_stage_val.npz), "
                                               "to compare runs from the same points")
    a = ap.parse_args()
    torch.set_num_threads(2)
    schema = get_schema("isbi19")
    ck = load_local_checkpoint(a.run / a.ckpt)
    cfg = LocalConfig.from_dict(ck["config"])
    model = model_from_local_checkpoint(ck)
    _, val = split_train_val(load_folder(a.data, schema, split=["train"]), 30, 0)
    data = load_fine(val, cfg)
    first = dict(np.load(a.first or a.run / "first_stage_val.npz"))
    variants = {"first stage": [], "refined": [], "refined x2": [], "mean of both": []}
    priors = (2.0, 3.0, 4.0, 6.0)
    for s in priors:
        variants[f"prior sd {s:g} in-px"] = []
    for d in data:
        p0 = first[d.id]
        r1 = local_stage_points(model, d.fine, p0, cfg, 0.0)
        r2 = local_stage_points(model, d.fine, r1, cfg, 0.0)
        pts = {"first stage": p0, "refined": r1, "refined x2": r2, "mean of both": (p0 + r1) / 2}
        for s in priors:
            pts[f"prior sd {s:g} in-px"] = local_stage_points(model, d.fine, p0, cfg, s)
        for k, v in pts.items():
            variants[k].append(np.linalg.norm(v - d.truth, axis=1) * d.spacing)
    res = {"checkpoint": str(a.run / a.ckpt), "epoch": int(ck["epoch"]), "data": ck.get("data", ""),
           "first_stage_points": str(a.first or a.run / "first_stage_val.npz"), "variants": {}}
    for k, v in variants.items():
        e = np.stack(v)                                    # (images, K)
        res["variants"][k] = {"mre_mm": round(float(e.mean()), 4), "sdr2": round(float((e <= 2).mean() * 100), 1),
                              "sdr4": round(float((e <= 4).mean() * 100), 1),
                              "per_landmark": [round(float(x), 3) for x in e.mean(axis=0)]}
        print(f"{k:24s} MRE {e.mean():.3f} mm  SDR@2 {(e <= 2).mean() * 100:.1f}%  SDR@4 {(e <= 4).mean() * 100:.1f}%")
    names = schema.names
    f0, f1 = res["variants"]["first stage"]["per_landmark"], res["variants"]["refined"]["per_landmark"]
    for i, n in enumerate(names):
        print(f"  {i + 1:2d} {n:28s} {f0[i]:.2f} -> {f1[i]:.2f}")
    if a.out:
        a.out.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
