"""Install a new first stage behind the shipped local stages (their weights unchanged): the pair's Test1/Test2
accuracy into each local stage's metadata, and the model card re-rendered with a note added on top.

    python -m lab.studies.swap_first_stage BUNDLE_DIR NOTE_FILE [--data ../shared/data/isbi2015]

BUNDLE_DIR: what ``cephalo bundle`` wrote for the new first stage (model_int8.onnx, accuracy.json). The flags'
calibrations are refitted separately (``cephalo calibrate``), since they depend on the first stage.
"""
import argparse
import json
import shutil
from pathlib import Path

from convert.bundle import LICENCE
from convert.model_card import embed_accuracy, headline, isbi_accuracy, render
from sdk.backends import open_backend
from sdk.detector import DEFAULT_MODEL, MODELS_DIR

ap = argparse.ArgumentParser()
ap.add_argument("bundle", type=Path)
ap.add_argument("note", type=Path)
ap.add_argument("--data", type=Path, default=Path("../shared/data/isbi2015"))
a = ap.parse_args()
first, local = MODELS_DIR / DEFAULT_MODEL, MODELS_DIR / DEFAULT_MODEL.replace(".onnx", ".local.onnx")
challenge = MODELS_DIR / DEFAULT_MODEL.replace(".onnx", ".challenge.local.onnx")
shutil.copyfile(a.bundle / "model_int8.onnx", first)
old_card = (MODELS_DIR / "MODEL_CARD.md").read_text(encoding="utf-8")
notes = a.note.read_text(encoding="utf-8").strip() + "\n\n" + old_card.split("## Notes\n", 1)[1].strip()
results = {"INT8, first stage only": json.loads((a.bundle / "accuracy.json").read_text())["isbi"]["INT8"],
           "INT8 + local INT8": isbi_accuracy(first, a.data, backend="onnxruntime", local_stage=local)}
# the pair's FP32-local figures were of the previous first stage: dropped rather than left stale
lmeta = embed_accuracy(local, headline(results["INT8 + local INT8"]),
                       {"licence": LICENCE, "first_stage": DEFAULT_MODEL, "fp32_accuracy": None})
results_challenge = isbi_accuracy(first, a.data, backend="onnxruntime", local_stage=challenge)
embed_accuracy(challenge, headline(results_challenge), {"first_stage": DEFAULT_MODEL, "fp32_accuracy": None})
card = render(open_backend(first, "onnxruntime").meta, DEFAULT_MODEL, first.stat().st_size / 2**20, results, notes,
              local=(lmeta, local.name, local.stat().st_size / 2**20))
# the card's hand-written line on the challenge option stays where it was
option = [line for line in old_card.splitlines() if line.startswith("- Option")]
lines = card.splitlines()
at = next(i for i, line in enumerate(lines) if line.startswith("- Local stage")) + 1
(MODELS_DIR / "MODEL_CARD.md").write_text("\n".join(lines[:at] + option + lines[at:]) + "\n", encoding="utf-8")
(a.bundle / "pair_accuracy.json").write_text(json.dumps({**results, "INT8 + challenge local INT8": results_challenge},
                                                       indent=2))
print(card.split("## Per landmark")[0])
