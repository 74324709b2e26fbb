"""What the ear rods' search costs the Detector: the same images read with ``ear_rods`` on and off, interleaved.

    python -m benchmarks.ear_rods_bench --data ../shared/data/isbi2015 [--images 16] [--rounds 5]
        [--backends openvino,onnxruntime] [--out lab/results/ear_rods]

Each round reads every image with both Detectors of a backend, alternating which goes first, so that the shared
machine's slow spells fall on both alike. Reports each configuration's p50 and p90 (ms per call), the difference
of the p50s, and :func:`sdk.ear_rods.find_rings` alone on the Detector's decoded images. Writes
``ear_rods_bench.json`` and ``.md``.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import click
import numpy as np

from benchmarks.cpu_bench import cpu_name


@click.command()
@click.option("--data", "data_dir", type=click.Path(path_type=Path, exists=True), required=True)
@click.option("--images", "n_images", type=int, default=16, show_default=True, help="Test1 images read per round.")
@click.option("--rounds", type=int, default=5, show_default=True)
@click.option("--backends", default="openvino,onnxruntime", show_default=True)
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("lab/results/ear_rods"))
def main(data_dir, n_images, rounds, backends, out_dir):
    from sdk import Detector
    from sdk.ear_rods import find_rings

    files = sorted((data_dir / "images").glob("*.jpg"))[150:150 + n_images]
    report = {"cpu": cpu_name()["cpu"], "images": len(files), "rounds": rounds, "backends": {}}
    for backend in backends.split(","):
        on, off = Detector(backend=backend, ear_rods=True), Detector(backend=backend, ear_rods=False)
        for f in files[:2]:
            on(f), off(f)
        times = {"on": [], "off": []}
        for r in range(rounds):
            for i, f in enumerate(files):
                order = (("on", on), ("off", off)) if (r + i) % 2 == 0 else (("off", off), ("on", on))
                for name, det in order:
                    t = time.perf_counter()
                    det(f)
                    times[name].append((time.perf_counter() - t) * 1000)
        stats = {k: {"p50": float(np.median(v)), "p90": float(np.percentile(v, 90))} for k, v in times.items()}
        stats["p50_added_ms"] = stats["on"]["p50"] - stats["off"]["p50"]
        report["backends"][backend] = stats
    alone = []
    det = Detector(backend="onnxruntime", ear_rods=False)
    for f in files:
        _, _, loaded = det.preprocess(f)
        res = det(f)
        red = loaded.reduction
        p = (res["porion"] - (red - 1) / 2) / red
        find_rings(loaded.gray, p, 0.1 * red)
        t = time.perf_counter()
        for _ in range(5):
            find_rings(loaded.gray, p, 0.1 * red)
        alone.append((time.perf_counter() - t) / 5 * 1000)
    report["find_rings_alone_ms_p50"] = float(np.median(alone))
    lines = [f"# Ear rods' cost on the Detector ({report['cpu']}; {len(files)} Test1 images x {rounds} rounds, "
             f"interleaved)", "", "| backend | p50 off | p50 on | added | p90 off | p90 on |", "|---|---|---|---|---|---|"]
    for b, s in report["backends"].items():
        lines.append(f"| {b} | {s['off']['p50']:.1f} | {s['on']['p50']:.1f} | {s['p50_added_ms']:+.1f} | "
                     f"{s['off']['p90']:.1f} | {s['on']['p90']:.1f} |")
    lines.append(f"\n`find_rings` alone on the Detector's decoded image: p50 {report['find_rings_alone_ms_p50']:.1f} ms")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "ear_rods_bench.json").write_text(json.dumps(report, indent=1))
    (out_dir / "ear_rods_bench.md").write_text("\n".join(lines) + "\n")
    click.echo("\n".join(lines))


if __name__ == "__main__":
    main()
