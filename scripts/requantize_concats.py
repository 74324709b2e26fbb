"""Requantize the Concat outputs of a QDQ ONNX file (:func:`convert.qdq_concat.requantize_file`).

    python scripts/requantize_concats.py model_int8.onnx [out.onnx]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from convert.qdq_concat import requantize_file  # noqa: E402

if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    print(f"{requantize_file(sys.argv[1], sys.argv[2] if len(sys.argv) == 3 else None)} Concat output(s) requantized")
