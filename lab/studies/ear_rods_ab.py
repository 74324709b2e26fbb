"""The ear rods' search at another commit against today's: the same rings?, and how long each takes, interleaved.

    python -m lab.studies.ear_rods_ab --data ../shared/data/isbi2015 --base REV [--rounds 15]

Cases: the bundled Detector's own decodes of 16 Test1 images around its porion (as the Detector searches), the 65
images whose rings were labelled by eye at full resolution around the clinicians' porion, and 8 washed-out copies
with and without a planted ring. Reports how many cases give the same rings and machine porion (positions to the
bit; scores within 1e-6) and, on the 16 decodes, each version's median time per call over interleaved rounds.
"""
from __future__ import annotations

import argparse
import csv
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def _module_at(rev: str, where: Path):
    """``sdk/ear_rods.py`` as it was at ``rev``, imported under another name."""
    src = subprocess.run(["git", "show", f"{rev}:sdk/ear_rods.py"], cwd=ROOT, check=True, capture_output=True,
                         text=True).stdout
    path = where / "ear_rods_base.py"
    path.write_text(src, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("ear_rods_base", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["ear_rods_base"] = module        # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _cases(data: Path):
    from lab.studies.ear_rods_check import LABELS, _porion
    from sdk import Detector

    det = Detector(backend="onnxruntime", ear_rods=False)
    out = []
    for f in sorted((data / "images").glob("*.jpg"))[150:166]:
        _, _, loaded = det.preprocess(f)
        red = loaded.reduction
        out.append((loaded.gray, (det(f)["porion"] - (red - 1) / 2) / red, 0.1 * red))
    por = _porion(data)
    for r in csv.DictReader(open(LABELS, newline="")):
        out.append((cv2.imread(str(data / "images" / r["image"]), cv2.IMREAD_GRAYSCALE), por[r["image"]], 0.1))
    for i, (g, p, mm) in enumerate(list(out[:8])):
        flat = cv2.GaussianBlur(g.astype(np.float32), (0, 0), 6) + np.random.default_rng(i).normal(0, 3, g.shape)
        flat = np.clip(flat, 0, 255).astype(np.uint8)
        ring = flat.copy()
        centre = (int(p[0] + 8 / mm * (i - 4) / 4), int(p[1] + (1 + 5 * (i - 3) / 4) / mm))
        cv2.circle(ring, centre, int(round(4.5 / mm)), 250, max(1, int(round(0.8 / mm))), cv2.LINE_AA)
        out += [(flat, p, mm), (ring, p, mm)]
    return out


def _same(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return (len(a.rings) == len(b.rings) and np.array_equal(a.machine_porion, b.machine_porion)
            and abs(a.score - b.score) < 1e-6
            and all((g.x, g.y, g.r) == (h.x, h.y, h.r) and abs(g.outer - h.outer) < 1e-6
                    for g, h in zip(a.rings, b.rings)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data/isbi2015"))
    ap.add_argument("--base", required=True, help="the commit to compare against (e.g. HEAD~1)")
    ap.add_argument("--rounds", type=int, default=15)
    a = ap.parse_args()
    from benchmarks.cpu_bench import cpu_name
    from sdk import ear_rods as now

    with tempfile.TemporaryDirectory() as tmp:
        base = _module_at(a.base, Path(tmp))
        cases = _cases(a.data)
        same = sum(_same(base.find_rings(*c), now.find_rings(*c)) for c in cases)
        times = {"base": [], "now": []}
        for r in range(a.rounds):
            for name, m in (("base", base), ("now", now)) if r % 2 else (("now", now), ("base", base)):
                t = time.perf_counter()
                for c in cases[:16]:
                    m.find_rings(*c)
                times[name].append((time.perf_counter() - t) / 16 * 1000)
    b, n = np.median(times["base"]), np.median(times["now"])
    print(f"{cpu_name()['cpu']}: the same rings on {same} of {len(cases)} cases; find_rings on the 16 Detector "
          f"decodes, median of {a.rounds} interleaved rounds: {a.base} {b:.2f} ms, now {n:.2f} ms ({n / b:.2f}x)")


if __name__ == "__main__":
    main()
