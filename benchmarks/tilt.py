"""How much a reading moves when the head is tilted: the same image turned by a few degrees (nothing else), read,
and its points mapped back onto the untilted image's.

    python -m benchmarks.tilt --data ../shared/data/isbi2015 [--images 10] [--angles=-10,-8,-5,5,8,10]
        [--upright 0,2] [--out lab/results/tilt]

Per point: the distance (mm) between the tilted copy's reading, mapped back, and the untilted image's reading; per
angle measurement (SNA, SNB, ANB): the change. ``--upright``: the Detector's ``upright`` settings compared (0 = as
read; a number = the tilt in degrees beyond which the image is read again turned to the head's usual frame).
Writes ``tilt.json`` and ``tilt.md``.
"""
from __future__ import annotations

import json
from pathlib import Path

import click
import cv2
import numpy as np

from benchmarks.cpu_bench import cpu_name

ANGLES = ("SNA", "SNB", "ANB")


def tilted(gray: np.ndarray, deg: float):
    """``gray`` turned by ``deg`` degrees about its centre on a canvas that holds all of it: (image, 2x3 matrix
    from the original's pixels to the tilted copy's)."""
    h, w = gray.shape
    m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), deg, 1.0)
    cos, sin = abs(m[0, 0]), abs(m[0, 1])
    nw, nh = int(np.ceil(h * sin + w * cos)), int(np.ceil(h * cos + w * sin))
    m[0, 2] += (nw - w) / 2
    m[1, 2] += (nh - h) / 2
    return cv2.warpAffine(gray, m, (nw, nh), flags=cv2.INTER_LINEAR, borderValue=0), m


def run(det, files, angles, mm=0.1):
    dist, change = [], {a: [] for a in ANGLES}
    for f in files:
        gray = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE)
        base = det(gray)
        base_m = base.measurements()
        for deg in angles:
            img, m = tilted(gray, deg)
            res = det(img)
            back = (res.xy - m[:, 2]) @ np.linalg.inv(m[:, :2]).T
            dist.append(np.linalg.norm(back - base.xy, axis=1) * mm)
            got = res.measurements()
            for a in ANGLES:
                change[a].append(abs(got[a]["value"] - base_m[a]["value"]))
    d = np.concatenate(dist)
    names = list(base.names)
    per = np.stack(dist)
    worst = int(np.argmax(per.max(axis=0)))
    return {"points": {"p50_mm": round(float(np.median(d)), 3), "p95_mm": round(float(np.percentile(d, 95)), 3),
                       "max_mm": round(float(d.max()), 3), "worst_landmark": names[worst],
                       "p95_mm_by_landmark": {n: round(float(v), 3) for n, v in
                                              zip(names, np.percentile(per, 95, axis=0))}},
            "angles": {a: {"p95_deg": round(float(np.percentile(v, 95)), 3), "max_deg": round(float(np.max(v)), 3)}
                       for a, v in change.items()}}


@click.command()
@click.option("--data", "data_dir", type=click.Path(path_type=Path, exists=True), required=True)
@click.option("--images", "n_images", type=int, default=10, show_default=True, help="Test1 images, from 151.")
@click.option("--angles", default="-10,-8,-5,5,8,10", show_default=True)
@click.option("--upright", default="0", show_default=True, help="Detector upright settings to compare.")
@click.option("--backend", default="onnxruntime", show_default=True)
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("lab/results/tilt"))
def main(data_dir, n_images, angles, upright, backend, out_dir):
    from sdk import Detector

    files = sorted((data_dir / "images").glob("*.jpg"))[150:150 + n_images]
    degs = [float(a) for a in angles.split(",")]
    report = {"cpu": cpu_name()["cpu"], "images": [f.name for f in files], "angles_deg": degs, "runs": {}}
    for u in upright.split(","):
        det = Detector(backend=backend, upright=float(u)) if float(u) else Detector(backend=backend)
        report["runs"][u] = run(det, files, degs)
        print(u, json.dumps(report["runs"][u]))
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "tilt.json").write_text(json.dumps(report, indent=1))
    lines = [f"# A tilted head's reading ({report['cpu']}; {len(files)} Test1 images x {degs} deg)", "",
             "| upright | points p50 mm | p95 mm | max mm (worst) | " + " | ".join(f"{a} p95 / max deg" for a in ANGLES)
             + " |", "|---|---|---|---|" + "---|" * len(ANGLES)]
    for u, r in report["runs"].items():
        p = r["points"]
        lines.append(f"| {u} | {p['p50_mm']} | {p['p95_mm']} | {p['max_mm']} ({p['worst_landmark']}) | "
                     + " | ".join(f"{r['angles'][a]['p95_deg']} / {r['angles'][a]['max_deg']}" for a in ANGLES)
                     + " |")
    (out_dir / "tilt.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
