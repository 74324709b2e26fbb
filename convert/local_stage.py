"""Local-stage checkpoint -> ONNX with the contract's metadata (``extra.stage = 'local'``) -> NNCF INT8 QDQ.

The file is named ``<first stage stem>.local.onnx`` beside the first-stage model so the Detector finds it
(:func:`sdk.local_stage.local_stage_path`). Calibration patches are cut from training images around their labelled
points moved as the first stage's errors move them, through the SDK's own cut (:func:`sdk.local_stage.local_inputs`).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from sdk.image_io import load_image
from sdk.local_stage import HEAD_KEY, LOCAL_STAGE, STAGE_KEY, anatomy, fine_image, head_zoom, local_inputs
from sdk.metadata import ModelMeta
from sdk.preprocess import letterbox_geometry
from sdk.schemas import schema_from_dict
from train.local_stage import LocalConfig, model_from_local_checkpoint

from .export import export_module
from .quantize import quantize_onnx_nncf

log = logging.getLogger("cephalo.convert")


def local_meta(ck: Dict, schema: Dict, accuracy: Optional[Dict] = None, trained_on: str = "",
               prior_sd: Optional[float] = None) -> ModelMeta:
    """Metadata of an exported local-stage model; ``prior_sd`` overrides the checkpoint's decode prior."""
    cfg = LocalConfig.from_dict(ck["config"])
    prior = cfg.prior_sd if prior_sd is None else float(prior_sd)
    if prior < 0:
        raise ValueError(f"prior_sd must be >= 0 first-stage input pixels, got {prior}")
    hist = [h for h in ck.get("history") or [] if "mre_mm" in h]   # none in a final fit (no validation)
    best = min(hist, key=lambda h: h["mre_mm"], default=None)
    acc = {"validation": {"epoch": best["epoch"], "first_stage_mre_mm": best["first_mre_mm"],
                          "mre_mm": best["mre_mm"], "sdr_2mm": best["sdr2"]}} if best else {}
    trained_on = trained_on or str(ck.get("data", ""))
    acc.update(accuracy or {})
    recipe = {k: getattr(cfg, k) for k in ("patch", "factor", "stride", "sigma", "widths", "shift_sd",
                                            "shift_uniform_p", "rotate_deg", "scale", "epochs", "batch_size", "lr")}
    return ModelMeta(schema=schema_from_dict(schema), input_h=cfg.patch, input_w=cfg.patch, channels=1,
                     mean=cfg.mean, std=cfg.std, pad_value=cfg.pad_value, heatmap_stride=cfg.stride, sigma=cfg.sigma,
                     decoder="dark", trained_on=trained_on, accuracy=acc,
                     extra={STAGE_KEY: LOCAL_STAGE, "factor": cfg.factor,
                            "first_stage_input": [cfg.input_size, cfg.input_size], "prior_sd": prior,
                            "precision": "fp32",
                            **({HEAD_KEY: cfg.head_size} if cfg.head_size > 0 else {}),
                            "epochs_trained": int(ck["epoch"]), "recipe": recipe})


def calibration_patches(samples: Sequence, cfg: LocalConfig, shift_sd_px: float = 3.0,
                        seed: int = 0, schema=None) -> List[np.ndarray]:
    """One (K, 1, P, P) batch of patches per sample, centred on its points plus first-stage-like errors."""
    rng = np.random.default_rng(seed)
    out = []
    for s in samples:
        gray = load_image(s.image).gray
        lb = letterbox_geometry(gray.shape[:2], (cfg.input_size, cfg.input_size))
        guess = s.points + rng.normal(0, shift_sd_px / lb.scale_x, size=s.points.shape)
        zoom = head_zoom(cfg.head_size, guess if schema is None else guess[anatomy(schema)], lb)   # as the Detector
        fine = fine_image(gray, lb, cfg.factor * zoom)
        out.append(local_inputs(fine, guess, cfg.params)[0])
    return out


def convert_local(ck: Dict, schema: Dict, out: Path, calib_samples: Sequence, int8: bool = True,
                  accuracy: Optional[Dict] = None, trained_on: str = "", prior_sd: Optional[float] = None
                  ) -> Dict[str, Path]:
    """Write ``out`` (fp32 ONNX) and, with ``int8``, ``<out stem>_int8 ...``: returns {'fp32': path, 'int8': path}."""
    out = Path(out)
    meta = local_meta(ck, schema, accuracy, trained_on, prior_sd)
    model = model_from_local_checkpoint(ck)
    files = {"fp32": export_module(model, out, meta)}
    if int8:
        cfg = LocalConfig.from_dict(ck["config"])
        calib = calibration_patches(calib_samples, cfg, schema=meta.schema)
        q = (out.with_name(out.name.replace(".local.onnx", "_int8.local.onnx")) if out.name.endswith(".local.onnx")
             else out.with_name(out.stem + "_int8.onnx"))
        files["int8"] = quantize_onnx_nncf(out, calib, q, meta)
    return files


def add_head_size(onnx_path: Path, samples: Sequence) -> float:
    """Give a local-stage file made before ``extra.head_size`` the head size of the images it learnt from
    (``samples``: their labels; :func:`train.local_stage.training_head_size` behind its first-stage input), so
    that the Detector cuts its patches at the head's scale. Returns the size written."""
    from sdk.backends import open_backend
    from train.local_stage import training_head_size

    from .model_card import update_meta

    meta = open_backend(Path(onnx_path), "onnxruntime").meta
    if meta.extra.get(STAGE_KEY) != LOCAL_STAGE:
        raise ValueError(f"{onnx_path} is not a local-stage model")
    size = round(training_head_size(samples, int(meta.extra["first_stage_input"][0]), meta.schema), 3)
    update_meta(Path(onnx_path), extra={HEAD_KEY: size})
    return size
