"""Probe (issue 17: "when the spacing is known, use it if it helps, e.g. bring the image to the training scale
first, and measure what it buys"): with the pixel spacing known, frame each image to the training images' field in
mm (ISBI: 1935 x 2400 px at 0.1 mm = 193.5 x 240 mm) around the first reading, and read it again; against the
shipped landmark-based re-framing (sdk/framing.py), which needs no spacing. Validation carve, mean labels,
onnxruntime, both stages.

    python -m lab.studies.spacing_frame_probe OUT.json

Modes: 'no re-framing'; 'shipped' (re-framing from the landmarks' extent when the field is > 15% wider);
'spacing, always' (crop or pad to the training field in mm, centred on the first reading's training frame);
'spacing, wider only' (the same, only when the field is > 15% wider than the training field in mm).
"""
import json
import sys
from pathlib import Path

import numpy as np

from sdk import Detector
from sdk.framing import crop_or_pad, framing
from sdk.preprocess import pad_pixel
from sdk.schemas import ISBI19
from train.data.variants import variant_readings
from train.datasets import load_train_val

DATA = Path("../shared/data/isbi2015")
FIELD_MM = (240.0, 193.5)        # training images' field (h, w), mm
VARIANTS_USED = ["as is", "other machine (170x212 mm field, 0.127 mm/px)", "wider field (+20% each side, 0.15 mm/px)",
                 "crop 10% each side", "half resolution (0.2 mm/px)"]


def spacing_read(det, img, spacing, first_xy, only_wider):
    h, w = img.shape
    fh, fw = FIELD_MM[0] / spacing, FIELD_MM[1] / spacing
    if only_wider and max(h / fh, w / fw) <= 1.15:
        return None
    x0, y0, x1, y1 = framing("isbi19").frame(first_xy)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    box = (int(round(cx - fw / 2)), int(round(cy - fh / 2)), int(round(cx + fw / 2)), int(round(cy + fh / 2)))
    sub = crop_or_pad(img, box, pad_pixel(det.meta.pad_value))
    return det(sub).xy + np.array(box[:2], np.float64)


def main(out: Path) -> None:
    _, va = load_train_val(DATA, ISBI19, "auto", ["train"], ("senior", "junior"), 30, 0)
    plain = Detector(backend="onnxruntime", threads=2, reframe=False)
    shipped = Detector(backend="onnxruntime", threads=2)
    modes = ["no re-framing", "shipped", "spacing, always", "spacing, wider only"]
    err = {m: {v: [] for v in VARIANTS_USED} for m in modes}
    for s, v, img, gt, keep, sp in variant_readings(va, VARIANTS_USED):
        first = plain(img).xy
        reads = {"no re-framing": first, "shipped": shipped(img).xy,
                 "spacing, always": spacing_read(plain, img, sp, first, False)}
        wider = spacing_read(plain, img, sp, first, True)
        reads["spacing, wider only"] = first if wider is None else wider
        for m, xy in reads.items():
            err[m][v].append((np.linalg.norm(xy - gt, axis=1) * sp)[keep])
    res = {m: {v: {"mre_mm": round(float(np.concatenate(e).mean()), 4),
                   "over_10mm": int((np.concatenate(e) > 10).sum())} for v, e in per.items()} for m, per in err.items()}
    for m in modes:
        print(m, {v[:14]: r["mre_mm"] for v, r in res[m].items()})
    out.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
