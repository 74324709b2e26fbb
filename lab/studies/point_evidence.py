"""Per-point evidence of the bundled pair, cached for flag studies: the validation carve x the cross-site variants
(what the calibration may be fitted on) or a test pool (Test1/Test2 as is + the first 25 of each under each
variant, as ``benchmarks.cross_site`` scores them; for reporting only).

    python -m lab.studies.point_evidence val OUT.npz
    python -m lab.studies.point_evidence test OUT.npz

Saves, per point: xy (Detector output, image pixels), gt (mean labels, same pixels), mm_per_px, first-stage score,
local peak, shift, shape_z, landmark, variant, image key.
"""
import sys
from pathlib import Path

import numpy as np

from sdk import Detector
from sdk.image_io import load_image
from sdk.schemas import ISBI19
from train.data.variants import CROSS_SITE, VARIANTS, in_frame
from train.datasets import load_folder, load_train_val

DATA = Path("../shared/data/isbi2015")


def main(pool: str, out: Path) -> None:
    det = Detector(backend="onnxruntime", threads=2)
    det.local.calibration = None             # features of the uncalibrated reading
    if pool == "val":
        _, val = load_train_val(DATA, ISBI19, "auto", ["train"], ("senior", "junior"), 30, 0)
        jobs = [(s, v) for s in val for v in CROSS_SITE]
    else:
        jobs = []
        for split in ("test1", "test2"):
            ss = load_folder(DATA, ISBI19, split=[split], annotators=("senior", "junior"))
            jobs += [(s, "as is") for s in ss]
            jobs += [(s, v) for s in ss[:25] for v in CROSS_SITE if v != "as is"]
    rec = {k: [] for k in ("xy", "gt", "mm", "score", "peak", "shift", "shape_z", "landmark", "variant", "key",
                           "hw")}
    cache = {}
    for n, (s, v) in enumerate(jobs):
        g = cache.setdefault(s.id, load_image(s.image).gray)
        fimg, fpts, factor = VARIANTS[v]
        img = fimg(g)
        res, ev = det.evidence(img)
        gt = fpts(s.points, g.shape)
        keep = in_frame(gt, img.shape)
        k = int(keep.sum())
        rec["xy"].append(res.xy[keep]); rec["gt"].append(gt[keep])
        rec["mm"].append(np.full(k, s.spacing * factor)); rec["score"].append(res.scores[keep])
        rec["peak"].append(ev["local_peak"][keep]); rec["shift"].append(ev["shift"][keep])
        rec["shape_z"].append(ev["shape_z"][keep]); rec["landmark"].append(np.arange(ISBI19.k)[keep])
        rec["variant"].append(np.array([v] * k)); rec["key"].append(np.array([f"{s.id}|{v}"] * k))
        rec["hw"].append(np.tile(img.shape[:2], (k, 1)))
        if n % 50 == 0:
            print(n, len(jobs), flush=True)
        if len(cache) > 4:
            cache.pop(next(iter(cache)))
    np.savez_compressed(out, **{k: np.concatenate(v) for k, v in rec.items()})
    print("saved", out)


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
