"""What the local stage costs: one ``Detector`` per backend, its local stage toggled on the same object.

    python -m benchmarks.latency_ab [--model FILE] [--image FILE] [--backends openvino,onnxruntime]
        [--also-local OTHER.local.onnx ...] [--also-model OTHER.onnx ...] [--out DIR]

Calls alternate between the configurations (two stages, any ``--also-local`` file, first stage alone, and each
``--also-model`` first stage with the same local stage and alone) so that the shared machine's slow spells fall
on all alike. Reports p50/p90 end-to-end ms of ``Detector.__call__`` on one
full-size image, and the ratio of the medians. Writes ``latency_ab.json`` and ``latency_ab.md``.
"""
from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import click
import numpy as np

ROOT = Path(__file__).resolve().parents[1]


@click.command()
@click.option("--model", type=click.Path(path_type=Path), default=None, help="First-stage file (default: bundled).")
@click.option("--image", type=click.Path(path_type=Path, exists=True), default=ROOT / "examples/data/isbi_152.jpg")
@click.option("--backends", default="openvino,onnxruntime", show_default=True)
@click.option("--threads", type=int, default=2, show_default=True)
@click.option("--runs", type=int, default=25, show_default=True, help="Timed calls per configuration.")
@click.option("--warmup", type=int, default=3, show_default=True)
@click.option("--also-local", "extra", multiple=True, type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="Another local-stage file to time in the same loop (repeatable), e.g. an earlier version.")
@click.option("--also-model", "models", multiple=True, type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="Another first-stage file (repeatable), timed with the same local stage and alone.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("lab/results/latency"))
def main(model, image, backends, threads, runs, warmup, extra, models, out_dir):
    from sdk import Detector
    from sdk.local_stage import LocalStage

    rows = {}
    for backend in [b for b in backends.split(",") if b]:
        det = Detector(model, backend=backend, threads=threads)
        if det.local is None:
            raise click.ClickException(f"{model or 'the bundled model'} has no local stage beside it")
        local = det.local
        # label -> (detector, local stage it runs with)
        configs = {"two stages": (det, local),
                   **{f"two stages, {f.name}": (det, LocalStage(f, backend, threads, det.meta.input_hw))
                      for f in extra},
                   "first stage only": (det, None)}
        for f in models:
            other = Detector(f, backend=backend, threads=threads, local_stage=local.path)
            configs.update({f"{f.name}, two stages": (other, other.local), f"{f.name}, first stage only": (other, None)})
        times = {k: [] for k in configs}
        for i in range(warmup + runs):
            for key, (d, loc) in configs.items():
                d.local = loc
                t = time.perf_counter()
                d(image)
                if i >= warmup:
                    times[key].append((time.perf_counter() - t) * 1000)
        det.local = local
        r = {k: {"p50_ms": float(np.median(v)), "p90_ms": float(np.percentile(v, 90))} for k, v in times.items()}
        r["local_adds_ms"] = r["two stages"]["p50_ms"] - r["first stage only"]["p50_ms"]
        r["ratio"] = r["two stages"]["p50_ms"] / r["first stage only"]["p50_ms"]
        rows[det.info["backend"]] = r
    meta = {"image": str(image), "threads": threads, "runs": runs, "warmup": warmup, "machine": platform.machine(),
            "cpus": os.cpu_count(), "model": str(model or "bundled"), "also_models": [str(f) for f in models]}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "latency_ab.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    lines = [f"One Detector per backend, end to end on {Path(image).name}, {threads} threads, {runs} interleaved calls "
             f"per configuration after {warmup} warm-up, local stage toggled on the same object; "
             f"{meta['machine']}, {meta['cpus']} CPUs", "",
             "| backend | two stages p50 ms | p90 | first stage only p50 ms | p90 | local stage adds | ratio |",
             "|---|---|---|---|---|---|---|"]
    for b, r in rows.items():
        t, f = r["two stages"], r["first stage only"]
        lines.append(f"| {b} | {t['p50_ms']:.1f} | {t['p90_ms']:.1f} | {f['p50_ms']:.1f} | {f['p90_ms']:.1f} | "
                     f"{r['local_adds_ms']:.1f} ms | {r['ratio']:.2f}x |")
    if extra or models:
        lines += ["", "| backend | configuration | p50 ms | p90 | vs the first stage only | vs two stages |",
                  "|---|---|---|---|---|---|"]
        for b, r in rows.items():
            for k, v in r.items():
                if isinstance(v, dict):
                    lines.append(f"| {b} | {k} | {v['p50_ms']:.1f} | {v['p90_ms']:.1f} | "
                                 f"{v['p50_ms'] - r['first stage only']['p50_ms']:+.1f} ms | "
                                 f"{v['p50_ms'] / r['two stages']['p50_ms']:.2f}x |")
    (out_dir / "latency_ab.md").write_text("\n".join(lines) + "\n")
    click.echo("\n".join(lines))


if __name__ == "__main__":
    main()
