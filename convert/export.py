"""Checkpoint -> ONNX (opset 17, dynamic batch, constant-folded, with the contract's metadata) -> OpenVINO IR."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, Optional

import onnx
import torch

from sdk.metadata import META_KEY, ModelMeta
from sdk.schemas import schema_from_dict
from train.config import TrainConfig
from train.trainer import model_from_checkpoint

from .files import atomic_ir, atomic_path

log = logging.getLogger("cephalo.convert")
OPSET = 17


def checkpoint_meta(ck: Dict, accuracy: Optional[Dict] = None, extra: Optional[Dict] = None) -> ModelMeta:
    """The metadata a model exported from checkpoint ``ck`` carries."""
    cfg = TrainConfig.from_dict(ck["config"])
    hist = [h for h in ck.get("history") or [] if "val_mre_mm" in h]
    # the checkpoint's own epoch (last.pt is not always the best epoch); older files without it: the best
    own = next((h for h in hist if h.get("epoch") == ck.get("epoch")), None)
    best = own or min(hist, key=lambda h: h["val_mre_mm"], default=None)
    acc = ({"validation": {"epoch": best["epoch"], "mre_mm": best["val_mre_mm"], "sdr_2mm": best["val_sdr2"]}}
           if best else {})
    acc.update(accuracy or {})
    recipe = {k: getattr(cfg, k) for k in ("backbone", "input_size", "heatmap_stride", "sigma", "coord_weight",
                                            "focal_weight", "epochs", "batch_size", "lr", "warmup_epochs",
                                            "restart_period", "augment", "aug_scale_min", "aug_scale_max",
                                            "aug_processing_p", "aug_artifacts_p", "aug_gamma_max")}
    return ModelMeta(schema=schema_from_dict(ck["schema"]), input_h=cfg.input_size, input_w=cfg.input_size,
                     channels=cfg.channels, mean=cfg.mean, std=cfg.std, pad_value=cfg.pad_value,
                     heatmap_stride=cfg.heatmap_stride, sigma=cfg.sigma, decoder="dark",
                     trained_on=str(ck.get("data", "")), accuracy=acc,
                     extra={"precision": "fp32", "epochs_trained": int(ck["epoch"]), "recipe": recipe,
                            "preprocessing": {"resize": cfg.preprocessing.resize,
                                              "version": cfg.preprocessing.version},
                            **({"fine_tuned_from": ck["init"]} if ck.get("init") else {}),
                            **(extra or {})})


def set_onnx_meta(model: onnx.ModelProto, meta: ModelMeta) -> None:
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = META_KEY, meta.to_json()


def export_onnx(ck: Dict, out: Path, meta: ModelMeta, simplify: bool = True, opset: int = OPSET) -> Path:
    """Write the checkpoint's model as ONNX with ``meta`` to ``out`` (atomically). Input ``image`` (N, C, H, W),
    output ``heatmaps`` (N, K, h, w), batch dimension dynamic."""
    return export_module(model_from_checkpoint(ck), out, meta, simplify, opset)


def export_module(model: torch.nn.Module, out: Path, meta: ModelMeta, simplify: bool = True,
                  opset: int = OPSET) -> Path:
    """Any heatmap network (first or local stage) -> ONNX under the model contract, written atomically."""
    model = model.float().eval()
    x = torch.zeros(1, meta.channels, meta.input_h, meta.input_w)
    with atomic_path(out) as tmp:
        with torch.no_grad():
            torch.onnx.export(model, (x,), str(tmp), input_names=["image"], output_names=["heatmaps"],
                              opset_version=opset, dynamic_axes={"image": {0: "batch"}, "heatmaps": {0: "batch"}},
                              do_constant_folding=True, dynamo=False)
        proto = onnx.load(str(tmp))
        if simplify:
            import onnxslim

            proto = onnxslim.slim(proto)  # folds constants, fuses BN into convs, removes dead nodes
        set_onnx_meta(proto, meta)
        onnx.checker.check_model(proto, full_check=True)
        onnx.save(proto, str(tmp))
    log.info("ONNX written: %s", out)
    return out


def to_openvino(onnx_path: Path, xml_out: Path, meta: ModelMeta) -> Path:
    """OpenVINO IR (FP32 weights) of an ONNX file, with ``meta`` in its rt_info."""
    import openvino as ov

    model = ov.convert_model(str(onnx_path))
    model.set_rt_info(meta.to_json(), [META_KEY])
    with atomic_ir(xml_out) as tmp:
        ov.save_model(model, str(tmp), compress_to_fp16=False)
    log.info("OpenVINO IR written: %s", xml_out)
    return xml_out
