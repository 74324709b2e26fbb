"""The ear-rod ring detector against the rings labelled by eye (``lab/data/ear_rods/isbi_rings.csv``).

    python -m lab.studies.ear_rods_check --data ../shared/data/isbi2015 [--centre labels|model] [--out DIR]

Per image: the machine porion's distance from the label (mm), and how many rings were found against how many
were labelled. ``--centre labels``: the search around the clinicians' porion (the detector alone); ``model``: around
the bundled model's porion, as the Detector runs it.
"""
from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import cv2
import numpy as np

from sdk.ear_rods import find_rings

LABELS = Path(__file__).resolve().parents[1] / "data" / "ear_rods" / "isbi_rings.csv"


def _porion(data: Path):
    out = {}
    for who in ("senior", "junior"):
        with open(data / f"{who}.csv", newline="") as f:
            for r in csv.DictReader(f):
                out.setdefault(r["image"], []).append((float(r["porion_x"]), float(r["porion_y"])))
    return {k: np.mean(v, axis=0) for k, v in out.items()}


def run(data: Path, centre: str = "labels"):
    rows = list(csv.DictReader(open(LABELS, newline="")))
    por = _porion(data)
    det = None
    if centre == "model":
        from sdk import Detector

        det = Detector(backend="onnxruntime")
    out = []
    for r in rows:
        gray = cv2.imread(str(data / "images" / r["image"]), cv2.IMREAD_GRAYSCALE)
        p = por[r["image"]] if det is None else det(gray)["porion"]
        t = time.perf_counter()
        found = find_rings(gray, p, 0.1)
        ms = (time.perf_counter() - t) * 1000
        truth = np.array([float(r["machine_porion_x"]), float(r["machine_porion_y"])])
        err = float(np.linalg.norm(found.machine_porion - truth)) * 0.1 if found else None
        out.append({"image": r["image"], "split": "train" if int(r["image"][:3]) <= 150 else "test",
                    "labelled": int(r["rings"]), "found": len(found.rings) if found else 0, "error_mm": err,
                    "score": found.score if found else None, "ms": ms})
    return out


def summary(out):
    lines = []
    for part in ("train", "test", "all"):
        o = [x for x in out if part == "all" or x["split"] == part]
        e = np.array([x["error_mm"] if x["error_mm"] is not None else np.inf for x in o])
        lines.append(f"{part:5s} n={len(o):3d}  within 1 mm {np.mean(e <= 1):.0%}  within 2 mm {np.mean(e <= 2):.0%}  "
                     f"median {np.median(e):.2f} mm  mean(finite) {np.mean(e[np.isfinite(e)]):.2f} mm  "
                     f"rings right {np.mean([x['found'] == x['labelled'] for x in o]):.0%}")
    lines.append(f"time per image: median {np.median([x['ms'] for x in out]):.1f} ms")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data/isbi2015"))
    ap.add_argument("--centre", choices=["labels", "model"], default="labels")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--show", action="store_true", help="print each image's figures")
    a = ap.parse_args()
    out = run(a.data, a.centre)
    if a.show:
        for x in out:
            print(x)
    s = summary(out)
    print(s)
    if a.out:
        a.out.mkdir(parents=True, exist_ok=True)
        (a.out / f"ear_rods_check_{a.centre}.json").write_text(json.dumps(out, indent=1))
        (a.out / f"ear_rods_check_{a.centre}.txt").write_text(s + "\n")


if __name__ == "__main__":
    main()
