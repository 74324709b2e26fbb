"""Checks that a converted file keeps the PyTorch model's answers on real images."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch

from sdk.backends import open_backend
from sdk.decode import decode_to_image
from sdk.errors import CephaloError
from sdk.metadata import ModelMeta
from sdk.preprocess import letterbox_geometry

from .tolerances import FP32_HEATMAP_TOL, FP32_POINT_TOL_PX  # noqa: F401 (the gates' names, used here and re-exported)


class ParityError(CephaloError, RuntimeError):
    """A converted model disagrees with its source beyond tolerance."""


@dataclass
class Parity:
    file: str
    backend: str
    max_heatmap_diff: float
    max_point_diff_px: float        # original pixels
    mean_point_diff_px: float
    max_point_diff_input_px: float  # model-input pixels
    mean_point_diff_input_px: float

    def as_dict(self) -> Dict:
        return dict(self.__dict__)


def parity(model: torch.nn.Module, path: Path, images: Sequence[Path], meta: ModelMeta,
           backend: str = "onnxruntime") -> Parity:
    """Heatmap and decoded-point differences between ``model`` (fp32 eager) and the file run by ``backend``."""
    be = open_backend(Path(path), backend, threads=None)
    model = model.float().eval()
    hm_d, pt_d, pt_in = [], [], []
    for p in images:
        x, lb, _ = meta.preprocessing.prepare(p, fast_decode=False)
        with torch.no_grad():
            ref = model(torch.from_numpy(x[None])).numpy()[0]
        out = be.run(x[None])[0]
        hm_d.append(float(np.abs(ref - out).max()))
        a, _ = decode_to_image(ref, lb, meta.heatmap_stride, meta.sigma, meta.decoder)
        b, _ = decode_to_image(out, lb, meta.heatmap_stride, meta.sigma, meta.decoder)
        d = np.linalg.norm(a - b, axis=1)
        pt_d.append(d)
        pt_in.append(d / lb.input_px_size)
    d, d_in = np.concatenate(pt_d), np.concatenate(pt_in)
    return Parity(str(path), be.name, max(hm_d), float(d.max()), float(d.mean()), float(d_in.max()),
                  float(d_in.mean()))


def require_fp32(p: Parity) -> None:
    if p.max_heatmap_diff > FP32_HEATMAP_TOL or p.max_point_diff_px > FP32_POINT_TOL_PX:
        raise ParityError(f"{p.file} ({p.backend}) differs from the PyTorch model: heatmaps by "
                          f"{p.max_heatmap_diff:.2e} (limit {FP32_HEATMAP_TOL:g}), points by "
                          f"{p.max_point_diff_px:.4f} px (limit {FP32_POINT_TOL_PX:g})")


def require_int8(p: Parity, tol_input_px: float) -> None:
    if p.mean_point_diff_input_px > tol_input_px:
        raise ParityError(f"{p.file} ({p.backend}): INT8 points move {p.mean_point_diff_input_px:.3f} input px on "
                          f"average from the FP32 model (limit {tol_input_px}; max {p.max_point_diff_input_px:.2f})")


def detector_predictions(det, samples) -> Tuple[np.ndarray, np.ndarray]:
    """``det`` on labelled samples: ((N, K, 2) points in original pixels, (N,) original pixels per input pixel)."""
    pred, in_px = [], []
    for s in samples:
        res = det(s.image, spacing=s.spacing)
        pred.append(res.xy)
        in_px.append(letterbox_geometry(res.image_size, det.meta.input_hw).input_px_size)
    return np.stack(pred), np.array(in_px)


def detector_accuracy(model_path: Path, samples, backend: str = "auto", threads: Optional[int] = None) -> Dict:
    """:func:`sdk.metrics.summarize` of ``sdk.Detector(model_path)`` on labelled samples (train.data Samples)."""
    from sdk import Detector
    from sdk.metrics import radial_errors, summarize

    det = Detector(model_path, backend=backend, threads=threads)
    pred, in_px = detector_predictions(det, samples)
    err = radial_errors(pred, np.stack([s.points for s in samples]))
    return summarize(err, np.array([s.spacing for s in samples]), in_px, list(det.schema.names))
