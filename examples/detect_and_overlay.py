"""Detect landmarks on a cephalogram with the bundled model and save an overlay.

    python examples/detect_and_overlay.py path/to/ceph.jpg --spacing 0.1
"""
import argparse
from pathlib import Path

from sdk import Detector
from sdk.draw import save_png

ap = argparse.ArgumentParser()
ap.add_argument("image", type=Path)
ap.add_argument("--spacing", type=float, default=None, help="mm per pixel, if known")
ap.add_argument("--model", type=Path, default=None, help="model file (default: bundled)")
args = ap.parse_args()

det = Detector(args.model)                  # bundled model, OpenVINO if installed else onnxruntime
res = det(args.image, spacing=args.spacing)
for name, (x, y), s in zip(res.names, res.xy, res.scores):
    print(f"{name:<26} x={x:8.1f} y={y:8.1f}  score={s:.2f}")
for name, m in res.measurements().items():
    print(f"{name:<14} {m['value']:7.2f} {m['unit']}  (norm {m['norm_mean']} ± {m['norm_sd']})")
out = save_png(det.draw(args.image, res), args.image.with_name(args.image.stem + "_landmarks.png"))
print("overlay:", out)
