# One-off probe kept as the record of a TRAINING.md figure: run from the repository root; it reads the run
# folders under ~/cephalo-runs named below (bundle_ft320, bundle_local96), which are not in the repository.
"""Probe: match each image's grey-level histogram to the training images' mean before the Detector."""
import json
from pathlib import Path

import numpy as np

from benchmarks.robustness import VARIANTS
from sdk import Detector
from sdk.image_io import load_image
from sdk.metrics import radial_errors
from sdk.schemas import ISBI19
from train.datasets import load_folder
from train.trainer import split_train_val

H = Path.home() / "cephalo-runs"
det = Detector(H / "bundle_ft320/model_int8.onnx", backend="onnxruntime", threads=2, local_stage=H / "bundle_local96/model_int8.local.onnx")
tr, va = split_train_val(load_folder("../shared/data/isbi2015", ISBI19, split=["train"]), 30, 0)
def cdf(g):
    h = np.bincount(g.ravel(), minlength=256).astype(np.float64)
    return np.cumsum(h) / h.sum()
ref = np.mean([cdf(load_image(s.image, reduce_for=(320, 320)).gray) for s in tr], axis=0)
def match(g):
    c = cdf(g)
    lut = np.clip(np.searchsorted(ref, c, side="left"), 0, 255).astype(np.uint8)
    return lut[g]
grays = [load_image(s.image).gray for s in va]
res = {}
for name in ["as is", "gamma 0.6 (brighter)", "gamma 1.6 (darker)", "contrast x0.6", "CLAHE (clip 2, 8x8 tiles)",
             "unsharp mask (x1.5, sigma 20 px)", "histogram equalised", "crop 10% each side", "wide canvas (+50% width, padded)"]:
    fimg, fpts, sp = VARIANTS[name]
    errs = []
    for s, g in zip(va, grays):
        img = fimg(g)
        gt = fpts(s.points, g.shape)
        e = radial_errors(det(match(img)).xy[None], gt[None])[0] * s.spacing * sp
        inside = (gt[:, 0] >= 0) & (gt[:, 0] < img.shape[1]) & (gt[:, 1] >= 0) & (gt[:, 1] < img.shape[0])
        errs.append(e[inside])
    res[name] = float(np.concatenate(errs).mean())
    print(f"{name:36s} hist-matched MRE {res[name]:.3f}", flush=True)
json.dump(res, open("/tmp/histmatch_probe.json", "w"), indent=1)
