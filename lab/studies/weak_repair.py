"""Repair beyond the implausible: a point at an unusual position (shape distance above Z) whose local evidence is
weak (local-stage peak below P) is read again where the other points put it, and the new reading is kept only if
it is clearly better there (its peak at least R times the first and at least the repair's floor, and no less
plausible). Counts, per threshold set, the points re-read and moved, how many moves helped or hurt (by more than
1 mm), and the points > 10 mm and > 4 mm before and after.

    python -m lab.studies.weak_repair [--test]     (default: the validation carve x the cross-site variants, to
                                                    choose; --test: 25 images of each test split x the variants,
                                                    to report)
"""
import sys
from pathlib import Path

import numpy as np

from sdk import Detector
from sdk.quality import shape_model
from sdk.repair import MIN_PEAK
from sdk.schemas import ISBI19
from train.data.variants import CROSS_SITE, variant_readings
from train.datasets import load_folder, load_train_val

DATA = Path("../shared/data/isbi2015")
RULES = [(z, p, r) for z in (2.5, 3.0, 3.5) for p in (0.15, 0.25) for r in (2.0, 3.0)]


def readings(det, samples):
    """Per reading: points, labels, mm per px, shape z, local peak, and the re-read at the conditional position of
    every point (so that each rule is counted on the same re-reads)."""
    model = shape_model(ISBI19.id, ISBI19.names)
    out = []
    for _s, _v, img, gt, inside, mm in variant_readings(samples, CROSS_SITE):
        reading = det._detect(img, None)
        res, ev = reading.result, reading.evidence
        if res.view != "as given" or not res.is_cephalogram or ev.shape_z is None:
            continue
        frame = reading.frame
        to_input = float(max(frame.lb.scale_x, frame.lb.scale_y))
        new, pk = np.zeros_like(res.xy), np.zeros(len(gt))
        for k in range(len(gt)):        # each point where all the others put it, as the repair reads it
            pos, cov = model.conditional_positions(res.xy, np.array([k]))
            spread = float(np.sqrt(np.linalg.eigvalsh(cov)[0, -1])) * to_input
            p, q = det.local.locate_at(frame.gray, frame.lb, pos - frame.offset, np.array([k]), frame.reduction,
                                       prior_sd=spread)
            new[k], pk[k] = p[0] + frame.offset, q[0]
        out.append(dict(xy=res.xy, gt=gt, inside=inside, mm=mm, z=ev.shape_z, peak=ev.local_peak,
                        new=new, new_peak=pk, model=model))
    return out


def count(rows, rule):
    zmin, pmax, ratio = rule
    moved = helped = hurt = 0
    e_before, e_after = [], []
    for r in rows:
        xy = r["xy"].copy()
        cand = np.flatnonzero((r["z"] > zmin) & (r["peak"] < pmax))
        for k in cand:
            trial = xy.copy()
            trial[k] = r["new"][k]
            better = (r["new_peak"][k] >= max(MIN_PEAK, ratio * r["peak"][k])
                      and r["model"].conditional_z(trial)[k] <= r["z"][k])
            if better:
                xy[k] = r["new"][k]
        e0 = np.linalg.norm(r["xy"] - r["gt"], axis=1) * r["mm"]
        e1 = np.linalg.norm(xy - r["gt"], axis=1) * r["mm"]
        d = (e1 - e0)[r["inside"]]
        moved += int((np.abs(np.linalg.norm(xy - r["xy"], axis=1)) > 0).sum())
        helped += int((d < -1).sum())
        hurt += int((d > 1).sum())
        e_before.append(e0[r["inside"]])
        e_after.append(e1[r["inside"]])
    b, a = np.concatenate(e_before), np.concatenate(e_after)
    return (f"z > {zmin}, peak < {pmax}, x{ratio}: moved {moved}, helped {helped}, hurt {hurt}; > 10 mm "
            f"{int((b > 10).sum())} -> {int((a > 10).sum())}, > 4 mm {int((b > 4).sum())} -> {int((a > 4).sum())}, "
            f"MRE {b.mean():.4f} -> {a.mean():.4f}")


def main():
    det = Detector(backend="onnxruntime")
    if "--test" in sys.argv:
        samples = [s for sp in ("test1", "test2")
                   for s in load_folder(DATA, ISBI19, split=[sp], annotators=("senior", "junior"))[:25]]
    else:
        _, samples = load_train_val(DATA, ISBI19, "auto", ["train"], ("senior", "junior"), 30, 0)
    rows = readings(det, samples)
    print(f"{len(rows)} readings")
    for rule in RULES:
        print(count(rows, rule))


if __name__ == "__main__":
    main()
