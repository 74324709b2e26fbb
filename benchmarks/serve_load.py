"""Load test of ``cephalo serve`` on loopback, beside the Detector's own batch throughput on the same machine.

    python -m benchmarks.serve_load [--image FILE] [--requests 200] [--concurrency 8] [--out DIR]

First times ``Detector.batch`` in this process (2 threads, batches of 4), then starts ``cephalo serve`` as a
subprocess on a free localhost port and sends ``--requests`` POSTs with ``--concurrency`` in flight (a bounded
loop; only 127.0.0.1). Reports p50/p99 latency, images/s, errors, and the ratio to the batch throughput. Writes
``serve_load.json`` / ``.md``.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]


@click.command()
@click.option("--image", type=click.Path(exists=True, path_type=Path), default=ROOT / "examples/data/isbi_152.jpg")
@click.option("--requests", "n", type=int, default=200, show_default=True)
@click.option("--concurrency", type=int, default=8, show_default=True)
@click.option("--backend", default="onnxruntime", show_default=True)
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("results/serve_load"))
def main(image, n, concurrency, backend, out_dir):
    import httpx

    from cephalo.serve import spawn
    from sdk import Detector

    data = image.read_bytes()
    cores = os.cpu_count() or 1
    det = Detector(backend=backend, threads=cores)
    imgs = [data] * 24
    det.batch(imgs[:4])
    t = time.perf_counter()
    det.batch(imgs, batch_size=4)
    batch_ips = len(imgs) / (time.perf_counter() - t)
    del det
    proc, url = spawn(backend)
    try:
        with httpx.Client(timeout=120) as c:
            for _ in range(4):
                c.post(url + "/v1/landmarks", content=data)

            def one(_):
                t0 = time.perf_counter()
                r = c.post(url + "/v1/landmarks", content=data)
                return time.perf_counter() - t0, r.status_code

            t = time.perf_counter()
            with ThreadPoolExecutor(concurrency) as pool:
                res = list(pool.map(one, range(n)))
            wall = time.perf_counter() - t
    finally:
        proc.terminate()
        proc.wait(30)
    lat = sorted(r[0] for r in res)
    errors = sum(1 for r in res if r[1] != 200)
    out = {"cpu": platform.processor() or platform.machine(), "cores": cores, "image": image.name,
           "requests": n, "concurrency": concurrency, "backend": backend, "errors": errors,
           "p50_ms": round(statistics.median(lat) * 1000, 1), "p99_ms": round(lat[int(0.99 * (n - 1))] * 1000, 1),
           "service_images_per_s": round(n / wall, 2), "detector_batch_images_per_s": round(batch_ips, 2)}
    out["service_vs_batch"] = round(out["service_images_per_s"] / out["detector_batch_images_per_s"], 3)
    click.echo(json.dumps(out, indent=2))
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "serve_load.json").write_text(json.dumps(out, indent=2))
    (out_dir / "serve_load.md").write_text(
        f"`cephalo serve` on 127.0.0.1, {n} POSTs of {image.name}, {concurrency} in flight, {backend}, {cores} "
        f"cores: p50 {out['p50_ms']} ms, p99 {out['p99_ms']} ms, {out['service_images_per_s']} images/s, "
        f"{errors} errors; Detector.batch in one process: {out['detector_batch_images_per_s']} images/s "
        f"(service / batch = {out['service_vs_batch']}).\n")


if __name__ == "__main__":
    main()
