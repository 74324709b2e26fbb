"""Conversion: checkpoint -> ONNX with metadata -> OpenVINO IR -> INT8, with parity and accuracy checks."""
