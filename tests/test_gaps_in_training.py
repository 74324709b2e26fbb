"""Labels with gaps in training and evaluation (issue 46): a blank cell is an unlabelled point, left out of the
loss (heatmap, focal and coordinate terms), of the local stage's patches and of the scores, and said per landmark."""
from dataclasses import replace

import numpy as np
import pytest
from conftest import tiny_config

torch = pytest.importorskip("torch")

from sdk.metrics import summarize  # noqa: E402
from train.losses import combined_loss  # noqa: E402


def _batch(k=4, n=2, h=16):
    g = torch.Generator().manual_seed(0)
    pred = torch.rand(n, k, h, h, generator=g, requires_grad=True)
    target = torch.zeros(n, k, h, h)
    target[:, :, 8, 8] = 1.0
    xy = torch.full((n, k, 2), 8.0)
    return pred, target, xy, torch.ones(n, k)


def test_an_unlabelled_point_is_left_out_of_every_term():
    pred, target, xy, vis = _batch()
    labelled = torch.ones(2, 4)
    labelled[0, 1] = 0
    xy[0, 1] = float("nan")                                   # what a blank cell becomes
    target[0, 1] = 0
    loss, parts = combined_loss(pred, target, xy, vis, 1.5, 1.0, 5.0, labelled=labelled)
    assert torch.isfinite(loss)
    loss.backward()
    assert float(pred.grad[0, 1].abs().sum()) == 0.0 and float(pred.grad[0, 0].abs().sum()) > 0
    # the same batch without the blank point's channel at all: the same loss
    keep = [0, 2, 3]
    sub = combined_loss(pred[0:1, keep].detach(), target[0:1, keep], xy[0:1, keep], vis[0:1, keep], 1.5, 1.0, 5.0)[0]
    one = combined_loss(pred[0:1].detach(), target[0:1], xy[0:1], vis[0:1], 1.5, 1.0, 5.0, labelled=labelled[0:1])[0]
    assert abs(float(sub) - float(one)) < 1e-6
    full = combined_loss(pred.detach(), target, torch.nan_to_num(xy), vis, 1.5, 1.0, 5.0)[0]
    assert abs(float(full) - float(combined_loss(pred.detach(), target, torch.nan_to_num(xy), vis, 1.5, 1.0, 5.0,
                                                  labelled=torch.ones(2, 4))[0])) < 1e-6


def test_scores_leave_unlabelled_points_out():
    err = np.array([[1.0, 2.0], [np.nan, 4.0]])
    m = summarize(err, 1.0, names=["a", "b"])
    assert m["mre_mm"] == pytest.approx(7 / 3) and m["unlabelled_points"] == 1
    assert m["per_landmark"]["a"]["mre_mm"] == 1.0 and m["sdr"]["2mm"] == pytest.approx(200 / 3)
    assert "unlabelled_points" not in summarize(np.ones((2, 2)), 1.0)


def test_datasets_mark_and_skip_blank_points(fixture_samples, tmp_path):
    from sdk.preprocess import Preprocessing
    from train.config import LocalConfig
    from train.data.cache import ImageCache
    from train.data.dataset import LandmarkDataset
    from train.local_stage import PatchDataset, load_fine

    s = fixture_samples[0]
    pts = s.points.copy()
    pts[3] = np.nan
    gap = replace(s, points=pts)
    ds = LandmarkDataset([gap], ImageCache(tmp_path, Preprocessing((128, 128))), stride=4, sigma=1.5,
                         pre=Preprocessing((128, 128)))
    item = ds[0]
    assert item["labelled"].tolist() == [1.0] * 3 + [0.0] + [1.0] * 15
    assert float(item["heatmaps"][3].abs().sum()) == 0.0 and torch.isfinite(item["heatmaps"]).all()
    patches = PatchDataset(load_fine([gap, fixture_samples[1]], LocalConfig()), LocalConfig(), 19)
    assert len(patches) == 2 * 19 - 1 and (0, 3) not in patches.pairs


def test_train_and_eval_take_a_folder_with_blank_cells(tmp_path):
    """``cephalo train`` on labels with two blank cells trains (a finite loss), says what is missing, and
    ``cephalo eval`` scores the labelled points only."""
    from click.testing import CliRunner
    from conftest import blank_cells

    from cephalo.cli import main

    d, _, _ = blank_cells(tmp_path, {1: "porion", 3: "menton"})
    cfg = tiny_config(epochs=1)
    run = tmp_path / "run"
    args = ["train", "--data", str(d), "--out", str(run), "--backbone", cfg.backbone, "--input-size",
            str(cfg.input_size), "--epochs", "1", "--batch-size", "4", "--val-count", "2", "--amp", "off"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    import json

    hist = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert hist and all(np.isfinite(h.get("train_loss", np.nan)) for h in hist), hist
    r = CliRunner().invoke(main, ["eval", str(run / "last.pt"), "--data", str(d), "--split", "train"])
    assert r.exit_code == 0, r.output
    assert "unlabelled points (blank cells)" in r.output and "porion 1" in r.output and "menton 1" in r.output
