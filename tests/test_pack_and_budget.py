"""Data packs (training away from the data folder), checkpoint intervals, time budgets, persistent loader workers."""
import json

import numpy as np
import pytest
import torch
from conftest import tiny_config

from sdk.errors import AnnotationError
from sdk.preprocess import Preprocessing
from train.checkpoint import load_checkpoint
from train.data.cache import ImageCache
from train.data.dataset import EpochSampler, LandmarkDataset
from train.data.pack import read_pack, write_pack
from train.trainer import Trainer, split_train_val


def test_pack_round_trip_equals_folder_cache(tmp_path, fixture_samples):
    cache = ImageCache(tmp_path / "cache", Preprocessing((128, 128)))
    p = write_pack(fixture_samples, cache, tmp_path / "p.npz", info="fixture")
    samples, pcache, info = read_pack(p, 19)
    assert info == "fixture" and [s.id for s in samples] == [s.id for s in fixture_samples]
    for s, f in zip(samples, fixture_samples):
        np.testing.assert_array_equal(s.points, f.points)
        assert s.spacing == f.spacing
        a, lb_a = pcache.get(s)
        b, lb_b = cache.get(f)
        np.testing.assert_array_equal(a, b)
        assert lb_a == lb_b
    # The same training item (augmented) from either source.
    kw = dict(stride=4, sigma=1.5, pre=Preprocessing((128, 128)))
    from train.data.augment import AugmentConfig
    da = LandmarkDataset(samples, pcache, augment=AugmentConfig(), **kw)
    db = LandmarkDataset(list(fixture_samples), cache, augment=AugmentConfig(), **kw)
    for k in ("image", "heatmaps", "points"):
        assert torch.equal(da[3][k], db[3][k])


def test_bad_packs(tmp_path, fixture_samples):
    cache = ImageCache(tmp_path / "cache", Preprocessing((128, 128)))
    p = write_pack(fixture_samples[:2], cache, tmp_path / "p.npz")
    with pytest.raises(AnnotationError, match="schema needs"):
        read_pack(p, 29)
    with pytest.raises(AnnotationError, match="does not exist"):
        read_pack(tmp_path / "nope.npz", 19)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip at all")
    with pytest.raises(AnnotationError, match="cannot be read"):
        read_pack(junk, 19)
    other = tmp_path / "other.npz"
    np.savez(other, header=np.frombuffer(json.dumps({"format": "x"}).encode(), np.uint8))
    with pytest.raises(AnnotationError, match="not a data pack"):
        read_pack(other, 19)
    samples, pcache, _ = read_pack(p, 19)
    with pytest.raises(AnnotationError, match="not in this data pack"):
        pcache.get(fixture_samples[5])


def test_trainer_refuses_cache_of_other_size(tmp_path, fixture_samples):
    cache = ImageCache(tmp_path / "cache", Preprocessing((160, 160)))
    with pytest.raises(ValueError, match="config needs"):
        Trainer(tiny_config(), fixture_samples[:4], [], tmp_path / "run", cache=cache)


def test_epoch_sampler_encodes_epoch(fixture_samples, tmp_path):
    s = EpochSampler(6, seed=1)
    s.set_epoch(2)
    idx = list(s)
    assert sorted(i - 3 * 6 for i in idx) == list(range(6))
    assert idx != list(iter(EpochSampler(6, seed=2)))
    cache = ImageCache(tmp_path / "cache", Preprocessing((128, 128)))
    from train.data.augment import AugmentConfig
    ds = LandmarkDataset(list(fixture_samples), cache, augment=AugmentConfig(), stride=4, sigma=1.5,
                         pre=cache.pre)
    ds.set_epoch(2)
    plain = ds[4]
    ds.set_epoch(0)
    encoded = ds[3 * len(ds) + 4]          # epoch 2 carried by the index, whatever set_epoch says
    assert torch.equal(plain["image"], encoded["image"]) and encoded["index"] == 4


