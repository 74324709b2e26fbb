"""Behaviour pinned by value where a plausible bug would otherwise pass: concurrent calls (barrier-started, both
stages, both runtimes), DICOM spacing through the Detector with both tags present, the INT8 check at its default
tolerance, the trainer's own checkpoint write interrupted, and the CSV's mm columns."""
import csv
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from conftest import ISBI_FIX, dicom_bytes

from sdk import Detector

IMGS = sorted((ISBI_FIX / "images").glob("*.jpg"))


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_many_threads_at_once_give_the_single_call_points(tiny_onnx, tiny_local, backend):
    """Eight threads released together by a barrier, each reading every image in its own order through both
    stages: every result equals the one-at-a-time result (no shared buffer, request or session state leaks)."""
    det = Detector(tiny_onnx["onnx"], backend=backend, threads=1, local_stage=tiny_local["int8"])
    assert det.local is not None
    ref = {p: det(p).xy for p in IMGS}
    n = 8
    start = threading.Barrier(n)

    def work(i):
        start.wait()
        order = IMGS[i % len(IMGS):] + IMGS[:i % len(IMGS)]
        return [(p, det(p).xy) for p in order * 2]

    with ThreadPoolExecutor(n) as pool:
        results = list(pool.map(work, range(n)))
    for res in results:
        for p, xy in res:
            assert np.array_equal(xy, ref[p]), p
    # the folder path: worker threads on the concurrent set-up give the same points, in order
    streamed = list(det.stream(IMGS, workers=3, ahead=5))
    assert [r.source for r in streamed] == [str(p) for p in IMGS]
    for p, r in zip(IMGS, streamed):
        assert np.array_equal(r.xy, ref[p]), p          # bit for bit: thread splits do not change the sums


def test_dicom_spacing_through_the_detector_prefers_the_imager_tag(tiny_onnx, tmp_path):
    """Both tags present and different: the Detector's mm use ImagerPixelSpacing (the detector plane, what a
    cephalostat's ruler-free calibration gives), not PixelSpacing."""
    from sdk.image_io import load_image

    px = load_image(IMGS[0]).gray.astype(np.uint16) * 16
    (tmp_path / "c.dcm").write_bytes(dicom_bytes(px, ImagerPixelSpacing=[0.4, 0.4], PixelSpacing=[0.3, 0.3]))
    det = Detector(tiny_onnx["onnx"], backend="onnxruntime")
    res = det(tmp_path / "c.dcm")
    assert res.spacing == pytest.approx(0.4) and res.spacing_source == "dicom"
    assert np.allclose(res.mm(), res.xy * 0.4)
    assert det(tmp_path / "c.dcm", spacing=0.1).spacing == pytest.approx(0.1)      # the caller's value wins


def test_int8_check_default_tolerance_refuses_a_model_past_it():
    import inspect

    from convert.check import Parity, ParityError, require_int8
    from convert.pipeline import INT8_MEAN_TOL_INPUT_PX, convert

    # the default is what convert() uses, and it is tight: half a model-input pixel at most on average
    assert inspect.signature(convert).parameters["int8_tol_input_px"].default == INT8_MEAN_TOL_INPUT_PX
    assert 0 < INT8_MEAN_TOL_INPUT_PX <= 0.5

    def parity(mean_shift):
        return Parity("m_int8.onnx", "onnxruntime", 0.01, 2.0, 1.0, 4 * mean_shift, mean_shift)

    require_int8(parity(0.9 * INT8_MEAN_TOL_INPUT_PX), INT8_MEAN_TOL_INPUT_PX)
    with pytest.raises(ParityError, match="m_int8.onnx.*INT8 points move"):
        require_int8(parity(1.1 * INT8_MEAN_TOL_INPUT_PX), INT8_MEAN_TOL_INPUT_PX)


def test_trainer_checkpoint_write_interrupted_keeps_the_last_good_one(tmp_path, fixture_samples, monkeypatch):
    """A failure half-way through the Trainer's own write of last.pt (disk full, a kill) leaves the previous
    last.pt whole and loadable, and no partial file under its name."""
    import torch
    from conftest import tiny_config

    from train.checkpoint import load_checkpoint
    from train.trainer import Trainer

    cfg = tiny_config(epochs=2, val_count=0, max_steps_per_epoch=1)
    tr = Trainer(cfg, fixture_samples[:4], [], tmp_path / "run", cache_dir=tmp_path / "cache")
    tr.fit(progress=False, stop_after=1)
    good = load_checkpoint(tmp_path / "run" / "last.pt")
    assert good["epoch"] == 1

    real_save = torch.save

    def half_then_fail(obj, f, *a, **kw):
        real_save({"partial": True}, f)          # some bytes reach the temporary file, then the write dies
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", half_then_fail)
    with pytest.raises(OSError, match="No space"):
        tr.fit(progress=False, stop_after=1)
    monkeypatch.setattr(torch, "save", real_save)
    again = load_checkpoint(tmp_path / "run" / "last.pt")
    assert again["epoch"] == 1 and not [f for f in (tmp_path / "run").iterdir() if f.suffix == ".tmp"]


def test_csv_mm_columns_are_pixels_times_spacing_per_axis(tiny_onnx, tmp_path):
    from cephalo.run import write_csv

    det = Detector(tiny_onnx["onnx"], backend="onnxruntime")
    res = det(IMGS[0], spacing=0.25)
    write_csv(res, tmp_path / "a.csv")
    rows = list(csv.DictReader(open(tmp_path / "a.csv", encoding="utf-8")))
    assert len(rows) == 19
    for i, r in enumerate(rows):
        assert float(r["x"]) == pytest.approx(res.xy[i, 0], abs=1e-3)
        assert float(r["x_mm"]) == pytest.approx(res.xy[i, 0] * 0.25, abs=2e-3)
        assert float(r["y_mm"]) == pytest.approx(res.xy[i, 1] * 0.25, abs=2e-3)


def test_onnxruntime_optimised_graph_cache_gives_the_same_points(tmp_path, monkeypatch):
    """The optimised graph kept between processes ($CEPHALO_CACHE/onnxruntime) loads with the metadata and gives
    the points of a fresh optimisation, bit for bit; a damaged cache file is rebuilt, not trusted."""
    monkeypatch.setenv("CEPHALO_CACHE", str(tmp_path / "cache"))
    first = Detector(backend="onnxruntime", threads=2)
    files = sorted((tmp_path / "cache" / "onnxruntime").glob("*.onnx"))
    assert len(files) == 2                                    # the first stage and the local stage
    again = Detector(backend="onnxruntime", threads=2)        # from the cache
    assert again.meta == first.meta and again.local.calibration is not None
    for p in IMGS[:2]:
        assert np.array_equal(again(p).xy, first(p).xy)
    for f in files:
        f.write_bytes(b"not a model")
    rebuilt = Detector(backend="onnxruntime", threads=2)
    assert np.array_equal(rebuilt(IMGS[0]).xy, first(IMGS[0]).xy)
    assert all(f.stat().st_size > 1000 for f in files)       # written again
    monkeypatch.setenv("CEPHALO_CACHE", "")                   # caching off: nothing written, same points
    assert np.array_equal(Detector(backend="onnxruntime", threads=2)(IMGS[0]).xy, first(IMGS[0]).xy)
