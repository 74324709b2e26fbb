"""Shifted pairs for the local stage (issue 50): each patch also cut around another centre, and a loss on how far
the reading follows its patch's centre."""
from dataclasses import replace

import numpy as np
import pytest

from train.config import LocalConfig
from train.local_stage import LocalTrainer, PatchDataset, load_fine


def _cfg(**kw):
    return LocalConfig(input_size=128, patch=32, widths=(8, 16, 24, 32), epochs=1, batch_size=16, **kw)


def _overlap(x, x2, t):
    """The pixels of patches ``x`` and ``x2`` (1, h, h) that show the same place, ``x2`` shifted by ``t``."""
    dx, dy = int(round(t[0])), int(round(t[1]))
    a, b = x[0].numpy(), x2[0].numpy()
    h = a.shape[0]
    ya, yb = slice(max(0, -dy), min(h, h - dy)), slice(max(0, dy), min(h, h + dy))
    xa, xb = slice(max(0, -dx), min(h, h - dx)), slice(max(0, dx), min(h, h + dx))
    return a[ya, xa], b[yb, xb]


@pytest.mark.parametrize("upright", [True, False])
def test_the_pair_is_the_same_patch_around_another_centre(fixture_samples, upright):
    geometry = dict(rotate_deg=0.0, scale=(1.0, 1.0)) if upright else {}
    cfg = _cfg(pair_shift=2.0, pair_weight=1.0, **geometry)
    ds = PatchDataset(load_fine(fixture_samples[:2], cfg), cfg, 19)
    flat = PatchDataset(ds.data, cfg, 19)
    flat.aug = replace(flat.aug, p_intensity=0.0)
    moves = []
    for i in range(0, 38, 5):
        x, target, lm, pt, x2, target2, pt2, move = ds[i]
        move = move.numpy().astype(np.float64)
        # one turn and zoom for both cuts: the move between them is a translation after them, and it carries the
        # true point along
        assert np.allclose(move[:, :2], np.eye(2), atol=1e-5)
        t = move[:, 2]
        p_in, p2_in = (pt.numpy() + 0.5) * cfg.stride - 0.5, (pt2.numpy() + 0.5) * cfg.stride - 0.5
        assert np.allclose(p2_in, p_in + t, atol=1e-4)
        assert np.abs(t).max() <= (2.0 * cfg.factor + 1) * (1.0 if upright else 1.5)
        moves.append(t)
        if not upright:
            continue
        # upright and unzoomed, both centres rounded: an integer shift; without intensity changes the pixels are
        # equal where both patches hold the image
        assert np.allclose(t, np.round(t))
        f = flat[i]
        assert np.array_equal(*_overlap(f[0], f[4], f[7].numpy()[:, 2]))
    assert len({tuple(np.round(m, 3)) for m in moves}) > 3          # the second centre is drawn, not fixed
    # without pairs (or in validation) an item is as before
    assert len(PatchDataset(ds.data, _cfg(**geometry), 19)[0]) == 4
    assert len(PatchDataset(ds.data, cfg, 19, augment=False)[0]) == 4


def test_a_local_stage_trains_on_shifted_pairs(tmp_path, fixture_samples):
    cfg = _cfg(pair_shift=2.0, pair_weight=2.0)
    first = {s.id: s.points for s in fixture_samples[6:]}
    t = LocalTrainer(cfg, fixture_samples[:6], fixture_samples[6:], first, _schema(), tmp_path / "run", threads=2)
    batch = next(iter(t.loader))
    loss, parts, n = t._loss(batch)
    assert n == 2 * len(batch[0]) and np.isfinite(parts["move"]) and parts["move"] > 0
    # the pair's term is the loss's difference from the same batch without it
    plain = LocalTrainer(_cfg(pair_shift=2.0), fixture_samples[:6], fixture_samples[6:], first, _schema(),
                         tmp_path / "run0", threads=2)
    plain.model.load_state_dict(t.model.state_dict())
    loss0, parts0, _ = plain._loss(batch)
    assert "move" not in parts0
    assert float((loss - loss0).detach()) == pytest.approx(2.0 * parts["move"], rel=1e-4)
    hist = t.fit(progress=False)
    assert len(hist) == 1 and np.isfinite(hist[0]["train_move"])
    with pytest.raises(ValueError, match="--pair-shift"):
        LocalTrainer(_cfg(pair_weight=1.0), fixture_samples[:6], fixture_samples[6:], first, _schema(),
                     tmp_path / "run1", threads=2)


def test_cli_refuses_a_pair_weight_without_pairs(tmp_path):
    from click.testing import CliRunner
    from conftest import ISBI_FIX

    from cephalo.cli import main

    res = CliRunner().invoke(main, ["train-local", "--data", str(ISBI_FIX), "--out", str(tmp_path / "l"),
                                    "--pair-weight", "3"])
    assert res.exit_code != 0 and "--pair-shift" in res.output


def _schema():
    from sdk.schemas import ISBI19
    return ISBI19
