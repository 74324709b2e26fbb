"""Combining annotators: the junior moved onto the senior's convention before averaging."""
from dataclasses import replace

import numpy as np
import pytest
from conftest import ISBI_FIX

from sdk.errors import AnnotationError
from sdk.schemas import ISBI19
from train.data.labels import aligned_mean, annotator_offsets
from train.datasets import load_folder, load_train_val
from train.trainer import split_train_val


def _both():
    return [load_folder(ISBI_FIX, ISBI19, split=None, annotators=(a,)) for a in ("senior", "junior")]


def test_a_constant_habit_is_removed_and_noise_averaged():
    sen, _ = _both()
    rng = np.random.default_rng(0)
    habit = rng.normal(0, 3.0, size=(19, 2))                     # mm, the same on every image
    noise = [rng.normal(0, 1.0, size=(19, 2)) for _ in sen]      # mm, per image
    jun = [replace(s, points=s.points - (habit + n) / s.spacing) for s, n in zip(sen, noise)]
    fit = {s.id for s in sen}
    off = annotator_offsets(sen, jun, fit)
    assert np.allclose(off, habit + np.mean(noise, axis=0))
    merged, offsets = aligned_mean([sen, jun], fit)
    assert offsets.shape == (1, 19, 2) and np.allclose(offsets[0], off)
    # each target = senior + half the junior's noise about its own mean: no convention shift left
    moved = np.array([(m.points - s.points) * s.spacing for m, s in zip(merged, sen)])
    assert np.allclose(moved.mean(axis=0), 0, atol=1e-9)
    plain = np.array([((s.points + j.points) / 2 - s.points) * s.spacing for s, j in zip(sen, jun)])
    assert np.allclose(plain.mean(axis=0), -off / 2)         # a plain mean moves every target halfway


def test_offsets_are_fitted_on_the_given_images_only():
    sen, jun = _both()
    some = {sen[0].id, sen[1].id}
    far = {s.id: replace(s, points=s.points + (100.0 if s.id not in some else 0.0)) for s in jun}
    assert np.allclose(annotator_offsets(sen, list(far.values()), some), annotator_offsets(sen, jun, some))
    with pytest.raises(AnnotationError, match="no image"):
        annotator_offsets(sen, jun, {"nope"})
    with pytest.raises(AnnotationError, match="one annotator only"):
        aligned_mean([sen, jun[1:]], some)


def test_load_train_val_aligned_keeps_the_carve_and_scores_the_reference():
    tr, va = load_train_val(ISBI_FIX, ISBI19, "auto", None, ("senior", "junior"), 3, 0, align=True)
    sen_tr, sen_va = split_train_val(load_folder(ISBI_FIX, ISBI19, split=None), 3, 0)
    assert [s.id for s in tr] == [s.id for s in sen_tr] and [s.id for s in va] == [s.id for s in sen_va]
    assert all(np.array_equal(a.points, b.points) for a, b in zip(va, sen_va))       # validation: senior's own
    assert not all(np.array_equal(a.points, b.points) for a, b in zip(tr, sen_tr))
    d = np.array([(a.points - b.points) * a.spacing for a, b in zip(tr, sen_tr)])
    assert np.allclose(d.mean(axis=0), 0, atol=1e-9)        # fitted on exactly these images: mean shift zero
    plain_tr, _ = load_train_val(ISBI_FIX, ISBI19, "auto", None, ("senior", "junior"), 3, 0, align=False)
    ref = load_folder(ISBI_FIX, ISBI19, split=None, annotators=("senior", "junior"))
    assert all(np.array_equal(a.points, b.points) for a, b in zip(plain_tr, split_train_val(ref, 3, 0)[0]))


def test_cli_pack_aligned_labels(tmp_path):
    """'pack --align-annotators': training images get the aligned mean, the carve's validation images the senior's
    own labels, and 'train' refuses the flag on a pack (the labels are baked in)."""
    from click.testing import CliRunner

    from cephalo.cli import main
    from train.data.pack import read_pack

    pack = tmp_path / "p.npz"
    r = CliRunner()
    res = r.invoke(main, ["pack", "--data", str(ISBI_FIX), "--out", str(pack), "--input-size", "64", "--split", "",
                          "--annotators", "senior,junior", "--align-annotators", "--val-count", "3",
                          "--cache-dir", str(tmp_path / "c")])
    assert res.exit_code == 0, res.output
    samples, _, info = read_pack(pack, 19)
    assert "aligned to senior" in info and "val-count 3" in info
    want_tr, want_va = load_train_val(ISBI_FIX, ISBI19, "auto", None, ("senior", "junior"), 3, 0, align=True)
    got = {s.id: s.points for s in samples}
    assert len(got) == 8
    assert all(np.allclose(got[s.id], s.points) for s in want_tr + want_va)
    res = r.invoke(main, ["train", "--data", str(pack), "--out", str(tmp_path / "run"), "--input-size", "64",
                          "--align-annotators", "--epochs", "1"])
    assert res.exit_code != 0 and "--align-annotators" in res.output


def test_cli_train_local_aligned(tmp_path, tiny_onnx):
    from click.testing import CliRunner

    from cephalo.cli import main
    from train.local_stage import load_local_checkpoint

    out = tmp_path / "loc"
    res = CliRunner().invoke(main, ["train-local", "--data", str(ISBI_FIX), "--out", str(out), "--first-model",
                                    str(tiny_onnx["onnx"]), "--split", "", "--annotators", "senior,junior",
                                    "--align-annotators", "--val-count", "2", "--epochs", "1", "--patch", "32",
                                    "--batch-size", "16", "--threads", "2"])
    assert res.exit_code == 0, res.output
    assert "senior,junior aligned to senior): 6 train / 2 val" in res.output
    assert "aligned to senior" in load_local_checkpoint(out / "last.pt")["data"]
