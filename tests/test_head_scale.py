"""The local stage reads a head at the size it learnt, not at the canvas's (issue 50)."""
import math

import cv2
import numpy as np
import pytest
from conftest import ISBI_FIX

from sdk.local_stage import ZOOM_RANGE, head_size, head_zoom
from sdk.preprocess import letterbox_geometry


def _turn(xy, deg, scale=1.0, shift=(0.0, 0.0)):
    a = math.radians(deg)
    r = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]) * scale
    return xy @ r.T + np.asarray(shift)


def test_the_head_size_turns_and_moves_with_the_head_and_scales_with_it():
    rng = np.random.default_rng(3)
    xy = rng.uniform(200, 1800, size=(19, 2))
    s = head_size(xy)
    assert s == pytest.approx(np.sqrt(((xy - xy.mean(0)) ** 2).sum(1).mean()))
    assert head_size(_turn(xy, 9.0, shift=(40, -70))) == pytest.approx(s)
    assert head_size(_turn(xy, -4.0, scale=0.8)) == pytest.approx(0.8 * s)
    gaps = xy.copy()
    gaps[[2, 5]] = np.nan                       # points not found are left out, not counted as zero
    assert head_size(gaps) == pytest.approx(head_size(np.delete(xy, [2, 5], axis=0)))
    assert math.isnan(head_size(xy[:2])) and math.isnan(head_size(np.full((19, 2), np.nan)))


def test_the_zoom_brings_the_head_to_the_learnt_size_on_any_canvas():
    rng = np.random.default_rng(4)
    xy = rng.uniform(300, 1500, size=(19, 2))
    lb = letterbox_geometry((2400, 1935), (320, 320))
    learnt = head_size(xy) * lb.scale_x
    assert head_zoom(learnt, xy, lb) == 1.0
    # the same head on a canvas 12% larger: letterboxed 12% smaller, so cut 12% finer
    big = letterbox_geometry((2688, 2167), (320, 320))
    assert head_zoom(learnt, xy + 100, big) == pytest.approx(1.12, abs=0.01)
    # a head that fills 10% less of the same canvas, turned
    assert head_zoom(learnt, _turn(xy, 7.0, scale=1 / 1.1), lb) == pytest.approx(1.10, abs=0.005)
    z = head_zoom(learnt * 1.0537, xy, lb)
    assert z == 1.05 and round(z / 0.01) * 0.01 == z                          # rounded to the step
    assert head_zoom(learnt * 3, xy, lb) == ZOOM_RANGE[1] and head_zoom(learnt / 3, xy, lb) == ZOOM_RANGE[0]
    assert head_zoom(0.0, xy, lb) == 1.0 and head_zoom(learnt, xy[:2], lb) == 1.0   # no size learnt / found


def _pad(gray, frac):
    h, w = gray.shape
    dy, dx = int(h * frac / 2), int(w * frac / 2)
    return cv2.copyMakeBorder(gray, dy, dy, dx, dx, cv2.BORDER_CONSTANT, value=0), np.array([dx, dy])


def _reading(det, gray):
    """The two stages' reading of ``gray`` (no reframing, repair or flags)."""
    x, lb, loaded = det.preprocess(gray)
    return det._read(det.run_network(x[None])[0], lb, loaded, None)


def test_a_local_stage_with_a_head_size_reads_a_head_on_a_larger_canvas_as_on_its_own(fixture_samples):
    """The same image on a canvas 12% larger: the first stage sees the head smaller; a local stage that knows the
    head size it learnt at (here the bundled one given its training images' size) zooms its patches back, so
    they are cut at the same scale as the original's (one zoom step), and the points agree more closely than
    when the patches take the canvas's scale (the bundled file's way)."""
    from sdk import Detector
    from train.local_stage import training_head_size

    det = Detector(backend="onnxruntime")
    assert det.local.head == 0.0                 # the bundled file: the canvas's scale
    det.local.head = training_head_size(fixture_samples, det.meta.input_hw[0])
    assert 50 < det.local.head < 70              # first-stage input px: the same at any image resolution
    moves = {True: [], False: []}
    for name in ("151.jpg", "152.jpg", "153.jpg"):
        gray = cv2.imread(str(ISBI_FIX / "images" / name), cv2.IMREAD_GRAYSCALE)
        big, off = _pad(gray, 0.12)
        base, wide = _reading(det, gray), _reading(det, big)
        fine = [r.frame.lb.scale_x * det.local.factor * r.frame.zoom for r in (base, wide)]
        assert fine[1] == pytest.approx(fine[0], rel=0.012)                     # the same patch scale
        assert wide.frame.zoom / base.frame.zoom == pytest.approx(big.shape[0] / gray.shape[0], rel=0.012)
        moves[True].append(np.linalg.norm(wide.result.xy - off - base.result.xy, axis=1))
    head, det.local.head = det.local.head, 0.0   # the canvas's scale, as before
    try:
        for name in ("151.jpg", "152.jpg", "153.jpg"):
            gray = cv2.imread(str(ISBI_FIX / "images" / name), cv2.IMREAD_GRAYSCALE)
            big, off = _pad(gray, 0.12)
            base, wide = _reading(det, gray), _reading(det, big)
            assert base.frame.zoom == wide.frame.zoom == 1.0
            moves[False].append(np.linalg.norm(wide.result.xy - off - base.result.xy, axis=1))
    finally:
        det.local.head = head
    own, canvas = (np.concatenate(moves[k]) for k in (True, False))
    assert np.median(own) < np.median(canvas)


