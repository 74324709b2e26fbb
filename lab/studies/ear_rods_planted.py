"""The ear rods without a site profile, on another clinic's kind of rod planted in ISBI Test images: one bright
ring with a dot (``benchmarks.site_adapt.dot_rod_site``: outer radius 4.6-5.1 mm, rim 0.8 mm, its top from 2 mm
behind to 8 mm in front of and from 5 mm above to 10 mm below the anatomical porion).

    python -m lab.studies.ear_rods_planted --data ../shared/data/isbi2015 [--out lab/results/ear_rods]

Reports how often ``ear_rods`` is found and how far its machine porion lies from the planted ring's top.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main():
    from benchmarks.site_adapt import dot_rod_site
    from sdk import Detector
    from sdk.image_io import load_image
    from sdk.schemas import ISBI19
    from train.datasets import load_folder

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data/isbi2015"))
    ap.add_argument("--out", type=Path, default=Path("lab/results/ear_rods"))
    a = ap.parse_args()
    det = Detector(backend="onnxruntime")
    k = list(ISBI19.names).index("porion")
    report = {}
    for split in ("test1", "test2"):
        samples = load_folder(a.data, ISBI19, split=[split], annotators=("senior", "junior"))
        truth = np.stack([s.points for s in samples])
        mm = np.array([s.spacing for s in samples])
        grays, planted = dot_rod_site([(load_image(s.image).gray, 1) for s in samples], truth, ISBI19.names, mm)
        errs = []
        for (g, _), top, m in zip(grays, planted[:, k], mm):
            rods = det(g).ear_rods
            errs.append(np.nan if rods is None else float(np.linalg.norm(rods.machine_porion - top)) * m)
        e = np.array(errs)
        f = np.isfinite(e)
        report[split] = {"images": len(e), "found": int(f.sum()), "found_share": round(float(f.mean()), 4),
                         "mean_mm": round(float(e[f].mean()), 3), "median_mm": round(float(np.median(e[f])), 3),
                         "within_1mm": round(float((e[f] <= 1).mean()), 4), "beyond_3mm": int((e[f] > 3).sum())}
        print(split, report[split])
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "ear_rods_planted.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
