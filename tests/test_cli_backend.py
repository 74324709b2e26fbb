"""`cephalo predict --backend auto` picks the runtime that finishes first for the number of images it was given."""
from pathlib import Path

from cephalo.run import FEW_IMAGES, pick_backend
from sdk.backends import available_backends


def test_few_images_run_on_the_quicker_starting_runtime():
    assert "onnxruntime" in available_backends()
    assert pick_backend("auto", 1) == "onnxruntime"
    assert pick_backend("auto", FEW_IMAGES - 1, Path("m.onnx")) == "onnxruntime"
    assert pick_backend("auto", FEW_IMAGES) == "auto"            # many: Detector's own choice (OpenVINO if installed)
    assert pick_backend("auto", 1, Path("m.xml")) == "auto"      # OpenVINO IR: onnxruntime cannot read it
    assert pick_backend("openvino", 1) == "openvino" and pick_backend("onnxruntime", 500) == "onnxruntime"
