"""convert.qdq_concat: the Q/DQ pair after a Concat keeps the function and lets onnxruntime fuse the next Conv."""
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from convert.qdq_concat import requantize_concats

BUNDLED_LOCAL = Path(__file__).resolve().parents[1] / "sdk" / "models" / "isbi19_default_int8.local.onnx"


def _qdq_concat_conv(scale_b: float = 0.05) -> onnx.ModelProto:
    """x -> Q/DQ (scale 0.05) and x * 2 -> Q/DQ (scale_b) -> Concat -> Conv (weights Q/DQ) -> y."""
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.3, (3, 4, 3, 3)).astype(np.float32)
    inits = [numpy_helper.from_array(np.array(0.05, np.float32), "sa"),
             numpy_helper.from_array(np.array(scale_b, np.float32), "sb"),
             numpy_helper.from_array(np.array(0, np.uint8), "z"),
             numpy_helper.from_array(np.array(2.0, np.float32), "two"),
             numpy_helper.from_array(np.round(w / 0.01).astype(np.int8), "wq"),
             numpy_helper.from_array(np.array(0.01, np.float32), "ws"),
             numpy_helper.from_array(np.array(0, np.int8), "wz")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "sa", "z"], ["xa_q"]),
             helper.make_node("DequantizeLinear", ["xa_q", "sa", "z"], ["xa"]),
             helper.make_node("Mul", ["x", "two"], ["x2"]),
             helper.make_node("QuantizeLinear", ["x2", "sb", "z"], ["xb_q"]),
             helper.make_node("DequantizeLinear", ["xb_q", "sb", "z"], ["xb"]),
             helper.make_node("Concat", ["xa", "xb"], ["cat"], axis=1, name="cat"),
             helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["w"]),
             helper.make_node("Conv", ["cat", "w"], ["y"], pads=[1, 1, 1, 1])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, {"x": x})[0]


def test_shared_grid_gets_a_pair_and_the_same_values():
    m = _qdq_concat_conv(scale_b=0.05)
    x = np.random.default_rng(1).uniform(0, 5, (1, 2, 8, 8)).astype(np.float32)
    before = _run(m, x)
    assert requantize_concats(m) == 1
    onnx.checker.check_model(m)
    conv = next(n for n in m.graph.node if n.op_type == "Conv")
    feeding = next(n for n in m.graph.node if conv.input[0] in n.output)
    assert feeding.op_type == "DequantizeLinear"
    # Same function up to the int8 convolution's own rounding (the Conv is now fused, not run on floats).
    np.testing.assert_allclose(_run(m, x), before, atol=0.05)
    assert requantize_concats(m) == 0          # nothing left to do: the Concat's output is already requantized


def test_different_grids_are_left_alone():
    m = _qdq_concat_conv(scale_b=0.08)
    assert requantize_concats(m) == 0
    assert [n.op_type for n in m.graph.node].count("QuantizeLinear") == 2


def _convs_fed_by_concat(model: onnx.ModelProto) -> int:
    made_by = {o: n.op_type for n in model.graph.node for o in n.output}
    return sum(made_by.get(n.input[0]) == "Concat" for n in model.graph.node if n.op_type == "Conv")


def test_int8_local_stage_has_no_float_conv_after_a_concat(tiny_local):
    # convert_local -> quantize_onnx_nncf requantizes: no Conv of the U-Net decoder is left in FP32 for onnxruntime.
    fp32, int8 = onnx.load(str(tiny_local["fp32"])), onnx.load(str(tiny_local["int8"]))
    assert _convs_fed_by_concat(fp32) > 0
    assert _convs_fed_by_concat(int8) == 0


@pytest.mark.skipif(not BUNDLED_LOCAL.is_file(), reason="no bundled local stage")
def test_bundled_local_stage_is_requantized():
    assert _convs_fed_by_concat(onnx.load(str(BUNDLED_LOCAL))) == 0
