"""How much a reading moves when the head is tilted: the same image turned by a few degrees (nothing else), read,
and its points mapped back onto the untilted image's.

    python -m benchmarks.tilt --data ../shared/data/isbi2015 [--images 10] [--angles=-10,-8,-5,5,8,10]
        [--steady] [--canvas-only] [--out lab/results/tilt]

Per point: the distance (mm) between the tilted copy's reading, mapped back, and the untilted image's reading; per
angle measurement (SNA, SNB, ANB): the change (p95 and max of its size, and its mean: a bias). ``--canvas-only``: the
same images unturned on the canvas their turned copies need (the canvas's growth alone). ``--steady``: also
:func:`sdk.compare.steady_reading` (a tilted head read a second time, turned upright, and the two averaged), as
``cephalo compare`` reads.
Writes ``tilt.json`` and ``tilt.md``.
"""
from __future__ import annotations

import json
from pathlib import Path

import click
import cv2
import numpy as np

from benchmarks.cpu_bench import cpu_name
from sdk.compare import turned as tilted

ANGLES = ("SNA", "SNB", "ANB")


def grown(gray: np.ndarray, deg: float):
    """``gray`` unturned on the canvas :func:`sdk.compare.turned` would give it at ``deg`` (the same aspect, the
    image centred), and the 2x3 matrix from its pixels to the copy's: the canvas's growth without the turn."""
    h, w = gray.shape[:2]
    nh = int(np.ceil(h * abs(np.cos(np.radians(deg))) + w * abs(np.sin(np.radians(deg)))))
    nw = int(np.ceil(w * nh / h))
    y0, x0 = (nh - h) // 2, (nw - w) // 2
    out = np.zeros((nh, nw), gray.dtype)
    out[y0:y0 + h, x0:x0 + w] = gray
    return out, np.array([[1.0, 0.0, x0], [0.0, 1.0, y0]])


def run(read, files, angles, mm=0.1, copy=tilted):
    dist, change = [], {a: [] for a in ANGLES}
    for f in files:
        gray = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE)
        base = read(gray)
        base_m = base.measurements()
        for deg in angles:
            img, m = copy(gray, deg)
            res = read(img)
            back = (res.xy - m[:, 2]) @ np.linalg.inv(m[:, :2]).T
            dist.append(np.linalg.norm(back - base.xy, axis=1) * mm)
            got = res.measurements()
            for a in ANGLES:
                change[a].append(got[a]["value"] - base_m[a]["value"])
    d = np.concatenate(dist)
    names = list(base.names)
    per = np.stack(dist)
    worst = int(np.argmax(per.max(axis=0)))
    return {"points": {"p50_mm": round(float(np.median(d)), 3), "p95_mm": round(float(np.percentile(d, 95)), 3),
                       "max_mm": round(float(d.max()), 3), "worst_landmark": names[worst],
                       "p95_mm_by_landmark": {n: round(float(v), 3) for n, v in
                                              zip(names, np.percentile(per, 95, axis=0))},
                       "max_mm_by_landmark": {n: round(float(v), 3) for n, v in zip(names, per.max(axis=0))}},
            "angles": {a: {"p95_deg": round(float(np.percentile(np.abs(v), 95)), 3),
                           "max_deg": round(float(np.max(np.abs(v))), 3), "mean_deg": round(float(np.mean(v)), 3)}
                       for a, v in change.items()}}


@click.command()
@click.option("--data", "data_dir", type=click.Path(path_type=Path, exists=True), required=True)
@click.option("--images", "n_images", type=int, default=10, show_default=True, help="Test1 images, from 151.")
@click.option("--angles", default="-10,-8,-5,5,8,10", show_default=True)
@click.option("--steady", is_flag=True, help="Also the steadied reading (cephalo compare's).")
@click.option("--canvas-only", is_flag=True,
              help="Not turned: each image on the canvas its turned copy would need (the canvas's growth alone).")
@click.option("--backend", default="onnxruntime", show_default=True)
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("lab/results/tilt"))
def main(data_dir, n_images, angles, steady, canvas_only, backend, out_dir):
    from sdk import Detector
    from sdk.compare import steady_reading

    files = sorted((data_dir / "images").glob("*.jpg"))[150:150 + n_images]
    degs = [float(a) for a in angles.split(",")]
    report = {"cpu": cpu_name()["cpu"], "images": [f.name for f in files], "angles_deg": degs,
              "copies": "on the turned copy's canvas, unturned" if canvas_only else "turned", "runs": {}}
    det = Detector(backend=backend)
    reads = {"as read": det}
    if steady:
        reads["steady"] = lambda g: steady_reading(det, g, g)[0]
    for name, read in reads.items():
        report["runs"][name] = run(read, files, degs, copy=grown if canvas_only else tilted)
        print(name, json.dumps(report["runs"][name]))
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "tilt.json").write_text(json.dumps(report, indent=1))
    what = "on the canvas a turn by" if canvas_only else "x"
    lines = [f"# A tilted head's reading ({report['cpu']}; {len(files)} Test1 images {what} {degs} deg)", "",
             "| reading | points p50 mm | p95 mm | max mm (worst) | "
             + " | ".join(f"{a} p95 / max / mean deg" for a in ANGLES) + " |",
             "|---|---|---|---|" + "---|" * len(ANGLES)]
    for u, r in report["runs"].items():
        p = r["points"]
        lines.append(f"| {u} | {p['p50_mm']} | {p['p95_mm']} | {p['max_mm']} ({p['worst_landmark']}) | "
                     + " | ".join(f"{r['angles'][a]['p95_deg']} / {r['angles'][a]['max_deg']} / "
                                  f"{r['angles'][a]['mean_deg']:+}" for a in ANGLES)
                     + " |")
    (out_dir / "tilt.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
