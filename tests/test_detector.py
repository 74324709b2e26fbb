import json
import subprocess
import sys
import threading
from dataclasses import replace

import numpy as np
import onnx
import pytest
from conftest import ISBI_FIX

from sdk import Detector, Landmarks
from sdk.errors import BackendError, CephaloError, ImageError, ModelError

IMGS = sorted((ISBI_FIX / "images").glob("*.jpg"))


def test_sdk_import_is_torch_free():
    code = ("import sys, sdk; from sdk import Detector; "
            "print(','.join(m for m in ('torch','timm','nncf') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_result_api(tiny_onnx):
    det = Detector(tiny_onnx["onnx"], backend="onnxruntime", threads=1)
    res = det(IMGS[0], spacing=0.4)
    assert isinstance(res, Landmarks) and res.xy.shape == (19, 2) and res.scores.shape == (19,)
    assert res.names[0] == "sella" and res.image_size == (600, 484) and res.spacing_source == "caller"
    assert np.allclose(res.mm(), res.xy * 0.4) and np.allclose(res["sella"], res.xy[0])
    d = json.loads(res.to_json())
    assert len(d["landmarks"]) == 19 and "x_mm" in d["landmarks"][0]
    # the tiny model is barely trained: its reading is doubtful, flagged, and has no measurements
    assert res.confidence < 0.6 and d["status"] == "flagged" and "low_confidence" in d["flags"]
    assert d["measurements"] == {} and "SNA" in replace(res, flags=()).to_dict()["measurements"]
    assert det.info["threads"] == 1 and det.info["backend"] == "onnxruntime" and det.info["schema"] == "isbi19"
    with pytest.raises(CephaloError, match="no pixel spacing"):
        det(IMGS[0]).mm()


def test_inputs_agree_path_bytes_array(tiny_onnx):
    import cv2

    det = Detector(tiny_onnx["onnx"], backend="onnxruntime", fast_decode=False)   # a file = its pixels
    a = det(IMGS[1]).xy
    b = det(IMGS[1].read_bytes()).xy
    c = det(cv2.imread(str(IMGS[1]))).xy  # BGR 3-channel
    assert np.allclose(a, b) and np.abs(a - c).max() < 0.5
    fast = Detector(tiny_onnx["onnx"], backend="onnxruntime")       # the default: a reduced decode of the JPEG
    assert fast.preprocess(IMGS[1])[2].reduction > 1
    assert np.allclose(fast(IMGS[1]).xy, fast(IMGS[1].read_bytes()).xy)


def test_backend_parity(tiny_onnx):
    a = Detector(tiny_onnx["onnx"], backend="onnxruntime")
    b = Detector(tiny_onnx["onnx"], backend="openvino")
    c = Detector(tiny_onnx["openvino"])
    assert c.info["backend"] == "openvino"
    for p in IMGS[:4]:
        ra = a(p).xy
        assert np.abs(ra - b(p).xy).max() < 0.05 and np.abs(ra - c(p).xy).max() < 0.05


def test_batch_equals_single(tiny_onnx):
    det = Detector(tiny_onnx["onnx"], backend="onnxruntime")
    batch = det.batch(IMGS[:5], batch_size=2)
    for p, r in zip(IMGS[:5], batch):
        assert np.abs(det(p).xy - r.xy).max() < 1e-3


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_thread_safety(tiny_onnx, backend):
    det = Detector(tiny_onnx["onnx"], backend=backend, threads=1)
    ref = {p: det(p).xy for p in IMGS}
    errors, results = [], []

    def work(paths):
        try:
            for p in paths:
                results.append((p, det(p).xy))
        except Exception as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(IMGS[i % 2::2] * 2,)) for i in range(4)]
    [t.start() for t in threads]
    [t.join(60) for t in threads]
    assert not errors and len(results) == 4 * (len(IMGS) // 2) * 2
    assert all(np.array_equal(ref[p], xy) for p, xy in results)


def test_model_without_metadata_refused(tmp_path, tiny_onnx):
    m = onnx.load(str(tiny_onnx["onnx"]))
    del m.metadata_props[:]
    p = tmp_path / "plain.onnx"
    onnx.save(m, str(p))
    for backend in ("onnxruntime", "openvino"):
        with pytest.raises(ModelError, match="no 'cephalo' metadata"):
            Detector(p, backend=backend)


def test_bad_model_files(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        Detector(tmp_path / "none.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ModelError, match="cannot load"):
        Detector(junk, backend="onnxruntime")
    with pytest.raises(BackendError, match="not one of"):
        Detector(junk, backend="tensorflow")
    with pytest.raises(BackendError, match="threads"):
        Detector(junk, threads=0)


def test_bad_images_raise_sdk_errors(tiny_onnx, tmp_path):
    det = Detector(tiny_onnx["onnx"], backend="onnxruntime")
    (tmp_path / "e.png").write_bytes(b"")
    for bad in (tmp_path / "missing.jpg", tmp_path / "e.png", b"\x89PNG broken", np.zeros((5, 5), np.uint8),
                np.zeros((100, 100), np.float64)):
        with pytest.raises(ImageError):
            det(bad)
    with pytest.raises(CephaloError, match="spacing"):
        det(IMGS[0], spacing=-1.0)


def test_ruler_spacing(tmp_path):
    """A ceph31-style schema derives mm from its two ruler points."""
    from sdk.decode import gaussian_heatmaps, input_to_heatmap
    from sdk.detector import Detector as D
    from sdk.image_io import LoadedImage
    from sdk.metadata import ModelMeta
    from sdk.preprocess import letterbox_geometry
    from sdk.schemas import CEPH31

    det = D.__new__(D)
    det.meta = ModelMeta(CEPH31, 128, 128, 1, 0.5, 0.25, 0, 4, 1.5)
    det.model_path = "synthetic"
    lb = letterbox_geometry((512, 512), (128, 128))
    pts = np.full((31, 2), 200.0)
    pts[29], pts[30] = (100.0, 400.0), (100.0, 300.0)  # P1-P2 100 px apart = 10 mm
    hm = gaussian_heatmaps(input_to_heatmap(lb.to_input(pts), 4), (32, 32), 1.5)
    res = det.postprocess(hm, lb, LoadedImage(np.zeros((512, 512), np.uint8)), None)
    assert res.spacing_source == "ruler" and res.spacing == pytest.approx(0.1, rel=0.01)


def test_openvino_keeps_compiled_models_between_processes(tiny_onnx, tmp_path, monkeypatch):
    """The compiled model is cached under $CEPHALO_CACHE/openvino (cold start ~3.8 -> ~1.1 s for the bundled
    model); a cached compile gives the same points; an empty CEPHALO_CACHE turns the cache off."""
    monkeypatch.setenv("CEPHALO_CACHE", str(tmp_path))
    first = Detector(tiny_onnx["onnx"], backend="openvino", threads=1)(IMGS[0]).xy
    blobs = list((tmp_path / "openvino").glob("*.blob"))
    assert blobs
    again = Detector(tiny_onnx["onnx"], backend="openvino", threads=1)(IMGS[0]).xy
    assert np.array_equal(first, again)
    monkeypatch.setenv("CEPHALO_CACHE", "")
    from sdk.backends import compiled_model_cache

    assert compiled_model_cache() is None


def test_the_openvino_cache_keeps_only_the_newest_blobs(tiny_onnx, tmp_path, monkeypatch):
    """OpenVINO never deletes a compiled blob: a new compile prunes all but the newest OV_KEEP (old models' and
    set-ups' blobs would otherwise pile up, ~30 MB each for the bundled model)."""
    import os

    from sdk.backends import OV_KEEP

    monkeypatch.setenv("CEPHALO_CACHE", str(tmp_path))
    cache = tmp_path / "openvino"
    cache.mkdir()
    for i in range(OV_KEEP + 5):          # an old model's blobs, older first
        f = cache / f"old{i:02d}.blob"
        f.write_bytes(b"x")
        os.utime(f, (1e9 + i, 1e9 + i))
    det = Detector(tiny_onnx["onnx"], backend="openvino", threads=1)
    first = det(IMGS[0])                  # compiled on first use
    left = sorted(f.name for f in cache.glob("*.blob"))
    assert len(left) == OV_KEEP and "old00.blob" not in left and f"old{OV_KEEP + 4:02d}.blob" in left
    assert sum(not n.startswith("old") for n in left) >= 1          # this compile's own blob stays
    assert np.array_equal(first.xy, Detector(tiny_onnx["onnx"], backend="openvino", threads=1)(IMGS[0]).xy)
