"""Runs that differ only in their random draws (``--aug-seed``) keep one validation carve, and their weights can be
averaged into one model (``scripts/gpu_train.py --soup``)."""
import sys
from pathlib import Path

import torch

from train.config import TrainConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from gpu_train import soup  # noqa: E402


def test_aug_seed_changes_the_draws_not_the_carve():
    base = TrainConfig(seed=3)
    assert base.draw_seed == 3
    other = base.override(aug_seed=7)
    assert other.draw_seed == 7 and other.seed == 3            # the carve follows seed alone
    assert TrainConfig.from_dict({k: v for k, v in base.to_dict().items() if k != "aug_seed"}).draw_seed == 3


def test_soup_averages_float_weights_and_keeps_counters(tmp_path):
    paths = []
    for i, v in enumerate((1.0, 3.0)):
        ck = {"epoch": 10 + i, "model": {"w": torch.full((2, 2), v), "bn.num_batches_tracked": torch.tensor(5 + i)}}
        paths.append(tmp_path / f"{i}.pt")
        torch.save(ck, paths[-1])
    out = soup(paths)
    assert torch.allclose(out["model"]["w"], torch.full((2, 2), 2.0))
    assert out["model"]["bn.num_batches_tracked"].item() == 5 and out["epoch"] == 10
