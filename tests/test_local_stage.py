"""The local stage's geometry: patches cut around points and read back land on the same sub-pixel spot."""
from dataclasses import replace

import numpy as np
import pytest

from sdk.decode import gaussian_heatmaps, input_to_heatmap
from sdk.errors import ImageError, ModelError
from sdk.local_stage import (
    LocalParams,
    LocalStage,
    apply_matrix,
    centred_matrices,
    cut_patches,
    fine_image,
    head_turn,
    local_inputs,
    local_points,
    local_stage_path,
    patch_matrix,
    patch_to_fine,
)
from sdk.preprocess import letterbox_geometry

PARAMS = LocalParams(size=64, factor=3.0, stride=2, sigma=1.5, mean=0.5, std=0.25, pad_value=0.0)


@pytest.mark.parametrize("hw", [(2400, 1935), (1001, 1500), (300, 280)])
def test_fine_mapping_round_trip(hw):
    lb = letterbox_geometry(hw, (384, 384))
    f = fine_image(np.zeros(hw, np.uint8), lb, 3.0)
    # fine scale = 3 x the letterbox scale, per axis, up to the rounding of the fine size
    assert abs(f.sx / lb.scale_x - 3.0) < 3.0 / min(hw) * 2 and abs(f.sy / lb.scale_y - 3.0) < 3.0 / min(hw) * 2
    xy = np.random.default_rng(0).uniform(0, min(hw) - 1, size=(19, 2))
    assert np.abs(f.to_image(f.to_fine(xy)) - xy).max() < 1e-9
    # pixel-centre convention: the image's corner (-0.5, -0.5) maps to the fine image's corner
    assert np.allclose(f.to_fine(np.array([-0.5, -0.5])), [-0.5, -0.5])
    assert np.allclose(f.to_fine(np.array([hw[1] - 0.5, hw[0] - 0.5])),
                       [f.pixels.shape[1] - 0.5, f.pixels.shape[0] - 0.5])


def test_patch_cut_is_an_exact_integer_crop():
    img = np.random.default_rng(1).integers(0, 255, size=(200, 150), dtype=np.uint8)
    m = centred_matrices(np.array([[40.4, 70.6], [3.0, 5.0]]), 32)
    p = cut_patches(img, m, 32, 7)
    # centre pixel (16, 16) of patch 0 is image pixel (round(40.4), round(70.6)) = (40, 71); no resampling
    assert np.array_equal(p[0], img[71 - 16:71 + 16, 40 - 16:40 + 16])
    # off the image: the pad value
    assert p[1][0, 0] == 7 and p[1][16, 16] == img[5, 3]


