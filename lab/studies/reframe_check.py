"""How many points a before-and-after reading puts beyond reading error when an image is compared with a re-framed
copy of itself (issue 50): the check of ``tests/test_compare.py`` over the 30 validation images, not one.

    python -m lab.studies.reframe_check --data ../shared/data/isbi2015 [--model FIRST.onnx] [--local LOCAL.onnx]
        [--head]

Each validation image against the test's three re-framed copies (turned +10 deg, shifted and cropped; -10 deg
likewise; 6 deg, mirrored), read by the Detector (onnxruntime; the bundled first stage or ``--model``) with the
bundled local stage or ``--local``,
compared by :func:`sdk.compare.compare`: overall displacements and angle changes beyond reading error, copies with
any, and which landmarks. ``--head``: the local stage read at the head's scale, given its training images' head
size when its file has none. A local stage without a calibration has no reliabilities, so its reading errors
differ: compare like with like.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2

FRAMES = ((10.0, (48, -32), (40, 0, 0, 56), False), (-10.0, (-24, 40), (0, 48, 32, 0), False),
          (6.0, (30, 20), (0, 0, 60, 0), True))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data/isbi2015"))
    ap.add_argument("--model", default=None, help="A first-stage file (default: the bundled one).")
    ap.add_argument("--local", default=None, help="A local-stage file (default: the bundled one).")
    ap.add_argument("--head", action="store_true", help="Read at the head's scale.")
    a = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
    from test_compare import _reframed

    from sdk import Detector
    from sdk.compare import compare
    from sdk.schemas import ISBI19
    from train.config import TrainConfig
    from train.datasets import load_train_val
    from train.local_stage import training_head_size

    cfg = TrainConfig()
    train, val = load_train_val(a.data, ISBI19, "auto", ["train"], ("senior", "junior"), cfg.val_count, cfg.seed)
    det = Detector(a.model, backend="onnxruntime", local_stage=a.local or True)
    if a.head and not det.local.head:
        det.local.head = training_head_size(train, int(det.meta.input_hw[0]))
    elif not a.head:
        det.local.head = 0.0
    beyond, angles, points, copies, who = 0, 0, 0, 0, {}
    for s in val:
        gray = cv2.imread(str(s.image), cv2.IMREAD_GRAYSCALE)
        before = det(gray, 0.1)
        for deg, shift, crop, mirror in FRAMES:
            copy, _ = _reframed(gray, deg, shift, crop, mirror)
            out = compare(before, det(copy, 0.1), gray, copy, ("before", "re-framed"))
            rows = out["displacements"]["overall"]
            bad = [r["name"] for r in rows if not r["within_reading_error"]]
            bad_angles = [k for k, c in out["changes"].items() if c["unit"] == "deg" and not c["within_reading_error"]]
            beyond, angles, points = beyond + len(bad), angles + len(bad_angles), points + len(rows)
            copies += bool(bad or bad_angles)
            for name in bad + bad_angles:
                who[name] = who.get(name, 0) + 1
    report = {"model": str(det.model_path), "local_stage": str(det.local.path), "head_size": det.local.head, "copies": len(val) * len(FRAMES),
              "copies_with_any": copies, "displacements": points, "displacements_beyond": beyond,
              "angle_changes_beyond": angles, "which": dict(sorted(who.items(), key=lambda t: -t[1]))}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
