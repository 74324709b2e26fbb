# One-off probe kept as the record of a TRAINING.md figure: run from the repository root; it reads the run
# folders under ~/cephalo-runs named below (bundle_ft320, bundle_local96), which are not in the repository.
from pathlib import Path

import numpy as np

from benchmarks.robustness import _contrast, _gamma
from sdk import Detector
from sdk.image_io import load_image
from sdk.metrics import radial_errors
from sdk.schemas import ISBI19
from train.datasets import load_folder
from train.trainer import split_train_val

H = Path.home() / "cephalo-runs"
det = Detector(H / "bundle_ft320/model_int8.onnx", backend="onnxruntime", threads=2, local_stage=H / "bundle_local96/model_int8.local.onnx")
samples = split_train_val(load_folder("../shared/data/isbi2015", ISBI19, split=["train"]), 30, 0)[1]
grays = [load_image(s.image).gray for s in samples]
for name, f in [("gamma 1.6 then 1/1.6 (8-bit round trip)", lambda g: _gamma(_gamma(g, 1.6), 1 / 1.6)),
                ("contrast x0.6 then x1/0.6", lambda g: _contrast(_contrast(g, 0.6), 1 / 0.6))]:
    e = np.concatenate([radial_errors(det(f(g)).xy[None], s.points[None])[0] * s.spacing for s, g in zip(samples, grays)])
    print(f"{name:42s} MRE {e.mean():.3f}")