class FakeClock:
    """A clock that advances ``step`` seconds each time it is read: time-based decisions become deterministic."""

    def __init__(self, step: float):
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_checkpoint_interval_and_deadline(tmp_path, fixture_samples):
    cfg = tiny_config(epochs=50, max_steps_per_epoch=1)
    tr, va = split_train_val(fixture_samples, cfg.val_count, cfg.seed)
    clock = FakeClock(1.0)                            # every read advances 1 s: no dependence on machine speed
    t = Trainer(cfg, tr, va, tmp_path / "run", tmp_path / "cache", checkpoint_every_s=3600, clock=clock)
    t0 = clock()
    t.fit(progress=False, stop_after=2)
    per_epoch = (clock() - t0) / 2
    hist = t.fit(progress=False, deadline=clock() + 2.5 * per_epoch)
    assert 3 <= len(hist) < 50                        # stopped by the deadline, not by the epoch count
    last = load_checkpoint(tmp_path / "run" / "last.pt")
    best = load_checkpoint(tmp_path / "run" / "best.pt")
    assert last["epoch"] == len(hist) and "optimizer" in last
    assert "optimizer" not in best                    # best.pt is weights only
    vals = [h["val_mre_mm"] for h in hist]
    assert best["epoch"] == 1 + int(np.argmin(vals)) and best["best_mre_mm"] == pytest.approx(min(vals))


def test_fit_epochs_to_time_replans_schedule(tmp_path, fixture_samples):
    cfg = tiny_config(epochs=1000, max_steps_per_epoch=1, restart_period=0)
    tr, va = split_train_val(fixture_samples, cfg.val_count, cfg.seed)
    t = Trainer(cfg, tr, va, tmp_path / "run", tmp_path / "cache", clock=FakeClock(10.0))
    n = t.fit_epochs_to_time(1.0, progress=False, calib_epochs=2)   # already over budget after calibration
    assert n == 3 and t.cfg.epochs == 3 and t.cfg.restart_period == 1
    t.fit(progress=False)
    assert t.epoch == 3
    with pytest.raises(ValueError, match="fresh run"):
        t.fit_epochs_to_time(10.0)


def test_persistent_workers_match_in_process_loading(tmp_path, fixture_samples):
    """Loader workers (kept across epochs) must see each epoch's augmentation, as in-process loading does."""
    res = []
    for workers in (0, 1):
        cfg = tiny_config(epochs=2, max_steps_per_epoch=1, workers=workers)
        tr, va = split_train_val(fixture_samples, cfg.val_count, cfg.seed)
        t = Trainer(cfg, tr, va, tmp_path / f"w{workers}", tmp_path / "cache")
        t.fit(progress=False)
        res.append(t.model.state_dict())
    for k, v in res[0].items():
        if v.is_floating_point():
            assert torch.allclose(v, res[1][k], atol=1e-5), k


def test_cli_pack_then_train_from_pack(tmp_path):
    from click.testing import CliRunner
    from conftest import ISBI_FIX

    from cephalo.cli import main

    r = CliRunner()
    pack = tmp_path / "fix.npz"
    res = r.invoke(main, ["pack", "--data", str(ISBI_FIX), "--out", str(pack), "--input-size", "128", "--split", "",
                          "--cache-dir", str(tmp_path / "cache")])
    assert res.exit_code == 0, res.output
    assert "8 images at 128" in res.output
    common = ["--backbone", "hrnet_w18_small", "--epochs", "1", "--max-steps-per-epoch", "1", "--batch-size", "4",
              "--val-count", "2", "--amp", "off", "--threads", "2", "--no-progress", "--checkpoint-every", "100"]
    res = r.invoke(main, ["train", "--data", str(pack), "--out", str(tmp_path / "run"), "--input-size", "128",
                          *common])
    assert res.exit_code == 0, res.output
    assert "6 train / 2 val" in res.output
    assert load_checkpoint(tmp_path / "run" / "best.pt")["epoch"] == 1
    # 'eval --split val': the checkpoint's own carve (val_count 2, seed 0) of the folder's train split
    js = tmp_path / "val.json"
    res = r.invoke(main, ["eval", str(tmp_path / "run" / "best.pt"), "--data", str(ISBI_FIX), "--split", "val",
                          "--cache-dir", str(tmp_path / "cache"), "--json-out", str(js)])
    assert res.exit_code == 0, res.output
    assert json.loads(js.read_text())["n_images"] == 2
    res = r.invoke(main, ["train", "--data", str(pack), "--out", str(tmp_path / "ft"), "--input-size", "128",
                          "--init", str(tmp_path / "run" / "best.pt"), "--restart-period", "1", *common,
                          "--val-count", "0", "--aug-processing-p", "0.3", "--aug-gamma-max", "1.8"])
    assert res.exit_code == 0 and "initialised from run/best.pt (epoch 1" in res.output, res.output
    assert "8 train / 0 val" in res.output and "no validation images: best.pt is the last epoch" in res.output
    ft_cfg = load_checkpoint(tmp_path / "ft" / "last.pt")["config"]
    assert ft_cfg["restart_period"] == 1 and ft_cfg["aug_processing_p"] == 0.3 and ft_cfg["aug_gamma_max"] == 1.8
    res = r.invoke(main, ["eval", str(tmp_path / "ft" / "last.pt"), "--data", str(ISBI_FIX), "--split", "val"])
    assert res.exit_code != 0 and "no validation images" in res.output
    res = r.invoke(main, ["train", "--data", str(pack), "--out", str(tmp_path / "run2"), "--input-size", "160",
                          *common])
    assert res.exit_code != 0 and "config needs letterbox-area-v1-160x160" in res.output
    res = r.invoke(main, ["pack", "--data", str(ISBI_FIX), "--out", str(tmp_path / "x.zip")])
    assert res.exit_code != 0 and "must end in .npz" in res.output