def test_training_cuts_patches_at_the_head_size_it_writes_into_the_file(fixture_samples):
    """``train-local`` takes the training images' median head size; each training image is zoomed to it as the
    Detector zooms, and the exported file says it (a run before it, head size 0, keeps the canvas's scale)."""
    from convert.local_stage import local_meta
    from sdk.local_stage import HEAD_KEY
    from sdk.schemas import ISBI19
    from train.config import LocalConfig
    from train.local_stage import load_fine, training_head_size

    samples = fixture_samples[:4]
    head = training_head_size(samples, 128)
    sizes = [head_size(s.points) * letterbox_geometry(cv2.imread(str(s.image), 0).shape, (128, 128)).scale_x
             for s in samples]
    assert head == pytest.approx(np.median(sizes))
    cfg = LocalConfig(input_size=128, patch=32, widths=(8, 16, 24, 32), head_size=head)
    for s, f, plain in zip(samples, load_fine(samples, cfg), load_fine(samples, LocalConfig(input_size=128))):
        lb = letterbox_geometry(cv2.imread(str(s.image), 0).shape, (128, 128))
        z = head_zoom(head, s.points, lb)
        assert f.fine.sx == pytest.approx(plain.fine.sx * z, rel=0.01)
        assert head_size(f.points) / f.fine.sx == pytest.approx(head_size(s.points), rel=0.005)   # sx ~ sy
    ck = {"config": cfg.to_dict(), "epoch": 1, "history": []}
    assert local_meta(ck, ISBI19.to_dict()).extra[HEAD_KEY] == head
    ck["config"]["head_size"] = 0.0
    assert HEAD_KEY not in local_meta(ck, ISBI19.to_dict()).extra


def test_a_rulers_points_are_not_the_heads_size():
    """A schema with ruler points (ceph31): where the machine's ruler lies says nothing of the head's size."""
    from sdk.local_stage import anatomy
    from sdk.schemas import get_schema

    sch = get_schema("ceph31")
    keep = anatomy(sch)
    assert len(keep) == sch.k - 2 and not {sch.names[i] for i in keep} & set(sch.ruler[:2])
    rng = np.random.default_rng(5)
    xy = rng.uniform(400, 1400, size=(sch.k, 2))
    moved = xy.copy()
    moved[[sch.names.index(n) for n in sch.ruler[:2]]] += 600          # the ruler elsewhere
    assert head_size(moved[keep]) == head_size(xy[keep]) and head_size(moved) != head_size(xy)
    from sdk.schemas import ISBI19
    assert len(anatomy(ISBI19)) == 19


def test_the_tilt_benchmarks_grown_canvas_is_the_turned_copys_without_the_turn():
    from benchmarks.tilt import grown
    from sdk.compare import turned

    gray = np.random.default_rng(6).integers(0, 255, size=(240, 190), dtype=np.uint8)
    for deg in (-10.0, 5.0):
        copy, m = grown(gray, deg)
        assert copy.shape[0] == turned(gray, deg)[0].shape[0]                    # the turned copy's height
        assert copy.shape[1] / copy.shape[0] == pytest.approx(190 / 240, abs=0.01)   # the image's aspect
        x0, y0 = int(m[0, 2]), int(m[1, 2])
        assert np.allclose(m[:, :2], np.eye(2)) and np.array_equal(copy[y0:y0 + 240, x0:x0 + 190], gray)
        assert copy.sum() == gray.astype(np.int64).sum()                           # the rest is black


@pytest.mark.parametrize("bad", [-3.0, "large", float("nan")])
def test_a_local_stage_file_with_a_bad_head_size_is_refused_by_name(tmp_path, bad):
    import shutil

    from convert.model_card import update_meta
    from sdk import ModelError
    from sdk.detector import DEFAULT_MODEL, MODELS_DIR
    from sdk.local_stage import LocalStage, local_stage_path

    path = tmp_path / "x.local.onnx"
    shutil.copyfile(local_stage_path(MODELS_DIR / DEFAULT_MODEL), path)
    update_meta(path, extra={"head_size": bad})
    with pytest.raises(ModelError, match=r"x\.local\.onnx.*extra\.head_size must be a size >= 0"):
        LocalStage(path, "onnxruntime")
    update_meta(path, extra={"head_size": 60.0})
    assert LocalStage(path, "onnxruntime").head == pytest.approx(60.0)
