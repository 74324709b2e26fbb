
import numpy as np
import onnx
import pytest
from conftest import ISBI_FIX

from convert.check import ParityError, parity, require_fp32
from convert.pipeline import convert
from sdk import Detector
from sdk.errors import ModelError
from sdk.metadata import META_KEY, ModelMeta
from train.checkpoint import load_checkpoint
from train.trainer import model_from_checkpoint


def test_onnx_has_contract(tiny_onnx):
    m = onnx.load(str(tiny_onnx["onnx"]))
    onnx.checker.check_model(m)
    assert m.opset_import[0].version >= 17
    props = {p.key: p.value for p in m.metadata_props}
    meta = ModelMeta.from_json(props[META_KEY], "t")
    assert meta.schema.k == 19 and meta.input_hw == (128, 128) and meta.heatmap_stride == 4
    assert meta.extra["precision"] == "fp32" and "validation" in meta.accuracy
    inp, out = m.graph.input[0], m.graph.output[0]
    assert (inp.name, out.name) == ("image", "heatmaps")
    assert inp.type.tensor_type.shape.dim[0].dim_param  # dynamic batch


def test_fp32_parity_reported(tiny_onnx):
    rep = tiny_onnx["report"]["files"]
    for key in ("onnx", "openvino"):
        p = rep[key]["parity"]
        assert p["max_heatmap_diff"] <= 1e-4 and p["max_point_diff_px"] <= 0.01


def test_metadata_round_trips_to_openvino(tiny_onnx):
    a, b = Detector(tiny_onnx["onnx"], backend="onnxruntime"), Detector(tiny_onnx["openvino"], backend="openvino")
    assert a.meta == b.meta


def test_int8_both_runtimes(tmp_path, tiny_run):
    rep = convert(tiny_run[0] / "last.pt", tmp_path, int8=True, int8_onnx=True, ort_qdq=True, calib_data=ISBI_FIX,
                  calib_split=None, calib_count=4, check_images=2, int8_tol_input_px=1e9, progress=False)
    files = rep["files"]
    assert files["int8"]["size_mb"] < 0.5 * files["onnx"]["size_mb"]
    for key, backend in (("int8", "openvino"), ("int8_onnx", "openvino"), ("int8_onnx", "onnxruntime"),
                         ("ort_qdq", "onnxruntime")):
        det = Detector(files[key]["path"], backend=backend)
        assert det.meta.extra["precision"] == "int8"
        res = det(ISBI_FIX / "images" / "151.jpg")
        assert res.xy.shape == (19, 2) and np.isfinite(res.xy).all()
    # An INT8 model really runs int8 kernels: its graph holds quantize/dequantize pairs.
    ops = {n.op_type for n in onnx.load(files["ort_qdq"]["path"]).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops


def test_failing_check_fails_and_removes_file(tmp_path, tiny_run):
    with pytest.raises(ParityError, match="INT8 points move"):
        convert(tiny_run[0] / "last.pt", tmp_path, ort_qdq=True, calib_data=ISBI_FIX, calib_split=None,
                calib_count=2, check_images=2, int8_tol_input_px=0.0, progress=False)
    assert not (tmp_path / "model_int8_ort.onnx").exists()


def test_require_fp32_catches_a_different_model(tmp_path, tiny_run, tiny_onnx):
    ck = load_checkpoint(tiny_run[0] / "last.pt")
    model = model_from_checkpoint(ck)
    for p in model.parameters():
        p.data.mul_(1.01)
    meta = Detector(tiny_onnx["onnx"]).meta
    with pytest.raises(ParityError):
        require_fp32(parity(model, tiny_onnx["onnx"], [ISBI_FIX / "images" / "001.jpg"], meta))


def test_bad_checkpoints_refused_and_nothing_written(tmp_path, tiny_run):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    out = tmp_path / "out"
    with pytest.raises(ModelError):
        convert(bad, out, do_check=False, progress=False)
    assert not out.exists() or not any(out.iterdir())
    with pytest.raises(ValueError, match="calibration"):
        convert(tiny_run[0] / "last.pt", out, int8=True, progress=False)


def test_model_card_lists_both_precisions_per_landmark():
    from dataclasses import replace

    from convert.model_card import render
    from sdk import Detector

    meta = Detector().meta
    meta = replace(meta, extra={k: v for k, v in meta.extra.items() if k != "fine_tuned_from"})  # from scratch
    names = meta.schema.names

    def acc(off):
        per = {n: {"mre_mm": 1.0 + off + i / 100, "sdr": {"2mm": 80.0}} for i, n in enumerate(names)}
        m = {"mre_mm": 1.5 + off, "sd_mm": 1.0, "mre_input_px": 2.4, "sdr": {"2mm": 70.0, "2.5mm": 80.0,
                                                                            "3mm": 85.0, "4mm": 90.0},
             "per_landmark": per}
        return {"test1": {"mean": m, "senior": m}, "test2": {"mean": m, "senior": m}}

    card = render(meta, "x.onnx", 29.35, {"FP32": acc(0.0), "INT8": acc(0.5)}, "notes here")
    assert "29.4 MiB (30.8 MB)" in card or "29.3 MiB (30.8 MB)" in card
    assert "| Test1 MRE mm FP32 | Test1 MRE mm INT8 |" in card
    row = next(l for l in card.splitlines() if l.startswith(f"| {names[1]} |"))
    assert row.split(" | ")[1:3] == ["1.01", "1.51"]
    assert card.rstrip().endswith("notes here")
    assert "epochs of fine-tuning" not in card
    ft = replace(meta, extra={**meta.extra, "epochs_trained": 16, "fine_tuned_from": "initialised from a.pt (epoch 9)"})
    card = render(ft, "x.onnx", 29.35, {"INT8": acc(0.5)})
    assert "16 epochs of fine-tuning, initialised from a.pt (epoch 9)." in card
