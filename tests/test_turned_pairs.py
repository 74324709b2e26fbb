"""Turned pairs (issue 50): each training image also seen turned, and a loss on how far the reading moves."""
import math

import cv2
import numpy as np
import pytest
import torch
from test_augment import _blobs, _centroid

from sdk.decode import gaussian_heatmaps, heatmap_to_input, input_to_heatmap
from sdk.preprocess import Preprocessing
from train.data.augment import AugmentConfig
from train.data.cache import ImageCache
from train.data.dataset import LandmarkDataset
from train.data.readers import Sample
from train.losses import pair_loss, soft_argmax


def _dots(tmp_path, pts):
    img = np.clip(_blobs((400, 300), pts, sigma=5) * 230 + 10, 0, 255).astype(np.uint8)
    path = tmp_path / "dots.png"
    cv2.imwrite(str(path), img)
    return Sample("dots", path, np.asarray(pts, np.float64), 0.1)


def test_the_turned_view_shows_its_points_where_it_says(tmp_path):
    pts = [[80.2, 100.6], [200.7, 210.3], [150.5, 300.2]]
    pre = Preprocessing((256, 256))
    aug = AugmentConfig(p_geometric=1.0, p_intensity=1.0, noise_std=0.0, blur_sigma=0.0)
    ds = LandmarkDataset([_dots(tmp_path, pts)], ImageCache(tmp_path / "c", pre), stride=4, sigma=1.5, pre=pre,
                         augment=aug, pair_deg=12.0)
    turns = []
    for epoch in range(4):
        ds.set_epoch(epoch)
        x, p, x2, p2, m = ds.turned_pair(0)
        # the first view is the plain item's; the second is that view turned about the centre by m
        x0, p0 = ds.input_and_points(0)
        assert np.array_equal(x, x0) and np.array_equal(p, p0)
        assert np.allclose(p2, p @ m[:, :2].T + m[:, 2])
        for q in p2:
            assert np.linalg.norm(_centroid(x2[0], *q, r=9) - q) < 0.3
        turns.append(math.degrees(math.atan2(m[1, 0], m[0, 0])))
        assert np.allclose(m[:, :2] @ m[:, :2].T, np.eye(2))             # a turn, no scale
    assert all(abs(t) <= 12.0 for t in turns) and len(set(np.round(turns, 6))) == 4
    item = ds[0]
    assert {"image2", "heatmaps2", "points2", "visible2", "labelled2", "turn"} <= set(item)
    assert item["turn"].shape == (2, 3) and item["image2"].shape == item["image"].shape
    # without pairs, an item is as before
    plain = LandmarkDataset(ds.samples, ds.cache, stride=4, sigma=1.5, pre=pre, augment=aug)
    assert "turn" not in plain[0] and "image2" not in plain[0]


def _maps(xy_input, stride=4, hw=(32, 32)):
    return torch.from_numpy(gaussian_heatmaps(input_to_heatmap(np.asarray(xy_input), stride), hw, 1.5))[None]


def _expected(pred, pred_turned, m, stride=4, beta=20.0):
    """The pair loss computed here in numpy from both views' soft-argmax."""
    a = soft_argmax(pred, beta)[0].numpy().astype(np.float64)
    b = heatmap_to_input(soft_argmax(pred_turned, beta)[0].numpy(), stride)
    back = input_to_heatmap((b - m[:, 2]) @ np.linalg.inv(m[:, :2]).T, stride)
    return np.linalg.norm(back - a, axis=1)


def test_the_pair_loss_is_the_distance_a_reading_moves_when_turned_back():
    pts = np.array([[40.0, 50.0], [70.5, 90.25], [100.0, 64.0]])
    m = cv2.getRotationMatrix2D((63.5, 63.5), 9.0, 1.0)
    turned = pts @ m[:, :2].T + m[:, 2]
    turn = torch.from_numpy(m)[None].float()
    both = torch.ones(1, 3)
    steady = float(pair_loss(_maps(pts), _maps(turned), turn, both, 4))
    d = _expected(_maps(pts), _maps(turned), m)
    assert abs(steady - d.mean() / 32) < 1e-5
    assert steady < 0.5 / 32            # the soft-argmax's own rounding on a drawn map: under half a heatmap px
    # one point read 8 input px (2 heatmap px) off in the turned view moves the loss by about its share
    off = turned.copy()
    off[1] += np.array([8.0, 0.0]) @ m[:, :2].T
    moved = float(pair_loss(_maps(pts), _maps(off), turn, both, 4))
    assert abs(moved - _expected(_maps(pts), _maps(off), m).mean() / 32) < 1e-5
    assert 1.5 / 3 / 32 < moved - steady < 2.5 / 3 / 32
    # a point not seen in both views is left out
    mask = torch.tensor([[1.0, 0.0, 1.0]])
    assert abs(float(pair_loss(_maps(pts), _maps(off), turn, mask, 4)) - d[[0, 2]].mean() / 32) < 1e-5


def test_a_model_trains_on_turned_pairs(tmp_path, fixture_samples):
    """Both views in one pass; the pair loss is logged, finite, and part of what is minimised."""
    from conftest import tiny_config

    from train.trainer import Trainer, split_train_val

    cfg = tiny_config(epochs=1, restart_period=1, pair_deg=10.0, pair_weight=5.0)
    tr, va = split_train_val(fixture_samples, cfg.val_count, cfg.seed)
    t = Trainer(cfg, tr, va, tmp_path / "run", tmp_path / "cache", data_info="fixture")
    batch = next(iter(t.loader))
    assert batch["image2"].shape == batch["image"].shape and batch["turn"].shape == (len(batch["image"]), 2, 3)
    loss, parts, n = t._loss(batch)
    assert n == 2 * len(batch["image"]) and np.isfinite(parts["turn"]) and parts["turn"] > 0
    plain, plain_parts, _ = Trainer(cfg.override(pair_weight=0.0), tr, va, tmp_path / "run0", tmp_path / "cache",
                                    data_info="fixture")._loss(batch)
    assert "turn" not in plain_parts
    hist = t.fit(progress=False)
    assert len(hist) == 1 and np.isfinite(hist[0]["train_turn"])
    # a weight without pairs would be silently ignored: refused by name
    with pytest.raises(ValueError, match="--pair-deg"):
        Trainer(cfg.override(pair_deg=0.0), tr, va, tmp_path / "run1", tmp_path / "cache", data_info="fixture")
