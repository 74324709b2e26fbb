"""INT8 post-training quantization, calibrated on real cephalograms through the SDK's preprocessing.

- NNCF on the OpenVINO model (IR out): the fastest path on x86 CPUs with VNNI.
- NNCF on the ONNX model (QDQ ONNX out): one INT8 file that both onnxruntime and OpenVINO run.
- onnxruntime static QDQ (per-channel weights), for users with onnxruntime only.
- PyTorch dynamic quantization, the brief's original idea: it only touches Linear/LSTM layers, so a conv net
  barely changes; kept to be measured, not recommended.
"""
from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Iterable, List, Sequence

import numpy as np

from sdk.metadata import META_KEY, ModelMeta
from train.datasets import image_files as calibration_images  # noqa: F401  (its name here)

from .files import atomic_ir, atomic_path
from .qdq_concat import requantize_concats

log = logging.getLogger("cephalo.convert")
def model_inputs(paths: Iterable[Path], meta: ModelMeta) -> List[np.ndarray]:
    """(1, C, H, W) float32 model inputs of ``paths`` by the SDK's preprocessing."""
    out = []
    for p in paths:
        x, _, _ = meta.preprocessing.prepare(p, fast_decode=False)
        out.append(x[None])
    return out


def quantize_openvino(fp32_path: Path, calib: Sequence[np.ndarray], xml_out: Path, meta: ModelMeta,
                      fast_bias_correction: bool = True) -> Path:
    """NNCF INT8 of an ONNX or IR model -> OpenVINO IR with the metadata (precision int8)."""
    import nncf
    import openvino as ov

    model = ov.Core().read_model(str(fp32_path))
    q = nncf.quantize(model, nncf.Dataset(list(calib)), subset_size=len(calib),
                      fast_bias_correction=fast_bias_correction)
    q.set_rt_info(_int8_meta(meta, "nncf-openvino").to_json(), [META_KEY])
    with atomic_ir(xml_out) as tmp:
        ov.save_model(q, str(tmp), compress_to_fp16=False)
    return xml_out


def quantize_onnx_nncf(onnx_path: Path, calib: Sequence[np.ndarray], out: Path, meta: ModelMeta,
                       keep_float: Sequence[str] = ()) -> Path:
    """NNCF INT8 on the ONNX graph -> a QDQ ONNX file (runs on onnxruntime and OpenVINO). ``keep_float``: node
    names left in floating point (NNCF's ignored scope)."""
    import nncf
    import onnx

    from .export import set_onnx_meta

    model = onnx.load(str(onnx_path))
    name = model.graph.input[0].name
    scope = nncf.IgnoredScope(names=list(keep_float)) if keep_float else None
    q = nncf.quantize(model, nncf.Dataset(list(calib), lambda x: {name: x}), subset_size=len(calib),
                      **({"ignored_scope": scope} if scope else {}))
    n = requantize_concats(q)     # so that onnxruntime also runs the convolutions after a Concat in INT8
    if n:
        log.info("requantized %d Concat output(s) for onnxruntime", n)
    set_onnx_meta(q, _int8_meta(meta, "nncf-onnx-qdq"))
    with atomic_path(out) as tmp:
        onnx.save(q, str(tmp))
    return out


def quantize_onnx_ort(onnx_path: Path, calib: Sequence[np.ndarray], out: Path, meta: ModelMeta) -> Path:
    """onnxruntime static quantization: QDQ format, per-channel 7-bit int8 weights, uint8 activations (MinMax)."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from .export import set_onnx_meta

    name = onnx.load(str(onnx_path), load_external_data=False).graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(calib)

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {name: x}

    with atomic_path(out) as tmp:
        # reduce_range (7-bit weights): without VNNI, u8 x s8 products are summed in int16 by vpmaddubsw, which
        # saturates; full-range weights moved a trained HRNet-W32's points by 2.2 input px on an AVX2 CPU, 7-bit
        # weights by 0.13 (as NNCF's files, whose overflow fix does the same). A file must run on any CPU.
        quantize_static(str(onnx_path), str(tmp), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        reduce_range=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        q = onnx.load(str(tmp))
        set_onnx_meta(q, _int8_meta(meta, "onnxruntime-static-qdq"))
        onnx.save(q, str(tmp))
    return out


def _int8_meta(meta: ModelMeta, method: str) -> ModelMeta:

    return replace(meta, extra={**meta.extra, "precision": "int8", "quantization": method})


def dynamic_quantize_torch(model):
    """The brief's dynamic quantization (Linear layers only: an HRNet has none in its heatmap path)."""
    import torch

    return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
