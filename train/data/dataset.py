"""Torch dataset: cached resized image -> (augmented) model input, heatmap targets and input-pixel targets."""
from __future__ import annotations

from typing import List, Optional, Tuple

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from sdk.decode import gaussian_heatmaps, input_to_heatmap
from sdk.preprocess import Preprocessing, pad_pixel

from .augment import AugmentConfig, random_affine, random_intensity, warp_image, warp_points
from .cache import ImageCache
from .readers import Sample


class LandmarkDataset(Dataset):
    """Items: ``image`` (C, H, W) float32, ``heatmaps`` (K, h, w) float32, ``points`` (K, 2) float32 model-input
    pixels, ``visible`` (K,) float32 (0 where augmentation pushed a point off the input), ``labelled`` (K,) float32
    (0 for a point the labels leave blank: NaN, left out of the loss).

    With ``augment=None`` the image is exactly ``sdk.preprocess`` of the file.
    """

    def __init__(self, samples: List[Sample], cache: ImageCache, *, stride: int, sigma: float, pre: Preprocessing,
                 augment: Optional[AugmentConfig] = None, seed: int = 0, pair_deg: float = 0.0):
        self.samples, self.cache = samples, cache
        self.pair_deg = pair_deg
        self.stride, self.sigma, self.pre = stride, sigma, pre
        self.augment = augment
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Reseeds augmentation so a resumed run sees the same stream as an uninterrupted one."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples)

    def _split(self, idx: int) -> Tuple[int, int]:
        # Indices >= len come from EpochSampler and carry their epoch: persistent loader workers hold a copy of
        # the dataset and never see set_epoch().
        n = len(self.samples)
        return (idx // n - 1, idx % n) if idx >= n else (self.epoch, idx)

    def input_and_points(self, i: int) -> Tuple[np.ndarray, np.ndarray]:
        """(C, H, W) float32 input and (K, 2) input-pixel points of sample ``i`` (augmented if configured)."""
        img, pts = self._pixels_and_points(i)
        return self.pre.normalize(img), pts

    def turned_pair(self, i: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Sample ``i`` as :meth:`input_and_points` gives it, and again turned about the input's centre by up to
        ``pair_deg``: (input, points, turned input, its points, the 2x3 turn, input px -> turned input px)."""
        img, pts = self._pixels_and_points(i)
        epoch, j = self._split(i)
        a = np.random.default_rng([self.seed, epoch, j, 1]).uniform(-self.pair_deg, self.pair_deg)
        h, w = img.shape[:2]
        m = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), a, 1.0)
        turned = warp_image(img, m, pad_pixel(self.pre.pad_value))
        return self.pre.normalize(img), pts, self.pre.normalize(turned), warp_points(pts, m), m

    def _pixels_and_points(self, i: int) -> Tuple[np.ndarray, np.ndarray]:
        epoch, i = self._split(i)
        s = self.samples[i]
        resized, lb = self.cache.get(s)
        img = self.pre.pad(resized, lb)
        pts = lb.to_input(s.points)
        if self.augment is not None:
            rng = np.random.default_rng([self.seed, epoch, i])
            content = (slice(lb.pad_top, lb.pad_top + lb.new_h), slice(lb.pad_left, lb.pad_left + lb.new_w))
            img = random_intensity(img, rng, self.augment, content)
            m = random_affine(rng, img.shape, self.augment)
            img = warp_image(img, m, pad_pixel(self.pre.pad_value))
            pts = warp_points(pts, m)
        return img, pts

    def __getitem__(self, i: int):
        if self.pair_deg > 0:
            x, pts, x2, pts2, turn = self.turned_pair(i)
            item = self._item(x, pts)
            item.update({f"{k}2": v for k, v in self._item(x2, pts2).items()})
            item["turn"] = torch.from_numpy(turn.astype(np.float32))
        else:
            item = self._item(*self.input_and_points(i))
        item["index"] = self._split(i)[1]
        return item

    def _item(self, x: np.ndarray, pts: np.ndarray) -> dict:
        h, w = x.shape[1] // self.stride, x.shape[2] // self.stride
        hm_xy = input_to_heatmap(pts, self.stride)
        visible = ((pts[:, 0] >= 0) & (pts[:, 0] <= x.shape[2] - 1) & (pts[:, 1] >= 0) & (pts[:, 1] <= x.shape[1] - 1))
        target = gaussian_heatmaps(hm_xy, (h, w), self.sigma)     # an unlabelled (NaN) point: an empty channel
        return {
            "image": torch.from_numpy(np.ascontiguousarray(x)),
            "heatmaps": torch.from_numpy(target),
            "points": torch.from_numpy(pts.astype(np.float32)),
            "visible": torch.from_numpy(visible.astype(np.float32)),
            "labelled": torch.from_numpy(np.isfinite(pts).all(axis=1).astype(np.float32)),
        }


class EpochSampler(Sampler):
    """A shuffled pass over ``n`` samples per epoch, seeded by (seed, epoch); yields indices that encode the epoch
    (``(epoch + 1) * n + i``) for :class:`LandmarkDataset`, so one persistent loader serves every epoch."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        base = (self.epoch + 1) * self.n
        return iter((base + torch.randperm(self.n, generator=g)).tolist())
