import json
import math
import os

import pytest
import torch
from conftest import tiny_config

from sdk.errors import ModelError
from train.checkpoint import load_checkpoint, save_atomic
from train.trainer import Trainer, split_train_val


def test_tiny_model_learns(tiny_run):
    run, hist = tiny_run
    losses = [h["train_loss"] for h in hist]
    assert len(hist) == 4 and all(math.isfinite(l) for l in losses)
    assert losses[-1] < 0.7 * losses[0]
    lines = (run / "history.jsonl").read_text().splitlines()
    assert [json.loads(l)["epoch"] for l in lines] == [1, 2, 3, 4]
    assert "val_mre_mm" in hist[-1]


def test_checkpoint_loads_weights_only(tiny_run):
    run, hist = tiny_run
    ck = torch.load(run / "last.pt", map_location="cpu", weights_only=True)
    assert ck["epoch"] == 4 and ck["schema"]["id"] == "isbi19"
    best = load_checkpoint(run / "best.pt")
    assert best["best_mre_mm"] == pytest.approx(min(h["val_mre_mm"] for h in hist))


def test_resume_continues_from_saved_epoch(tmp_path, fixture_samples):
    cfg = tiny_config(epochs=3, max_steps_per_epoch=1)
    tr, va = split_train_val(fixture_samples, cfg.val_count, cfg.seed)
    a = Trainer(cfg, tr, va, tmp_path / "a", tmp_path / "cache")
    a.fit(progress=False, stop_after=1)      # "killed" after epoch 1
    assert load_checkpoint(tmp_path / "a" / "last.pt")["epoch"] == 1
    b = Trainer(cfg, tr, va, tmp_path / "a", tmp_path / "cache")
    b.resume(tmp_path / "a" / "last.pt")
    assert b.epoch == 1
    w_before = {k: v.clone() for k, v in b.model.state_dict().items()}
    assert all(torch.equal(w_before[k], v) for k, v in a.model.state_dict().items())
    hist = b.fit(progress=False)
    assert [h["epoch"] for h in hist] == [1, 2, 3]
    # Uninterrupted run for comparison: same augmentation stream and schedule, so the same weights.
    c = Trainer(cfg, tr, va, tmp_path / "c", tmp_path / "cache")
    c.fit(progress=False)
    for k, v in c.model.state_dict().items():
        if v.dtype.is_floating_point:
            assert torch.allclose(v, b.model.state_dict()[k], atol=1e-4), k


def test_bad_checkpoints(tmp_path, tiny_run):
    run, _ = tiny_run
    trunc = tmp_path / "trunc.pt"
    trunc.write_bytes((run / "last.pt").read_bytes()[:5000])
    with pytest.raises(ModelError, match="cannot be loaded"):
        load_checkpoint(trunc)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(ModelError, match="not a cephalo checkpoint"):
        load_checkpoint(foreign)
    with pytest.raises(ModelError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


def test_resume_refuses_other_schema(tiny_run):
    from sdk.schemas import AARIZ29

    t = Trainer.__new__(Trainer)  # only the schema check runs before anything is loaded
    t.schema = AARIZ29
    with pytest.raises(ModelError, match="schema 'isbi19'"):
        Trainer.resume(t, tiny_run[0] / "last.pt")


def test_atomic_save_keeps_old_file_on_failure(tmp_path):
    p = tmp_path / "x.pt"
    save_atomic({"a": 1}, p)

    class Boom:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        save_atomic({"a": Boom()}, p)
    assert torch.load(p, weights_only=True) == {"a": 1}
    assert [f.name for f in tmp_path.iterdir()] == ["x.pt"]


@pytest.mark.skipif(os.name == "nt", reason="POSIX permission bits")
def test_atomic_outputs_get_usual_permissions(tmp_path):
    from convert.files import atomic_path

    save_atomic({"a": 1}, tmp_path / "c.pt")
    with atomic_path(tmp_path / "m.onnx") as t:
        t.write_bytes(b"x")
    m = os.umask(0)
    os.umask(m)
    for f in ("c.pt", "m.onnx"):
        assert (tmp_path / f).stat().st_mode & 0o777 == 0o666 & ~m
