"""Training loss: heatmap MSE + focal heatmap term + coordinate loss through a differentiable soft-argmax."""
from __future__ import annotations

import math

import torch


def _energy(sigma: float) -> float:
    # Sum over the plane of a unit-peak Gaussian squared: an all-zero prediction of a visible point scores 1.
    return math.pi * sigma * sigma


def heatmap_mse(pred: torch.Tensor, target: torch.Tensor, sigma: float) -> torch.Tensor:
    """(N, K, h, w) -> scalar: squared error summed per channel over a Gaussian's energy, so the value does not
    depend on heatmap size or sigma."""
    return ((pred - target).pow(2).sum(dim=(2, 3)) / _energy(sigma)).mean()


def focal_heatmap_mse(pred: torch.Tensor, target: torch.Tensor, sigma: float, gamma: float = 2.0,
                      alpha: float = 4.0) -> torch.Tensor:
    """MSE where each pixel is weighted by ``|pred - target|^gamma`` (pixels already right count less, as in focal
    loss, Lin et al. ICCV 2017) and foreground pixels by ``1 + alpha * target``. Normalised like :func:`heatmap_mse`."""
    err = pred - target
    w = err.detach().abs().pow(gamma) * (1.0 + alpha * target)
    return ((w * err.pow(2)).sum(dim=(2, 3)) / _energy(sigma)).mean()


def soft_argmax(heatmaps: torch.Tensor, beta: float = 20.0) -> torch.Tensor:
    """(N, K, h, w) -> (N, K, 2) expected (x, y) in heatmap pixels under ``softmax(beta * heatmap)``
    (integral regression, Sun et al. ECCV 2018)."""
    n, k, h, w = heatmaps.shape
    p = torch.softmax(beta * heatmaps.float().reshape(n, k, -1), dim=-1).reshape(n, k, h, w)
    xs = torch.arange(w, device=heatmaps.device, dtype=p.dtype)
    ys = torch.arange(h, device=heatmaps.device, dtype=p.dtype)
    return torch.stack([(p.sum(2) * xs).sum(-1), (p.sum(3) * ys).sum(-1)], dim=-1)


def coordinate_loss(pred_hm: torch.Tensor, target_xy_hm: torch.Tensor, visible: torch.Tensor,
                    beta: float = 20.0) -> torch.Tensor:
    """Mean Euclidean error of the soft-argmax in heatmap pixels over visible landmarks, divided by the heatmap
    width so its scale is a fraction of the image."""
    xy = soft_argmax(pred_hm, beta)
    d = torch.linalg.norm(xy - target_xy_hm, dim=-1)
    return (d * visible).sum() / visible.sum().clamp_min(1.0) / pred_hm.shape[-1]


def combined_loss(pred: torch.Tensor, target: torch.Tensor, target_xy_hm: torch.Tensor, visible: torch.Tensor,
                  sigma: float, focal_weight: float, coord_weight: float, beta: float = 20.0):
    """Total loss and its parts as floats (for logging)."""
    pred = pred.float()
    mse = heatmap_mse(pred, target, sigma)
    focal = focal_heatmap_mse(pred, target, sigma) if focal_weight else pred.new_zeros(())
    coord = coordinate_loss(pred, target_xy_hm, visible, beta) if coord_weight else pred.new_zeros(())
    total = mse + focal_weight * focal + coord_weight * coord
    return total, {"mse": float(mse.detach()), "focal": float(focal.detach()), "coord": float(coord.detach())}