def test_lr_warmup_and_schedule_positions(tmp_path, fixture_samples):
    """LR in effect at each step: cosine schedule at the step's position, scaled by a linear warm-up."""
    seen = {}
    for warm in (0.0, 2.0):
        cfg = tiny_config(epochs=4, warmup_epochs=warm, restart_period=4)   # 6 train images, batch 4: 1 step
        tr, va = split_train_val(fixture_samples, cfg.val_count, cfg.seed)
        t = Trainer(cfg, tr, va, tmp_path / f"w{warm}", tmp_path / "cache")
        lrs = []
        orig = t.opt.step

        def spy(*a, **k):
            lrs.append(t.opt.param_groups[0]["lr"])
            return orig(*a, **k)

        t.opt.step = spy
        t.fit(progress=False, stop_after=2)
        seen[warm] = lrs
    import math
    base = 2e-3
    cos = [1e-3 * base + (base - 1e-3 * base) * (1 + math.cos(math.pi * p / 4)) / 2 for p in (0, 1)]
    assert seen[0.0] == pytest.approx(cos)
    assert seen[2.0] == pytest.approx([c * f for c, f in zip(cos, (0.5, 1.0))])


def test_augmentation_scale_range_from_config(tmp_path, fixture_samples):
    t = Trainer(tiny_config(aug_scale_min=0.7, aug_scale_max=1.3), fixture_samples[:4], [], tmp_path / "r",
                tmp_path / "cache")
    assert t.train_set.augment.scale == (0.7, 1.3)
    with pytest.raises(ValueError, match="scale range"):
        Trainer(tiny_config(aug_scale_min=1.2, aug_scale_max=1.1), fixture_samples[:4], [], tmp_path / "r",
                tmp_path / "cache")


def test_init_from_checkpoint_fine_tunes_and_checks_architecture(tmp_path, fixture_samples):
    from sdk.errors import ModelError

    cfg = tiny_config(epochs=1, max_steps_per_epoch=1)
    tr, va = split_train_val(fixture_samples, cfg.val_count, cfg.seed)
    src = Trainer(cfg, tr, va, tmp_path / "src", tmp_path / "cache")
    src.fit(progress=False)
    best = load_checkpoint(tmp_path / "src" / "best.pt")

    ft = Trainer(cfg.override(epochs=2, lr=1e-4), tr, va, tmp_path / "ft", tmp_path / "cache")
    line = ft.init_from(tmp_path / "src" / "best.pt")
    assert "best.pt" in line and "epoch 1" in line and ft.epoch == 0
    for k, v in ft.model.state_dict().items():
        assert torch.equal(v, best["model"][k]), k
    ft.fit(progress=False, stop_after=1)
    assert load_checkpoint(tmp_path / "ft" / "last.pt")["init"] == line
    again = Trainer(cfg.override(epochs=2, lr=1e-4), tr, va, tmp_path / "ft", tmp_path / "cache")
    again.resume(tmp_path / "ft" / "last.pt")
    assert again.init_info == line                    # the source survives a resume
    # a fine-tune of the fine-tune names both sources
    ft2 = Trainer(cfg.override(epochs=1, lr=1e-4), tr, va, tmp_path / "ft2", tmp_path / "cache")
    chain = ft2.init_from(tmp_path / "ft" / "last.pt")
    assert chain.startswith("initialised from ft/last.pt") and chain.endswith("that one " + line)

    with pytest.raises(ModelError, match="heatmap_stride=4"):
        Trainer(cfg.override(heatmap_stride=2), tr, va, tmp_path / "s2", tmp_path / "cache").init_from(
            tmp_path / "src" / "best.pt")
    with pytest.raises(ModelError, match="schema 'isbi19', not 'aariz29'"):
        Trainer(cfg.override(schema="aariz29"), [], [], tmp_path / "a", tmp_path / "cache").init_from(
            tmp_path / "src" / "best.pt")
    with pytest.raises(ModelError, match="does not exist"):
        ft.init_from(tmp_path / "nope.pt")
