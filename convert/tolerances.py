"""The conversion's parity gates, in one place (no torch: the command line shows them as its defaults)."""

FP32_HEATMAP_TOL = 1e-4        # ONNX/IR vs PyTorch, FP32: max |difference| of heatmap values
FP32_POINT_TOL_PX = 0.01       # and max point difference, original pixels
INT8_MEAN_TOL_INPUT_PX = 0.5   # mean INT8-vs-FP32 point shift allowed, model-input pixels
CALIB_COUNT = 100              # images the INT8 quantisation is calibrated on