@pytest.mark.parametrize("zoom", [0.8, 1.6])
def test_patches_cut_from_the_decoded_image_match_the_resized_fine_image(zoom):
    """The Detector's direct cut (no whole-image resize) gives the patches of the resized fine image: same
    geometry (a dot lands on the same patch pixel) and, on a smooth image, the same pixels within a few levels."""
    import cv2

    hw = (1200, 967)                     # a 1/2-scale decode of ISBI's 2400 x 1935
    rng = np.random.default_rng(4)
    smooth = cv2.GaussianBlur(rng.uniform(0, 255, hw).astype(np.float32), (0, 0), 6)
    img = cv2.normalize(smooth, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    lb = letterbox_geometry(hw, (384, 384))
    factor = zoom / lb.scale_y           # fine pixels per decoded pixel = zoom
    resized = fine_image(img, lb, factor)
    direct = fine_image(img, lb, factor, direct=True)
    assert resized.zx == 1.0 and direct.pixels is not resized.pixels and direct.pixels.shape == hw
    assert abs(direct.zx - zoom) < 0.01 and (direct.sx, direct.sy) == (resized.sx, resized.sy)
    pts = rng.uniform(50, 900, size=(6, 2))
    a, _ = local_inputs(resized, pts, PARAMS)
    b, mats = local_inputs(direct, pts, PARAMS)
    assert np.abs(a - b).mean() * PARAMS.std * 255 < 1.0 and np.abs(a - b).max() * PARAMS.std * 255 < 8
    # geometry: a blurred dot at an original-pixel point has the same centroid in both patches (sub-pixel)
    dot = cv2.GaussianBlur(cv2.circle(np.zeros(hw, np.uint8), (400, 500), 8, 255, -1), (0, 0), 3)
    centroids = []
    for direct_cut in (False, True):
        p = local_inputs(fine_image(dot, lb, factor, direct=direct_cut), np.array([[400.3, 500.6]]), PARAMS)[0][0, 0]
        w = p - p.min()
        yy, xx = np.mgrid[:p.shape[0], :p.shape[1]]
        centroids.append(np.array([(w * xx).sum(), (w * yy).sum()]) / w.sum())
    assert np.abs(centroids[0] - centroids[1]).max() < 0.03
    # a strong shrink keeps the anti-aliased resize
    assert fine_image(img, lb, factor * 0.5 / zoom, direct=True).zx == 1.0


def test_rotated_patch_maps_back():
    m = patch_matrix(np.array([50.0, 60.0]), 64, angle_deg=12.0, scale=1.1)
    pts = np.array([[47.3, 58.2], [55.1, 61.9]])
    assert np.abs(patch_to_fine(apply_matrix(pts, m), m) - pts).max() < 1e-9
    assert np.allclose(apply_matrix(np.array([50.0, 60.0]), m), [32, 32])


def test_patches_are_turned_into_the_heads_usual_frame():
    """A head tilted by t degrees gets patches turned by -t: the S-N line then lies at its usual angle in them,
    and the same anatomy gives the same patch whatever the tilt (up to resampling). A face to the left turns the
    other way; a schema without sella or nasion, or a head within half a degree of upright, is not turned."""
    import cv2

    from sdk.schemas import ISBI19

    usual = np.radians(-6.5)
    s = np.array([300.0, 400.0])
    xy = np.zeros((19, 2))
    for tilt in (-10.0, 4.0, 9.0):
        a = usual + np.radians(tilt)
        xy[0], xy[1] = s, s + 700 * np.array([np.cos(a), np.sin(a)])
        assert head_turn(xy, ISBI19) == pytest.approx(-tilt, abs=1e-9)      # whole: no rounding
        m = patch_matrix(xy[0], 64, head_turn(xy, ISBI19))
        d = apply_matrix(xy[1], m) - apply_matrix(xy[0], m)
        assert np.degrees(np.arctan2(d[1], d[0])) == pytest.approx(-6.5, abs=1e-9)
        mirrored = xy.copy()
        mirrored[:, 0] = -mirrored[:, 0]
        assert head_turn(mirrored, ISBI19) == pytest.approx(tilt, abs=1e-9)
    xy[1] = s + 700 * np.array([np.cos(usual + 0.004), np.sin(usual + 0.004)])
    assert head_turn(xy, ISBI19) == 0.0         # a quarter degree: upright, the integer cut
    xy[1] = s + 700 * np.array([np.cos(usual + 0.04), np.sin(usual + 0.04)])
    assert head_turn(xy, ISBI19) == -2.5        # 2.29 deg, to the half degree

    class NoSN:
        def index(self, name):
            raise KeyError(name)

    assert head_turn(xy, NoSN()) == 0.0
    # the same dot, read in patches of a tilted copy of an image, maps back onto its place in each
    hw = (900, 700)
    lb = letterbox_geometry(hw, (384, 384))
    dot = cv2.GaussianBlur(cv2.circle(np.zeros(hw, np.uint8), (400, 500), 6, 255, -1), (0, 0), 2)
    fine = fine_image(dot, lb, 3.0 / 1.0)
    for turn in (0.0, 7.0, -12.0):
        x, mats = local_inputs(fine, np.array([[403.0, 497.0]]), PARAMS, turn)
        p = x[0, 0] - x[0, 0].min()
        yy, xx = np.mgrid[:p.shape[0], :p.shape[1]]
        c = np.array([(p * xx).sum(), (p * yy).sum()]) / p.sum()
        back = fine.to_image(patch_to_fine(c, mats[0]))
        assert np.abs(back - [400, 500]).max() < 0.5, turn


def test_local_points_recover_subpixel_positions():
    """Ideal patch heatmaps drawn at the true points read back within 0.05 original pixels."""
    hw = (2400, 1935)
    lb = letterbox_geometry(hw, (384, 384))
    fine = fine_image(np.zeros(hw, np.uint8), lb, PARAMS.factor)
    rng = np.random.default_rng(2)
    truth = rng.uniform(100, 1800, size=(5, 2))
    first = truth + rng.uniform(-15, 15, size=truth.shape)     # first-stage guesses ~1 mm off
    x, mats = local_inputs(fine, first, PARAMS)
    assert x.shape == (5, 1, 64, 64) and x.dtype == np.float32
    h = PARAMS.size // PARAMS.stride
    hm = np.zeros((5, 5, h, h), np.float32)
    for i in range(5):
        at = input_to_heatmap(apply_matrix(fine.to_fine(truth[i]), mats[i]), PARAMS.stride)
        hm[i, i] = gaussian_heatmaps(at[None], (h, h), PARAMS.sigma)[0]
        hm[i, (i + 1) % 5] = 0.9   # other channels are ignored: patch i is read on channel i
    got = local_points(hm, mats, fine, PARAMS, first)
    # the decode prior (sd 4 input px = 12 patch px; the peak's sd is 3) pulls a point towards the first-stage
    # guess by 3^2 / (3^2 + 12^2) = 6% of their distance, no more
    prior = local_points(hm, mats, fine, replace(PARAMS, prior_sd=4.0), first)
    pull = np.linalg.norm(prior - truth, axis=1) / np.linalg.norm(first - truth, axis=1)
    assert pull.max() < 0.08 and pull.min() > 0.03
    assert np.abs(got - truth).max() < 0.05


def test_fine_image_checks_its_input():
    lb = letterbox_geometry((100, 80), (64, 64))
    with pytest.raises(ImageError):
        fine_image(np.zeros((50, 80), np.uint8), lb, 3.0)
    with pytest.raises(ValueError):
        fine_image(np.zeros((100, 80), np.uint8), lb, 0.0)


def test_local_stage_refuses_a_first_stage_file(tiny_onnx):
    with pytest.raises(ModelError, match="not a local-stage model"):
        LocalStage(tiny_onnx["onnx"])
    with pytest.raises(ModelError, match="does not exist"):
        LocalStage(tiny_onnx["onnx"].with_name("nope.onnx"))
    assert local_stage_path(tiny_onnx["onnx"]).name.endswith(".local.onnx")


def test_local_stage_training_resumes_and_refuses_other_settings(tiny_local, tiny_run, fixture_samples):
    import shutil

    import torch

    from train.local_stage import LocalConfig, load_local_checkpoint, train_local_stage

    ck = load_local_checkpoint(tiny_local["run"] / "last.pt")
    assert ck["epoch"] == 2 and len(ck["history"]) == 2
    assert all(np.isfinite(h["train_loss"]) and h["mre_mm"] > 0 and h["val_mre_mm"] == h["mre_mm"] for h in ck["history"])
    # one more epoch continues the same run: history grows, the first two records are kept
    cfg = LocalConfig(input_size=128, patch=32, widths=(8, 16, 24, 32), epochs=3, batch_size=16)
    first = {s.id: s.points for s in fixture_samples[6:]}
    run = tiny_local["run"].parent / "resumed"
    shutil.copytree(tiny_local["run"], run)
    train_local_stage(fixture_samples[:6], fixture_samples[6:], first, 19, cfg, run, threads=2)
    ck3 = torch.load(run / "last.pt", map_location="cpu", weights_only=False)
    assert ck3["epoch"] == 3 and ck3["history"][:2] == ck["history"]
    with pytest.raises(ModelError, match="patch"):
        train_local_stage(fixture_samples[:6], fixture_samples[6:], first, 19,
                      LocalConfig(input_size=128, patch=48, widths=(8, 16, 24, 32), epochs=4), run, threads=2)
    with pytest.raises(ModelError, match="not a local-stage checkpoint"):
        load_local_checkpoint(tiny_run[0] / "last.pt")      # a first-stage checkpoint


def test_detector_runs_the_local_stage(tiny_onnx, tiny_local, fixture_samples, tmp_path):
    import shutil

    from sdk import Detector

    first_path = tiny_onnx["onnx"]
    # full decodes: the local stage asks a reduced JPEG decode to keep its finer scale, so the first stage alone
    # may read a smaller decode than the pair does
    plain = Detector(first_path, local_stage=False, fast_decode=False)
    assert plain.info["local_stage"] is None
    for key in ("fp32", "int8"):
        det = Detector(first_path, local_stage=tiny_local[key], fast_decode=False)
        assert det.info["local_stage"] == str(tiny_local[key])
        s = fixture_samples[0]
        a, b = plain(s.image), det(s.image)
        assert np.array_equal(a.scores, b.scores)          # confidence stays the first stage's
        lb = letterbox_geometry(a.image_size, tuple(plain.meta.input_hw))
        half = 16 / (3.0 * lb.scale_x)                       # half a patch in original pixels
        turn = np.radians(head_turn(a.xy, plain.meta.schema))   # the patch is turned into the head's frame
        moved = np.abs(b.xy - a.xy).max(axis=1)
        assert moved.max() <= half * (abs(np.cos(turn)) + abs(np.sin(turn))) + 1 and moved.max() > 0   # within it
        # batch and single calls agree with the local stage too
        assert np.allclose(det.batch([s.image, s.image])[1].xy, b.xy)
    # found by name beside the first-stage file
    d = tmp_path / "m"
    d.mkdir()
    shutil.copy(first_path, d / "model.onnx")
    assert Detector(d / "model.onnx").local is None
    shutil.copy(tiny_local["fp32"], d / "model.local.onnx")
    assert Detector(d / "model.onnx").info["local_stage"] == str(d / "model.local.onnx")
    assert Detector(d / "model.onnx", local_stage=False).local is None
    with pytest.raises(ModelError, match="does not exist"):
        Detector(first_path, local_stage=d / "missing.local.onnx")


def _with_first_input(src, dst, first_input):
    import onnx

    from convert.export import set_onnx_meta
    from sdk.metadata import META_KEY, ModelMeta

    proto = onnx.load(str(src))
    meta = ModelMeta.from_json(next(p.value for p in proto.metadata_props if p.key == META_KEY), "x")
    set_onnx_meta(proto, replace(meta, extra={**meta.extra, "first_stage_input": list(first_input)}))
    onnx.save(proto, str(dst))
    return dst


def test_local_stage_rescales_to_its_first_stage_size(tiny_onnx, tiny_local, tmp_path, fixture_samples):
    """Behind a first stage of another input size the patches keep the trained scale: factor and prior rescale."""
    from sdk import Detector
    from sdk.image_io import load_image
    from sdk.local_stage import LocalStage, fine_image
    from sdk.preprocess import letterbox_geometry

    own = LocalStage(tiny_local["fp32"])
    assert own.first_input == own.trained_behind == (128, 128)
    det = Detector(tiny_onnx["onnx"], local_stage=_with_first_input(tiny_local["fp32"], tmp_path / "a.local.onnx",
                                                               (256, 256)))
    assert det.local.trained_behind == (256, 256) and det.local.first_input == (128, 128)
    assert det.local.factor == pytest.approx(own.factor * 2)
    assert det.local.params.prior_sd == pytest.approx(own.params.prior_sd / 2)
    gray = load_image(fixture_samples[0].image).gray
    trained = fine_image(gray, letterbox_geometry(gray.shape, (256, 256)), own.factor)
    here = fine_image(gray, letterbox_geometry(gray.shape, (128, 128)), det.local.factor)
    # equal up to the letterbox's rounding of the short side to whole input pixels (< 1% on this small image)
    assert abs(trained.sx - here.sx) < 0.01 * trained.sx and abs(trained.sy - here.sy) < 0.01 * trained.sy
    assert np.allclose(trained.pixels.shape, here.pixels.shape, rtol=0.01)
    res = det(fixture_samples[0].image)
    assert np.isfinite(res.xy).all()


def test_local_stage_must_pair_with_its_first_stage(tiny_onnx, tiny_local, tmp_path):
    from sdk import Detector

    bad = _with_first_input(tiny_local["fp32"], tmp_path / "bad.local.onnx", (384, 256))
    with pytest.raises(ModelError, match="aspect ratio"):
        Detector(tiny_onnx["onnx"], local_stage=bad)


def test_cli_train_local(tmp_path, tiny_onnx):
    from click.testing import CliRunner
    from conftest import ISBI_FIX

    from cephalo.cli import main
    from train.local_stage import load_local_checkpoint

    r = CliRunner()
    args = ["train-local", "--data", str(ISBI_FIX), "--out", str(tmp_path / "loc"), "--first-model",
            str(tiny_onnx["onnx"]), "--split", "", "--val-count", "2", "--epochs", "2", "--epochs-now", "1",
            "--patch", "32", "--batch-size", "16", "--threads", "2"]
    res = r.invoke(main, args)
    assert res.exit_code == 0, res.output
    assert "6 train / 2 val" in res.output and "done: epoch 1" in res.output
    ck = load_local_checkpoint(tmp_path / "loc" / "last.pt")
    assert ck["config"]["input_size"] == 128 and ck["config"]["patch"] == 32   # the first stage's input size
    assert (tmp_path / "loc" / "first_stage_val.npz").is_file()
    assert ck["config"]["head_size"] == 0.0                                   # the canvas's scale by default
    # --head-scale: the head's size of the 6 training images, in the 128 px first stage's input pixels
    from sdk.schemas import ISBI19
    from train.datasets import load_train_val
    from train.local_stage import training_head_size
    tr, _ = load_train_val(ISBI_FIX, ISBI19, "auto", None, ("senior",), 2, 0, gaps=True)
    head = r.invoke(main, args[:4] + [str(tmp_path / "loc_h")] + args[5:] + ["--head-scale"])
    assert head.exit_code == 0, head.output
    assert load_local_checkpoint(tmp_path / "loc_h" / "last.pt")["config"]["head_size"] == pytest.approx(
        training_head_size(tr, 128))
    res = r.invoke(main, args)                                                # resumes to epoch 2
    assert res.exit_code == 0 and "done: epoch 2" in res.output, res.output
    res = r.invoke(main, ["train-local", "--data", str(tmp_path / "x.npz"), "--out", str(tmp_path / "l2")])
    assert res.exit_code != 0


def test_cli_train_local_final_fit_on_all_images(tmp_path, tiny_onnx):
    """--val-count 0: every image trains, nothing is validated, last.pt is the result and converts."""
    from click.testing import CliRunner
    from conftest import ISBI_FIX

    from cephalo.cli import main
    from convert.local_stage import local_meta
    from sdk.schemas import get_schema
    from train.local_stage import load_local_checkpoint

    out = tmp_path / "fit"
    args = ["train-local", "--data", str(ISBI_FIX), "--out", str(out), "--first-model", str(tiny_onnx["onnx"]),
            "--split", "", "--val-count", "0", "--epochs", "1", "--patch", "32", "--batch-size", "16",
            "--threads", "2"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert "8 train / 0 val" in res.output and "final fit" in res.output
    # as the first stage's trainer does without validation: best.pt is the last epoch
    assert load_local_checkpoint(out / "best.pt")["epoch"] == load_local_checkpoint(out / "last.pt")["epoch"]
    assert not (out / "first_stage_val.npz").exists()
    ck = load_local_checkpoint(out / "last.pt")
    assert ck["epoch"] == 1 and "mre_mm" not in ck["history"][0]
    meta = local_meta(ck, get_schema("isbi19").to_dict())
    assert "validation" not in meta.accuracy and meta.extra["epochs_trained"] == 1
    res = CliRunner().invoke(main, args[:-2] + ["--val-count", "-1"])
    assert res.exit_code != 0 and "--val-count" in res.output


def test_cli_train_local_init_fine_tunes_with_the_source_recipe(tmp_path, tiny_onnx, tiny_local):
    """--init starts from a local checkpoint's weights and keeps its patch geometry; the run records its origin."""
    import torch
    from click.testing import CliRunner
    from conftest import ISBI_FIX

    from cephalo.cli import main
    from train.local_stage import load_local_checkpoint

    src = load_local_checkpoint(tiny_local["run"] / "last.pt")
    out = tmp_path / "ft"
    args = ["train-local", "--data", str(ISBI_FIX), "--out", str(out), "--first-model", str(tiny_onnx["onnx"]),
            "--split", "", "--val-count", "2", "--epochs", "1", "--lr", "1e-9", "--batch-size", "16",
            "--patch", "48", "--aug-processing-p", "0.5", "--aug-gamma-max", "1.8", "--threads", "2",
            "--init", str(tiny_local["run"] / "last.pt")]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert "fine-tuning" in res.output
    ck = load_local_checkpoint(out / "last.pt")
    assert ck["config"]["patch"] == src["config"]["patch"] == 32          # the source's recipe, not --patch 48
    assert ck["config"]["aug_processing_p"] == 0.5 and ck["config"]["aug_gamma_max"] == 1.8
    assert f"initialised from {tiny_local['run'].name}/last.pt (epoch {src['epoch']}" in ck["init"]   # as stage 1
    # lr 1e-9 (warm-up makes it smaller still): the weights are the source's, so the init was applied (batch-norm
    # running statistics move whatever the learning rate)
    for k, v in src["model"].items():
        if v.dtype.is_floating_point and "running" not in k:
            assert torch.allclose(ck["model"][k], v, atol=1e-5), k
    res = CliRunner().invoke(main, args[:-1] + [str(tmp_path / "missing.pt")])
    assert res.exit_code != 0 and "does not exist" in res.output


def test_old_keyword_refine_still_works_and_warns(tiny_onnx):
    from sdk import Detector

    with pytest.warns(DeprecationWarning, match="local_stage"):
        det = Detector(tiny_onnx["onnx"], refine=False)
    assert det.local is None
    with pytest.raises(TypeError, match="refin"):
        Detector(tiny_onnx["onnx"], refin=False)


def test_each_stage_loader_refuses_the_other_stage_checkpoint(tiny_run, tiny_local):
    from sdk.errors import ModelError
    from train.checkpoint import FORMAT, load_checkpoint
    from train.local_stage import load_local_checkpoint

    ck = load_local_checkpoint(tiny_local["run"] / "last.pt")
    assert ck["format"] == FORMAT and ck["stage"] == "local" and {"optimizer", "scheduler"} <= set(ck)
    with pytest.raises(ModelError, match="local-stage checkpoint"):
        load_checkpoint(tiny_local["run"] / "last.pt")
    with pytest.raises(ModelError, match="not a local-stage checkpoint"):
        load_local_checkpoint(tiny_run[0] / "last.pt")


def test_a_local_stage_behind_another_input_size_keeps_its_patch_scale():
    from sdk.local_stage import rescale_for_first_stage

    factor, prior = rescale_for_first_stage(3.0, 4.0, (384, 384), (320, 320))
    assert factor == pytest.approx(3.6) and prior == pytest.approx(4.0 / 1.2)
    assert rescale_for_first_stage(3.0, 4.0, (256, 320), (512, 640)) == (pytest.approx(1.5), pytest.approx(8.0))
    with pytest.raises(ValueError, match=r"trained behind a \(384, 384\) first stage; a \(384, 320\) first stage"):
        rescale_for_first_stage(3.0, 4.0, (384, 384), (384, 320))


@pytest.mark.parametrize("upscale", [1, 4])
def test_re_reading_some_landmarks_is_the_reading_of_those_landmarks(tmp_path, upscale):
    """``locate_at`` (what repair calls) reads the landmarks asked for as the whole reading does, at the same turn
    and on an image decoded at 1/2 too; a wider prior than the stage's own changes the decode, a narrower one does
    not; another turn reads other patches."""
    import cv2
    from conftest import ISBI_FIX

    from sdk import Detector

    det = Detector(backend="onnxruntime")
    g = cv2.imread(str(ISBI_FIX / "images" / "151.jpg"), cv2.IMREAD_GRAYSCALE)
    path = tmp_path / "151.jpg"                 # a large JPEG is decoded at 1/2
    cv2.imwrite(str(path), cv2.resize(g, None, fx=upscale, fy=upscale, interpolation=cv2.INTER_CUBIC))
    x, lb, loaded = det.preprocess(path)
    assert loaded.reduction == (2 if upscale == 4 else 1)
    xy = det.postprocess(det.run_network(x[None])[0], lb, loaded, None).xy
    local = det.local
    some = np.array([0, 4, 9, 18])
    assert local.zoom(xy, lb) == 1.0                        # the bundled file reads at the canvas's scale
    z = 1.03                                                # a head read at its own scale (a file with a head size)
    for turn, zoom in ((0.0, 1.0), (7.5, z), (7.5, 1.1)):
        whole, peaks = local.locate_with_peaks(loaded.gray, lb, xy, loaded.reduction, turn,
                                               None if zoom == 1.0 else zoom)
        part, pk = local.locate_at(loaded.gray, lb, xy[some], some, loaded.reduction, turn=turn, zoom=zoom)
        assert np.allclose(part, whole[some], atol=1e-4) and np.allclose(pk, peaks[some], atol=1e-5)
    assert np.abs(part - local.locate_at(loaded.gray, lb, xy[some], some, loaded.reduction, turn=7.5,
                                         zoom=z)[0]).max() > 0.05                 # another zoom: other patches
    part, _ = local.locate_at(loaded.gray, lb, xy[some], some, loaded.reduction, turn=7.5)
    assert np.array_equal(local.locate(loaded.gray, lb, xy, loaded.reduction),
                          local.locate_with_peaks(loaded.gray, lb, xy, loaded.reduction)[0])
    other, _ = local.locate_at(loaded.gray, lb, xy[some], some, loaded.reduction, turn=0.0)
    assert np.abs(other - part).max() > 0.05                                   # 7.5 deg: other patches
    narrow, _ = local.locate_at(loaded.gray, lb, xy[some], some, loaded.reduction,
                                prior_sd=local.params.prior_sd / 2)
    assert np.array_equal(narrow, other)                                        # the stage's own prior is kept
    wide, _ = local.locate_at(loaded.gray, lb, xy[some] + 6 * upscale, some, loaded.reduction, prior_sd=40.0)
    near, _ = local.locate_at(loaded.gray, lb, xy[some] + 6 * upscale, some, loaded.reduction)
    assert np.abs(wide - near).max() > 0.05
