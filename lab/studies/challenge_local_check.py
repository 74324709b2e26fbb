"""The challenge-convention local stage against the shipped (consensus) one on the validation carve, INT8 + INT8
behind the shipped first stage, against each label set (rule: lab/results/flags/challenge_local_rule.txt).

    python -m lab.studies.challenge_local_check CHECKPOINT WORK_DIR OUT.json
"""
import json
import sys
from pathlib import Path

import numpy as np

from convert.local_stage import convert_local
from sdk import Detector
from sdk.schemas import ISBI19
from train.datasets import load_folder, load_train_val
from train.local_stage import load_local_checkpoint

DATA = Path("../shared/data/isbi2015")
ckpt, work, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
work.mkdir(parents=True, exist_ok=True)
calib = load_folder(DATA, ISBI19, split=["train"])[:100]      # as bundle-local calibrates INT8
int8 = convert_local(load_local_checkpoint(ckpt), ISBI19.to_dict(), work / "model.local.onnx", calib,
                     prior_sd=4.0)["int8"]
labels = {k: load_train_val(DATA, ISBI19, "auto", ["train"], a, 30, 0)[1]
          for k, a in {"senior": ("senior",), "junior": ("junior",), "mean": ("senior", "junior")}.items()}
report = {}
for name, local in {"consensus (shipped)": True, "challenge": int8}.items():
    det = Detector(backend="onnxruntime", threads=2, local_stage=local)
    xy = [det(s.image).xy for s in labels["senior"]]
    report[name] = {k: float(np.mean([np.linalg.norm(p - s.points, axis=1).mean() * s.spacing
                                      for p, s in zip(xy, ss)])) for k, ss in labels.items()}
    print(name, report[name])
out.write_text(json.dumps(report, indent=1))
