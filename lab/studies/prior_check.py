"""Decode prior of a local stage on the 30 validation images and 4 cross-site variants: MRE (mean labels) and points > 10 mm.

    python -m lab.studies.prior_check LOCAL_INT8.onnx OUT.json 4,6,8
"""
import json
import sys
from pathlib import Path

import onnx

from sdk import Detector
from sdk.metadata import META_KEY
from sdk.schemas import get_schema
from train.calibrate import collect
from train.datasets import load_train_val

src = Path(sys.argv[1])
_, va = load_train_val(Path('../shared/data/isbi2015'), get_schema('isbi19'), 'auto', ['train'], ('senior', 'junior'), 30, 0, False)
variants = ["as is", "other machine (170x212 mm field, 0.127 mm/px)", "a second ruler on the back of the head",
            "burned-in text and label", "sigmoid tone curve"]
out = {}
for sd in [float(v) for v in sys.argv[3].split(",")]:
    m = onnx.load(str(src))
    for p in m.metadata_props:
        if p.key == META_KEY:
            d = json.loads(p.value); d["extra"]["prior_sd"] = sd; p.value = json.dumps(d)
    f = Path(f"/tmp/prior{sd:g}.local.onnx"); onnx.save(m, str(f))
    det = Detector(local_stage=f, backend="onnxruntime")
    c = collect(det, va, variants)
    out[f"prior {sd:g}"] = {v: {"mean_mm": round(float(c["error_mm"][c["variant"] == v].mean()), 3),
                                "gt10": int((c["error_mm"][c["variant"] == v] > 10).sum())} for v in variants}
    print(sd, out[f"prior {sd:g}"], flush=True)
Path(sys.argv[2]).write_text(json.dumps(out, indent=1))
