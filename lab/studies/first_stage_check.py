"""First-stage candidates behind the shipped local stage, on the 30 validation images and the 4 cross-site variants
of prior_check: MRE (mean labels) and points > 10 mm per variant (lab/results/consensus/first_stage_rule.txt).

    python -m lab.studies.first_stage_check OUT.json FIRST_INT8.onnx [FIRST_INT8.onnx ...]
"""
import json
import sys
from pathlib import Path

from sdk import Detector
from sdk.schemas import get_schema
from train.calibrate import collect
from train.datasets import load_train_val

_, va = load_train_val(Path('../shared/data/isbi2015'), get_schema('isbi19'), 'auto', ['train'], ('senior', 'junior'),
                       30, 0, False)
variants = ["as is", "other machine (170x212 mm field, 0.127 mm/px)", "a second ruler on the back of the head",
            "burned-in text and label", "sigmoid tone curve"]
LOCAL = "sdk/models/isbi19_default_int8.local.onnx"   # the shipped local stage (trained on the 120 images)
out = {}
for first in sys.argv[2:]:
    c = collect(Detector(first, local_stage=LOCAL, backend="onnxruntime"), va, variants)
    per = {v: {"mean_mm": round(float(c["error_mm"][c["variant"] == v].mean()), 3),
               "gt10": int((c["error_mm"][c["variant"] == v] > 10).sum())} for v in variants}
    per["total_gt10"] = sum(p["gt10"] for p in per.values())
    out[first] = per
    print(first, per, flush=True)
Path(sys.argv[1]).write_text(json.dumps(out, indent=1))
