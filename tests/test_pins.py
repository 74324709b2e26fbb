"""Pins on what users rely on, where planted bugs once survived the suite (issue 36.13): the conversion's accuracy
gates, the trainer's checkpoint writes, the direction of the flags' calibration, and the service's size limits."""
import json
import threading
import time
from dataclasses import replace

import pytest
from conftest import ISBI_FIX

IMG = ISBI_FIX / "images" / "151.jpg"


def test_conversion_gates_sit_exactly_at_their_tolerances():
    from convert.check import FP32_HEATMAP_TOL, FP32_POINT_TOL_PX, Parity, ParityError, require_fp32, require_int8

    p = Parity("m.onnx", "onnxruntime", FP32_HEATMAP_TOL, FP32_POINT_TOL_PX, 0.0, 0.0, 0.4)
    require_fp32(p)                                           # at the tolerance: accepted
    for bad in (replace(p, max_heatmap_diff=FP32_HEATMAP_TOL * 1.01),
                replace(p, max_point_diff_px=FP32_POINT_TOL_PX * 1.01)):
        with pytest.raises(ParityError, match="differs from the PyTorch model"):
            require_fp32(bad)
    require_int8(p, 0.4)
    with pytest.raises(ParityError, match="INT8 points move 0.400"):
        require_int8(p, 0.399)


def test_trainer_writes_last_every_epoch_and_best_at_the_best(tiny_run):
    from train.checkpoint import load_checkpoint

    run, hist = tiny_run
    last, best = load_checkpoint(run / "last.pt"), load_checkpoint(run / "best.pt")
    vals = [(h["val_mre_mm"], h["epoch"]) for h in hist if "val_mre_mm" in h]
    assert last["epoch"] == hist[-1]["epoch"]
    assert best["epoch"] == min(vals)[1] and best["best_mre_mm"] == pytest.approx(min(vals)[0])
    assert "optimizer" in last and "optimizer" not in best          # best.pt holds the weights only
    lines = [json.loads(x) for x in (run / "history.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [h["epoch"] for h in hist]


def test_the_calibration_points_the_right_way():
    """A sharper first-stage peak and a clearer local peak raise the reliability, a point the shape doubts lowers
    it; on a good image every point is trusted, and a point moved 30 mm is not."""
    from sdk import Detector
    from sdk.quality import FEATURES

    det = Detector(backend="onnxruntime", repair=False)
    cal = det.local.calibration
    coef = dict(zip(FEATURES, cal.coef))
    assert coef["first_score"] > 0 and coef["local_peak"] > 0 and coef["shape_z"] < 0
    res, ev = det.evidence(IMG)
    assert res.status == "ok" and (res.reliability > cal.cut).all() and res.reliability.mean() > 0.8
    x, lb, loaded = det.preprocess(IMG)
    reading = det._read(det.run_network(x[None])[0], lb, loaded, None)
    moved = reading.result.xy.copy()
    moved[3] += (0.0, -30.0 / 0.4)                              # porion 30 mm up (fixtures: 0.4 mm/px)
    bad = det._assess(reading.with_result(xy=moved)).result
    assert bad.reliability[3] < cal.cut and bad.point_flags[3] and bad.status == "check"


def test_the_service_upload_limit_is_exact():
    pytest.importorskip("starlette")
    uvicorn = pytest.importorskip("uvicorn")
    httpx = pytest.importorskip("httpx")
    from cephalo.serve import Limits, create_app, free_port
    from sdk import Detector

    limit = 4096
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(create_app(Detector(backend="onnxruntime", threads=1), 1, Limits(limit, 2)),
                                        host="127.0.0.1", port=port, log_level="warning"))
    th = threading.Thread(target=srv.run, daemon=True)
    th.start()
    for _ in range(200):
        if srv.started:
            break
        time.sleep(0.1)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
            at = c.post("/v1/landmarks", content=b"x" * limit)
            over = c.post("/v1/landmarks", content=b"x" * (limit + 1))
            assert at.status_code == 415 and over.status_code == 413      # at the limit it is read, over it not

            def chunks():                                     # no Content-Length: counted as it streams
                for _ in range(limit // 1000 + 1):
                    yield b"y" * 1000
            streamed = c.post("/v1/landmarks", content=chunks())
            assert streamed.status_code == 413 and str(limit) in streamed.json()["error"]
    finally:
        srv.should_exit = True
        th.join(10)



def test_static_shapes_and_precision_option():
    """OpenVINO runs static shapes (the points those of the dynamic model, to 0.02 px); bf16 is asked for, says
    so in the record, and onnxruntime refuses it."""
    pytest.importorskip("openvino")
    import numpy as np

    import sdk.backends as backends
    from sdk import BackendError, Detector

    static = Detector(backend="openvino")
    assert not static._backend._static and not static.local._backend._static      # compiled on first use
    a = static(IMG)
    assert set(static._backend._static) == {1} and set(static.local._backend._static) == {19}
    keep, backends.MAX_STATIC_SHAPES = backends.MAX_STATIC_SHAPES, 0
    try:        # calls too, not only the set-up, with no static shape allowed: compiled shapes are made on first use
        dynamic = Detector(backend="openvino")
        b = dynamic(IMG)
    finally:
        backends.MAX_STATIC_SHAPES = keep
    assert dynamic._backend._dynamic is not None and not dynamic._backend._static
    # different kernels, rounded differently: a hundredth of a pixel (0.013 px on this image)
    assert np.abs(a.xy - b.xy).max() < 0.02 and a.to_dict()["float_precision"] == "f32"
    bf = Detector(backend="openvino", precision="bf16")
    assert bf(IMG).to_dict()["float_precision"] == "bf16" and bf.info["float_precision"] == "bf16"
    with pytest.raises(BackendError, match="needs the OpenVINO backend"):
        Detector(backend="onnxruntime", precision="bf16")
