"""Images per second of an archive: the local folder run beside Ray with 1 and 2 workers, and the network's own
throughput (OpenVINO's benchmark_app) in the same session.

    python -m benchmarks.archive_throughput --data ../shared/data/isbi2015 [--n 500] [--out DIR]

The archive is the ISBI images plus mirrored copies up to ``--n`` files (JPEG, quality 95). Writes
``archive.json`` and ``archive.md``: images/s per configuration, per-worker peak memory, and what 1M images on
10 such nodes would take at the measured per-worker rate.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import click
import cv2

from benchmarks.cpu_bench import benchmark_app


def make_archive(data: Path, n: int, root: Path) -> list:
    src = sorted((data / "images").glob("*.jpg"))
    out = []
    for i in range(n):
        p = src[i % len(src)]
        dst = root / f"{'orig' if i < len(src) else 'mirror'}_{i:04d}.jpg"
        if i < len(src):
            shutil.copy(p, dst)
        else:
            cv2.imwrite(str(dst), cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)[:, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
        out.append(dst)
    return out


@click.command()
@click.option("--data", "data_dir", type=click.Path(path_type=Path, exists=True), required=True)
@click.option("--n", "n_images", type=int, default=500, show_default=True)
@click.option("--backend", default="openvino", show_default=True)
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("results/archive"), show_default=True)
def main(data_dir, n_images, backend, out_dir):
    """Archive throughput: local folder run vs Ray with 1 and 2 workers, beside benchmark_app."""
    import ray

    from cephalo.archive import read_shards, run_archive
    from sdk import Detector

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "in").mkdir()
        files = make_archive(data_dir, n_images, Path(tmp) / "in")
        paths = [str(p) for p in files]
        det = Detector(backend=backend)
        list(det.stream(paths[:4]))
        t = time.perf_counter()
        n = sum(1 for _ in det.stream(paths))
        rows.append({"run": f"local folder run (Detector.stream, 2 workers, {det.info['threads']} threads)",
                     "images_s": n / (time.perf_counter() - t)})
        del det
        ray.init(num_cpus=os.cpu_count() + 1, include_dashboard=False, log_to_driver=False)
        for workers, threads in ((1, 2), (2, 1)):
            out = Path(tmp) / f"out_{workers}x{threads}"
            t = time.perf_counter()
            counts = run_archive(paths, out, workers=workers, threads=threads, backend=backend, batch_size=8)
            dt = time.perf_counter() - t
            shards = read_shards(out).values()
            peaks = {}
            for r in shards:
                peaks[r["worker"]] = max(peaks.get(r["worker"], 0.0), r["worker_peak_mb"])
            rows.append({"run": f"Ray, {workers} worker(s) x {threads} thread(s)", "images_s": n_images / dt,
                         "seconds": dt, "counts": counts, "worker_peak_mb": sorted(peaks.values())})
        ray.shutdown()
    fps = benchmark_app(Path(__file__).resolve().parents[1] / "sdk" / "models" / "isbi19_default_int8.onnx",
                        (320, 320), "throughput", 15)["throughput_fps"]
    best = max(r["images_s"] for r in rows if r["run"].startswith("Ray"))
    res = {"cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(), "images": n_images,
           "backend": backend, "rows": rows, "benchmark_app_first_stage_fps": fps,
           "one_million_on_10_nodes_hours": 1e6 / (10 * best) / 3600,
           "date": time.strftime("%Y-%m-%d %H:%M")}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "archive.json").write_text(json.dumps(res, indent=2))
    lines = [f"{n_images} images, {res['cpus']} CPUs ({res['cpu']}), {backend}, {res['date']}", "",
             "| run | images/s | worker peak MB |", "|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['run']} | {r['images_s']:.1f} | {', '.join(f'{m:.0f}' for m in r.get('worker_peak_mb', []))} |")
    lines += ["", f"benchmark_app (first-stage network alone, throughput hint): {fps:.1f} images/s",
              f"1M images on 10 nodes like this one at the best Ray rate: {res['one_million_on_10_nodes_hours']:.1f} h"]
    (out_dir / "archive.md").write_text("\n".join(lines) + "\n")
    click.echo("\n".join(lines))


if __name__ == "__main__":
    main()
