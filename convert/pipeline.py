"""One conversion run: checkpoint -> requested files, each checked, and a short report."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence

from tqdm.auto import tqdm

from train.checkpoint import load_checkpoint
from train.trainer import model_from_checkpoint

from . import check
from .export import checkpoint_meta, export_onnx, to_openvino
from .quantize import calibration_images, model_inputs, quantize_onnx_nncf, quantize_onnx_ort, quantize_openvino
from .tolerances import CALIB_COUNT, INT8_MEAN_TOL_INPUT_PX

log = logging.getLogger("cephalo.convert")


@dataclass(frozen=True)
class Format:
    """One output of :func:`convert`: its file name after the stem, the runtime it is checked on, its precision,
    and how it is made from the FP32 ONNX file (``make(onnx_path, calibration_inputs, out_path, meta)``)."""

    suffix: str
    backend: str
    precision: str
    make: Callable


def _fp32_ir(onnx_path, _calib, out, meta):
    return to_openvino(onnx_path, out, meta)


# The formats beside the FP32 ONNX file that is always written, in the order they are made: a new one is a row.
FORMATS: Dict[str, Format] = {
    "openvino": Format(".xml", "openvino", "fp32", _fp32_ir),
    "int8": Format("_int8.xml", "openvino", "int8", quantize_openvino),
    "int8_onnx": Format("_int8.onnx", "openvino", "int8", quantize_onnx_nncf),
    "ort_qdq": Format("_int8_ort.onnx", "onnxruntime", "int8", quantize_onnx_ort),
}


def convert(checkpoint: Path, out_dir: Path, *, stem: str = "model", onnx: bool = True, openvino: bool = False,
            int8: bool = False, int8_onnx: bool = False, ort_qdq: bool = False, calib_data: Optional[Path] = None,
            calib_split: Optional[str] = "train", calib_count: int = CALIB_COUNT, do_check: bool = True,
            check_images: int = 4, int8_tol_input_px: float = INT8_MEAN_TOL_INPUT_PX,
            eval_samples: Optional[Sequence] = None, extra_meta: Optional[Dict] = None, progress: bool = True) -> Dict:
    """Write the FP32 ONNX file and the requested :data:`FORMATS` (``openvino``, ``int8``, ``int8_onnx``,
    ``ort_qdq``: True for each wanted) into ``out_dir``, each checked against PyTorch (INT8 within
    ``int8_tol_input_px``); returns the report (also written as ``<stem>_report.json``).

    ``eval_samples`` (labelled ``train.data.readers.Sample``s) adds MRE per file, FP32 vs INT8.
    """
    wanted = [k for k, on in (("openvino", openvino), ("int8", int8), ("int8_onnx", int8_onnx),
                              ("ort_qdq", ort_qdq)) if on]
    ck = load_checkpoint(checkpoint)
    model = model_from_checkpoint(ck)
    meta = checkpoint_meta(ck, extra=extra_meta)
    out_dir = Path(out_dir)
    want_int8 = any(FORMATS[k].precision == "int8" for k in wanted)
    if want_int8 and calib_data is None:
        raise ValueError("INT8 needs calibration images: give --calib-data DIR")
    calib_paths = calibration_images(calib_data, calib_split, calib_count) if want_int8 else []
    check_paths = calib_paths[:check_images] if calib_paths else (
        calibration_images(calib_data, calib_split, check_images) if calib_data else [])
    if do_check and not check_paths:
        raise ValueError("checks need a few real images: give --calib-data DIR (or --no-check)")

    bar = tqdm(total=1 + len(wanted), desc="convert", disable=not progress)
    report: Dict = {"checkpoint": str(checkpoint), "epoch": int(ck["epoch"]), "files": {}}
    onnx_path = out_dir / f"{stem}.onnx"
    export_onnx(ck, onnx_path, meta)
    files = {"onnx": (onnx_path, "onnxruntime", "fp32")}
    bar.update(1)
    calib = model_inputs(calib_paths, meta) if want_int8 else []
    for key in wanted:
        f = FORMATS[key]
        files[key] = (f.make(onnx_path, calib, out_dir / f"{stem}{f.suffix}", meta), f.backend, f.precision)
        bar.update(1)
    bar.close()

    for key, (path, backend, precision) in files.items():
        entry: Dict = {"path": str(path), "precision": precision, "size_mb": _size_mb(path)}
        if do_check:
            p = check.parity(model, path, check_paths, meta, backend)
            entry["parity"] = p.as_dict()
            try:
                if precision == "fp32":
                    check.require_fp32(p)
                else:
                    check.require_int8(p, int8_tol_input_px)
            except check.ParityError:
                _remove(path)  # a file that fails its check is not left looking usable
                raise
        if eval_samples:
            m = check.detector_accuracy(path, eval_samples, backend)
            entry["accuracy"] = {k: m[k] for k in ("mre_mm", "sd_mm", "mre_input_px", "sdr")}
        report["files"][key] = entry
        log.info("%s: %s", key, json.dumps({k: v for k, v in entry.items() if k != "path"}))
    if eval_samples and "onnx" in report["files"]:
        base = report["files"]["onnx"]["accuracy"]["mre_mm"]
        for e in report["files"].values():
            e["accuracy"]["mre_change_mm"] = e["accuracy"]["mre_mm"] - base
    (out_dir / f"{stem}_report.json").write_text(json.dumps(report, indent=2))
    return report


def _remove(path: Path) -> None:
    path = Path(path)
    path.unlink(missing_ok=True)
    if path.suffix == ".xml":
        path.with_suffix(".bin").unlink(missing_ok=True)


def _size_mb(path: Path) -> float:
    path = Path(path)
    total = path.stat().st_size + (path.with_suffix(".bin").stat().st_size if path.suffix == ".xml" else 0)
    return round(total / 2**20, 2)
