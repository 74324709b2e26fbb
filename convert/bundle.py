"""Building the SDK's bundled files as Python calls (``cephalo bundle`` / ``bundle-local`` and the recipes): the
INT8 file with its Test1/Test2 accuracy in its metadata, the FP32 reference beside it, and the model card."""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Callable, Dict, Optional

from sdk.detector import DEFAULT_MODEL, MODELS_DIR

from .model_card import embed_accuracy, headline, isbi_accuracy, render
from .tolerances import CALIB_COUNT, INT8_MEAN_TOL_INPUT_PX

_log = logging.getLogger(__name__)
LICENCE = "CC BY-NC 4.0 (inherited from the ISBI 2015 data)"


def _install(src: Path, dest: Path, log: Callable[[str], None]) -> None:
    shutil.copyfile(src, dest)
    log(f"installed {dest}")


def bundle_first_stage(checkpoint: Path, data_dir: Path, work_dir: Path, *, calib_count: int = CALIB_COUNT,
                       install: bool = False, int8_tol: float = INT8_MEAN_TOL_INPUT_PX, notes: str = "",
                       log: Callable[[str], None] = _log.info) -> Dict:
    """Checkpoint -> INT8 (NNCF, QDQ ONNX) + FP32 reference in ``work_dir``, Test1/Test2 accuracy embedded, model
    card written; ``install`` copies the INT8 file and card into ``sdk/models``. Returns the card and the figures."""
    from .pipeline import convert

    rep = convert(checkpoint, work_dir, stem="model", int8_onnx=True, calib_data=data_dir, calib_split="train",
                  calib_count=calib_count, int8_tol_input_px=int8_tol)
    int8 = work_dir / "model_int8.onnx"
    results = {"FP32": isbi_accuracy(work_dir / "model.onnx", data_dir, backend="onnxruntime"),
               "INT8": isbi_accuracy(int8, data_dir, backend="onnxruntime")}
    meta = embed_accuracy(int8, headline(results["INT8"]),
                          {"licence": LICENCE, "fp32_accuracy": headline(results["FP32"])})
    card = render(meta, DEFAULT_MODEL, int8.stat().st_size / 2**20, results, notes)
    (work_dir / "MODEL_CARD.md").write_text(card, encoding="utf-8")
    (work_dir / "accuracy.json").write_text(json.dumps({"convert": rep, "isbi": results}, indent=2))
    if install:
        _install(int8, MODELS_DIR / DEFAULT_MODEL, log)
        shutil.copyfile(work_dir / "MODEL_CARD.md", MODELS_DIR / "MODEL_CARD.md")
    return {"card": card, "isbi": results, "convert": rep}


def bundle_local_stage(checkpoint: Path, data_dir: Path, work_dir: Path, *, prior_sd: Optional[float] = None,
                       first_model: Optional[Path] = None, calib_count: int = CALIB_COUNT, install: bool = False,
                       notes: str = "", labels: str = "consensus", log: Callable[[str], None] = _log.info) -> Dict:
    """A local-stage checkpoint -> FP32 + INT8 ONNX, the accuracy of the pair behind ``first_model`` (default: the
    bundled one) in its metadata, and the card. ``install``: a 'consensus' stage becomes the bundled pair (with
    ``first_model`` when given, since the card describes the pair); any other ``labels`` is installed beside it as
    ``<model>.<labels>.local.onnx``, leaving the default pair and its card alone."""
    from sdk.backends import open_backend
    from sdk.local_stage import local_stage_path
    from sdk.schemas import ISBI19
    from train.datasets import load_folder
    from train.local_stage import load_local_checkpoint

    from .local_stage import convert_local

    ck = load_local_checkpoint(checkpoint)
    first = first_model or MODELS_DIR / DEFAULT_MODEL
    work_dir.mkdir(parents=True, exist_ok=True)
    calib = load_folder(data_dir, ISBI19, split=["train"])[:calib_count]
    files = convert_local(ck, ISBI19.to_dict(), work_dir / "model.local.onnx", calib, prior_sd=prior_sd)
    results = {"INT8, first stage only": isbi_accuracy(first, data_dir, backend="onnxruntime"),
               "INT8 + local FP32": isbi_accuracy(first, data_dir, backend="onnxruntime", local_stage=files["fp32"]),
               "INT8 + local INT8": isbi_accuracy(first, data_dir, backend="onnxruntime", local_stage=files["int8"])}
    local_name = local_stage_path(MODELS_DIR / DEFAULT_MODEL, labels).name   # its name once installed
    lmeta = embed_accuracy(files["int8"], headline(results["INT8 + local INT8"]),
                           {"licence": LICENCE, "fp32_accuracy": headline(results["INT8 + local FP32"]),
                            "first_stage": DEFAULT_MODEL})
    meta = open_backend(first, "onnxruntime").meta
    card = render(meta, DEFAULT_MODEL, first.stat().st_size / 2**20, results, notes,
                  local=(lmeta, local_name, files["int8"].stat().st_size / 2**20))
    (work_dir / "MODEL_CARD.md").write_text(card, encoding="utf-8")
    (work_dir / "accuracy.json").write_text(json.dumps({"isbi": results}, indent=2))
    if install:
        default_pair = labels == "consensus"
        if first_model is not None and default_pair:
            _install(first, MODELS_DIR / DEFAULT_MODEL, log)
        _install(files["int8"], MODELS_DIR / local_name, log)
        if default_pair:
            shutil.copyfile(work_dir / "MODEL_CARD.md", MODELS_DIR / "MODEL_CARD.md")
    return {"card": card, "isbi": results, "files": files}
