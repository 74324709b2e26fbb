"""Evaluation through the SDK's preprocessing and decoder: what it reports is what a Detector user gets."""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch

from sdk.decode import decode_to_image
from sdk.metrics import radial_errors, summarize
from sdk.preprocess import Preprocessing

from .data.cache import ImageCache
from .data.readers import Sample


@torch.no_grad()
def predict_samples(model: torch.nn.Module, samples: Sequence[Sample], cache: ImageCache, *, stride: int,
                    sigma: float, pre: Preprocessing, batch_size: int = 8,
                    autocast_dtype=None, decoder: str = "dark") -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points for each sample: ((N, K, 2) original pixels, (N, K) scores, (N,) original pixels per input pixel)."""
    model.eval()
    device = next(model.parameters()).device
    xs, lbs = [], []
    for s in samples:
        resized, lb = cache.get(s)
        xs.append(pre.normalize(pre.pad(resized, lb)))
        lbs.append(lb)
    pts, scores = [], []
    for i in range(0, len(xs), batch_size):
        x = torch.from_numpy(np.stack(xs[i:i + batch_size])).to(device)
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            hm = model(x)
        hm = hm.float().cpu().numpy()
        for j, h in enumerate(hm):
            p, sc = decode_to_image(h, lbs[i + j], stride, sigma, decoder)
            pts.append(p)
            scores.append(sc)
    return np.stack(pts), np.stack(scores), np.array([lb.input_px_size for lb in lbs])


def evaluate(model, samples: Sequence[Sample], cache: ImageCache, names: List[str], **kw) -> Dict:
    """:func:`sdk.metrics.summarize` of the model on ``samples`` (against their labels)."""
    pred, _, in_px = predict_samples(model, samples, cache, **kw)
    gt = np.stack([s.points for s in samples])
    err = radial_errors(pred, gt)
    return summarize(err, np.array([s.spacing for s in samples]), in_px, names)
