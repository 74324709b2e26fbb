"""What a process holds (issue 51): models are set up on first use, a folder run's concurrent set-up is the only
one compiled, OpenVINO compiles static-batch IR copies from their paths (no model read into memory when the cache
has them), onnxruntime's metadata is kept beside its optimised graph, and a repair's few patches run in the local
stage's one compiled shape. The figures themselves: ``python -m benchmarks.memory`` (docs/RESULTS.md)."""
import numpy as np
import pytest
from conftest import ISBI_FIX

from sdk import Detector

IMGS = sorted((ISBI_FIX / "images").glob("*.jpg"))


def test_openvino_keeps_ir_copies_and_reads_no_model_when_they_are_there(tmp_path, monkeypatch):
    pytest.importorskip("openvino")
    monkeypatch.setenv("CEPHALO_CACHE", str(tmp_path))
    first = Detector(backend="openvino")
    a = first(IMGS[0])
    ir = list((tmp_path / "openvino" / "ir").glob("*/b1/model.xml"))
    assert ir and (ir[0].parents[1] / "meta.json").is_file()
    again = Detector(backend="openvino")
    assert again._backend._source is None and not again._backend._static      # nothing read, nothing compiled
    assert np.array_equal(again(IMGS[0]).xy, a.xy) and again._backend._source is None
    monkeypatch.setenv("CEPHALO_CACHE", "")                                    # no cache: from the file itself
    assert np.array_equal(Detector(backend="openvino")(IMGS[0]).xy, a.xy)


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
def test_a_folder_run_sets_up_only_its_concurrent_models(tmp_path, monkeypatch, backend):
    pytest.importorskip(backend)
    monkeypatch.setenv("CEPHALO_CACHE", str(tmp_path))
    Detector(backend=backend)(IMGS[0])                       # the caches exist, as after any first run
    det = Detector(backend=backend)
    got = list(det.stream(IMGS[:4], workers=2))
    assert all(not isinstance(r, Exception) for r in got)
    held = (lambda b: bool(b._static)) if backend == "openvino" else (lambda b: b._session_made is not None)
    assert not held(det._backend) and not held(det.local._backend)           # the single call's: never needed
    twin = det._twins[2]
    assert held(twin._backend) and held(twin.local._backend)
    assert np.array_equal(got[0].xy, det(IMGS[0]).xy)


def test_a_repairs_few_patches_run_in_the_local_stages_one_shape():
    pytest.importorskip("openvino")
    det = Detector(backend="openvino")
    det(IMGS[0])
    local = det.local
    k = local.meta.schema.k
    x = np.random.default_rng(0).random((k, local.meta.channels, local.params.size, local.params.size), np.float32)
    full = local.run_network(x)
    few = local.run_network(x[:3])
    assert few.shape == (3,) + full.shape[1:] and np.allclose(few, full[:3], atol=1e-5)
    assert set(local._backend._static) == {k}
