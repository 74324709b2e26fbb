"""HRNet heatmap model: a timm HRNet backbone (``features_only``, plain high-resolution branches) and a light head.

Head (HRNetV2-style): the four branches (strides 4, 8, 16, 32) are upsampled to stride 4 and concatenated, then a
1x1 conv + BN + ReLU and a 1x1 conv give K heatmaps at stride 4. ``heatmap_stride=2`` adds one upsampling step fused
with the stride-2 stem features for finer maps, at extra cost.
"""
from __future__ import annotations

from typing import Dict

import timm
import torch
import torch.nn.functional as F
from torch import nn

from sdk.errors import ModelError, cause
from sdk.schemas import schema_from_dict

from .config import TrainConfig

BACKBONES = {"w18": "hrnet_w18", "w32": "hrnet_w32", "w48": "hrnet_w48", "w18_small": "hrnet_w18_small_v2"}


class HeatmapNet(nn.Module):
    """(N, C, H, W) float -> (N, K, H / stride, W / stride) heatmaps."""

    def __init__(self, num_landmarks: int, backbone: str = "hrnet_w32", in_chans: int = 1, heatmap_stride: int = 4,
                 head_channels: int = 128):
        super().__init__()
        if heatmap_stride not in (2, 4):
            raise ValueError(f"heatmap_stride must be 2 or 4, got {heatmap_stride!r}")
        if num_landmarks < 1:
            raise ValueError(f"num_landmarks must be >= 1, got {num_landmarks!r}")
        name = BACKBONES.get(backbone, backbone)
        # No pretrained weights: model hubs are unreachable and X-rays differ from ImageNet anyway.
        self.backbone = timm.create_model(name, pretrained=False, features_only=True, feature_location="",
                                          in_chans=in_chans)
        chans = self.backbone.feature_info.channels()      # [stem(s2), b1(s4), b2(s8), b3(s16), b4(s32)]
        self.heatmap_stride = heatmap_stride
        self.fuse = nn.Sequential(
            nn.Conv2d(sum(chans[1:]), head_channels, 1, bias=False), nn.BatchNorm2d(head_channels), nn.ReLU(True))
        if heatmap_stride == 2:
            self.up = nn.Sequential(
                nn.Conv2d(head_channels + chans[0], head_channels // 2, 3, padding=1, bias=False),
                nn.BatchNorm2d(head_channels // 2), nn.ReLU(True))
            out_in = head_channels // 2
        else:
            self.up = None
            out_in = head_channels
        self.out = nn.Conv2d(out_in, num_landmarks, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.backbone(x)
        stem, branches = feats[0], feats[1:]
        size = branches[0].shape[-2:]
        y = torch.cat([branches[0]] + [F.interpolate(b, size=size, mode="bilinear", align_corners=False)
                                       for b in branches[1:]], dim=1)
        y = self.fuse(y)
        if self.up is not None:
            y = F.interpolate(y, size=stem.shape[-2:], mode="bilinear", align_corners=False)
            y = self.up(torch.cat([y, stem], dim=1))
        return self.out(y)


def build_model(cfg: TrainConfig, k: int) -> HeatmapNet:
    return HeatmapNet(k, backbone=cfg.backbone, in_chans=cfg.channels, heatmap_stride=cfg.heatmap_stride)


def model_from_checkpoint(ck: Dict) -> HeatmapNet:
    cfg = TrainConfig.from_dict(ck["config"])
    schema = schema_from_dict(ck["schema"])
    model = build_model(cfg, schema.k)
    try:
        model.load_state_dict(ck["model"])
    except RuntimeError as e:
        raise ModelError(f"checkpoint weights do not fit a {cfg.backbone} model with {schema.k} landmarks: "
                         f"{cause(e)}") from e
    return model.eval()
