"""Training loss: heatmap MSE + focal heatmap term + coordinate loss through a differentiable soft-argmax."""
from __future__ import annotations

import math
from typing import Optional

import torch


def _energy(sigma: float) -> float:
    # Sum over the plane of a unit-peak Gaussian squared: an all-zero prediction of a visible point scores 1.
    return math.pi * sigma * sigma


def _channel_mean(per_channel: torch.Tensor, labelled: Optional[torch.Tensor]) -> torch.Tensor:
    """(N, K) -> scalar: the mean over the labelled channels (all without a mask)."""
    if labelled is None:
        return per_channel.mean()
    return (per_channel * labelled).sum() / labelled.sum().clamp_min(1.0)


def heatmap_mse(pred: torch.Tensor, target: torch.Tensor, sigma: float,
                labelled: Optional[torch.Tensor] = None) -> torch.Tensor:
    """(N, K, h, w) -> scalar: squared error summed per channel over a Gaussian's energy, so the value does not
    depend on heatmap size or sigma. ``labelled`` (N, K): only those channels count (an unlabelled point teaches
    nothing, neither where it is nor that it is absent)."""
    return _channel_mean((pred - target).pow(2).sum(dim=(2, 3)) / _energy(sigma), labelled)


def focal_heatmap_mse(pred: torch.Tensor, target: torch.Tensor, sigma: float, gamma: float = 2.0,
                      alpha: float = 4.0, labelled: Optional[torch.Tensor] = None) -> torch.Tensor:
    """MSE where each pixel is weighted by ``|pred - target|^gamma`` (pixels already right count less, as in focal
    loss, Lin et al. ICCV 2017) and foreground pixels by ``1 + alpha * target``. Normalised and masked like
    :func:`heatmap_mse`."""
    err = pred - target
    w = err.detach().abs().pow(gamma) * (1.0 + alpha * target)
    return _channel_mean((w * err.pow(2)).sum(dim=(2, 3)) / _energy(sigma), labelled)


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
    # an unlabelled point's target is NaN, and NaN x 0 is NaN: it is taken out before, not by the weight
    d = torch.linalg.norm(xy - torch.nan_to_num(target_xy_hm), dim=-1)
    return (d * visible).sum() / visible.sum().clamp_min(1.0) / pred_hm.shape[-1]


def combined_loss(pred: torch.Tensor, target: torch.Tensor, target_xy_hm: torch.Tensor, visible: torch.Tensor,
                  sigma: float, focal_weight: float, coord_weight: float, beta: float = 20.0,
                  labelled: Optional[torch.Tensor] = None):
    """Total loss and its parts as floats (for logging). ``labelled`` (N, K): the points the labels give (a blank
    cell is not); the others are left out of every term."""
    pred = pred.float()
    mse = heatmap_mse(pred, target, sigma, labelled)
    focal = focal_heatmap_mse(pred, target, sigma, labelled=labelled) if focal_weight else pred.new_zeros(())
    if labelled is not None:
        visible = visible * labelled
    coord = coordinate_loss(pred, target_xy_hm, visible, beta) if coord_weight else pred.new_zeros(())
    total = mse + focal_weight * focal + coord_weight * coord
    return total, {"mse": float(mse.detach()), "focal": float(focal.detach()), "coord": float(coord.detach())}


def pair_loss(pred: torch.Tensor, pred_turned: torch.Tensor, turn: torch.Tensor, both: torch.Tensor, stride: int,
              beta: float = 20.0) -> torch.Tensor:
    """How far a reading moves when the head turns: the soft-argmax of ``pred_turned`` (the same inputs turned by
    ``turn``, (N, 2, 3) input px -> turned input px) turned back, against that of ``pred``; mean distance over the
    points seen in both (``both`` (N, K)), in heatmap px / heatmap width (the coordinate loss's scale)."""
    a = soft_argmax(pred.float(), beta)
    # heatmap px <-> input px by sdk.decode's pixel-centre convention, here on tensors (the gradient flows)
    b = (soft_argmax(pred_turned.float(), beta) + 0.5) * stride - 0.5            # turned input px
    lin, t = turn[:, :, :2], turn[:, :, 2]
    back = torch.linalg.solve(lin, (b - t[:, None, :]).transpose(1, 2)).transpose(1, 2)
    back = (back + 0.5) / stride - 0.5
    d = torch.linalg.norm(back - a, dim=-1)
    return (d * both).sum() / both.sum().clamp_min(1.0) / pred.shape[-1]
