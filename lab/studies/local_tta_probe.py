"""Can the local stage alone steady a tilted head's reading? (issue 50)

    python -m lab.studies.local_tta_probe --data ../shared/data/isbi2015 [VARIANT...]

Variants of the local stage's reading, swapped into the Detector (onnxruntime): ``base`` (as shipped); ``iter`` (a
second pass on patches centred on the first pass's points, its prior there too); ``iterkeep`` (the same, the prior
kept on the first stage's points); ``turnD`` (patches also cut at the head's turn +- D deg, the three readings
averaged); ``shiftD`` (patches also centred D px left, right, up and down, the five averaged). Each: the tilt
benchmark's figures (:func:`benchmarks.tilt.run`, 10 Test1 images x +-5, 8, 10 deg) and Test1 / Test2 MRE against
the mean of both clinicians (reporting). Figures in lab/RESULTS.md (2026-12-07, fifth session).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

ANGLES = (-10, -8, -5, 5, 8, 10)


def _variant(name: str, original):
    from sdk.local_stage import head_turn, local_inputs, local_points

    def read(self, gray, lb, xy, reduction=1, turn=None):
        if name == "base":
            return original(self, gray, lb, xy, reduction, turn)
        fine = self.fine(gray, lb, reduction)
        turn = head_turn(xy, self.meta.schema) if turn is None else turn
        p = self.params

        def once(centres, t, prior_at):
            x, mats = local_inputs(fine, centres, p, t)
            return local_points(self.run_network(x), mats, fine, p, prior_at, return_peaks=True)

        if name.startswith("iter"):
            first, _ = once(xy, turn, xy)
            return once(first, turn, first if name == "iter" else xy)
        if name.startswith("turn"):
            d = float(name[4:])
            outs = [once(xy, t, xy) for t in (turn - d, turn, turn + d)]
        elif name.startswith("shift"):
            d = float(name[5:])
            outs = [once(xy + np.array(o), turn, xy) for o in ((0, 0), (d, 0), (-d, 0), (0, d), (0, -d))]
        else:
            raise SystemExit(f"unknown variant {name!r}")
        return np.mean([o[0] for o in outs], axis=0), np.mean([o[1] for o in outs], axis=0)
    return read


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data/isbi2015"))
    ap.add_argument("variants", nargs="*", default=["base", "iter", "iterkeep", "turn2", "shift3"])
    a = ap.parse_args()
    import sdk.local_stage as local
    from benchmarks.tilt import run as tilt_run
    from sdk import Detector
    from sdk.schemas import ISBI19
    from train.datasets import load_folder

    original = local.LocalStage.locate_with_peaks
    det = Detector(backend="onnxruntime")
    tests = {split: load_folder(a.data, ISBI19, split=[split], annotators=("senior", "junior"))
             for split in ("test1", "test2")}
    files = sorted((a.data / "images").glob("*.jpg"))[150:160]
    print("| variant | Test1 / Test2 MRE mm | tilt p50 / p95 mm | SNA / SNB / ANB p95 deg | worst landmarks (p95 mm) |")
    print("|---|---|---|---|---|")
    for name in a.variants:
        local.LocalStage.locate_with_peaks = _variant(name, original)
        t = tilt_run(det, files, list(ANGLES))
        mre = [np.mean([np.nanmean(np.linalg.norm(det(cv2.imread(str(s.image), 0)).xy - s.points, axis=1)) * 0.1
                        for s in samples]) for samples in tests.values()]
        worst = sorted(t["points"]["p95_mm_by_landmark"].items(), key=lambda kv: -kv[1])[:3]
        ang = t["angles"]
        print(f"| {name} | {mre[0]:.4f} / {mre[1]:.4f} | {t['points']['p50_mm']} / {t['points']['p95_mm']} | "
              f"{ang['SNA']['p95_deg']} / {ang['SNB']['p95_deg']} / {ang['ANB']['p95_deg']} | "
              + ", ".join(f"{k} {v}" for k, v in worst) + " |", flush=True)
    local.LocalStage.locate_with_peaks = original


if __name__ == "__main__":
    main()
