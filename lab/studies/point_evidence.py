"""Per-point evidence of the bundled pair, cached for flag studies: the validation carve x the cross-site variants
(what the calibration may be fitted on) or a test pool (Test1/Test2 as is + the first 25 of each under each
variant, as ``benchmarks.cross_site`` scores them; for reporting only).

    python -m lab.studies.point_evidence val OUT.npz
    python -m lab.studies.point_evidence test OUT.npz

Saves, per point: xy (Detector output, image pixels), gt (mean labels, same pixels), mm_per_px, first-stage score,
local peak, shift, shape_z, landmark, variant, image key.
"""
import sys
from itertools import chain
from pathlib import Path

import numpy as np

from sdk import Detector
from sdk.schemas import ISBI19
from train.data.variants import CROSS_SITE, variant_readings
from train.datasets import load_folder, load_train_val

DATA = Path("../shared/data/isbi2015")


def main(pool: str, out: Path) -> None:
    det = Detector(backend="onnxruntime", threads=2)
    det.local.calibration = None             # features of the uncalibrated reading
    if pool == "val":
        _, val = load_train_val(DATA, ISBI19, "auto", ["train"], ("senior", "junior"), 30, 0)
        readings = variant_readings(val, CROSS_SITE)
    else:
        splits = [load_folder(DATA, ISBI19, split=[sp], annotators=("senior", "junior")) for sp in ("test1", "test2")]
        readings = chain.from_iterable(chain(variant_readings(ss[:25], CROSS_SITE), variant_readings(ss[25:], ["as is"]))
                                       for ss in splits)
    rec = {k: [] for k in ("xy", "gt", "mm", "score", "peak", "shift", "shape_z", "landmark", "variant", "key",
                           "hw")}
    for n, (s, v, img, gt, keep, mm) in enumerate(readings):
        res, ev = det.evidence(img)
        k = int(keep.sum())
        rec["xy"].append(res.xy[keep]); rec["gt"].append(gt[keep])
        rec["mm"].append(np.full(k, mm)); rec["score"].append(res.scores[keep])
        rec["peak"].append(ev.local_peak[keep]); rec["shift"].append(ev.shift[keep])
        rec["shape_z"].append(ev.shape_z[keep]); rec["landmark"].append(np.arange(ISBI19.k)[keep])
        rec["variant"].append(np.array([v] * k)); rec["key"].append(np.array([f"{s.id}|{v}"] * k))
        rec["hw"].append(np.tile(img.shape[:2], (k, 1)))
        if n % 50 == 0:
            print(n, flush=True)
    np.savez_compressed(out, **{k: np.concatenate(v) for k, v in rec.items()})
    print("saved", out)


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
