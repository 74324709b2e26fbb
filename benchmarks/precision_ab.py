"""OpenVINO's float parts in bf16 against f32, and static against dynamic compiled shapes: accuracy and speed.

    python -m benchmarks.precision_ab --data ../shared/data/isbi2015 [--out DIR] [--repeats 20]

Accuracy: every Test1/Test2 image through ``Detector(precision='f32')`` and ``Detector(precision='bf16')`` (both
OpenVINO, static shapes), MRE against the mean of both clinicians, and the points' mean shift in first-stage input
pixels. Speed: the first-stage network and the Detector end to end, per call, interleaved in one process (the
calls alternate, so both see the same machine state): f32 dynamic (the shapes as the file declares them), f32
static, bf16 static. Writes ``precision_ab.json`` / ``.md``; the CPU's name and its bf16/AMX flags go with them.
"""
from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import click
import numpy as np


def _cpu() -> str:
    try:
        info = Path("/proc/cpuinfo").read_text()
        name = next(ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name"))
        flags = next(ln for ln in info.splitlines() if ln.startswith("flags")).split()
        return f"{name} ({', '.join(f for f in ('avx512_vnni', 'avx512_bf16', 'amx_bf16', 'amx_int8') if f in flags)})"
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


@click.command()
@click.option("--data", "data_dir", type=click.Path(exists=True, path_type=Path), required=True)
@click.option("--threads", type=int, default=2, show_default=True)
@click.option("--repeats", type=int, default=20, show_default=True, help="Timed calls per variant and image.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("results/precision_ab"),
              show_default=True)
def main(data_dir, threads, repeats, out_dir):
    """bf16 vs f32 accuracy on Test1/Test2; f32 dynamic / f32 static / bf16 static latency, interleaved."""
    import sdk.backends as backends
    from sdk import Detector
    from sdk.image_io import load_image
    from sdk.schemas import ISBI19
    from train.datasets import load_folder

    f32 = Detector(backend="openvino", threads=threads)
    bf16 = Detector(backend="openvino", threads=threads, precision="bf16")
    keep, backends.MAX_STATIC_SHAPES = backends.MAX_STATIC_SHAPES, 0       # this one compiles the dynamic model
    dynamic = Detector(backend="openvino", threads=threads)
    backends.MAX_STATIC_SHAPES = keep
    rep = {"cpu": _cpu(), "threads": threads, "accuracy": {}, "speed": {}}
    for split in ("test1", "test2"):
        samples = load_folder(data_dir, ISBI19, split=[split], annotators=("senior", "junior"))
        errs, shift = {"f32": [], "bf16": []}, []
        for s in samples:
            a, b = f32(s.image), bf16(s.image)
            for k, r in (("f32", a), ("bf16", b)):
                errs[k].append(np.linalg.norm(r.xy - s.points, axis=1) * s.spacing)
            _, lb, _ = f32.preprocess(s.image)
            shift.append(np.linalg.norm((a.xy - b.xy) * np.array([lb.scale_x, lb.scale_y]), axis=1).mean())
        rep["accuracy"][split] = {k: float(np.mean(v)) for k, v in errs.items()}
        rep["accuracy"][split]["delta_mre_mm"] = rep["accuracy"][split]["bf16"] - rep["accuracy"][split]["f32"]
        rep["accuracy"][split]["mean_shift_input_px"] = float(np.mean(shift))
        click.echo(f"{split}: {rep['accuracy'][split]}")
    imgs = [load_image(p).gray for p in sorted((data_dir / "images").glob("*.jpg"))[150:155]]
    x, _, _ = f32.preprocess(imgs[0])
    variants = {"f32 dynamic": dynamic, "f32 static": f32, "bf16 static": bf16}
    t = {f"{k} {what}": [] for k in variants for what in ("network", "detector")}
    for det in variants.values():               # warm-up: compile, caches
        det.run_network(x[None])
        det(imgs[0])
    for _ in range(repeats):
        for g in imgs:
            for k, det in variants.items():
                t0 = time.perf_counter()
                det.run_network(x[None])
                t[f"{k} network"].append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                det(g)
                t[f"{k} detector"].append(time.perf_counter() - t0)
    rep["speed"] = {k: {"p50_ms": float(np.median(v) * 1000), "p95_ms": float(np.percentile(v, 95) * 1000)}
                    for k, v in t.items()}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "precision_ab.json").write_text(json.dumps(rep, indent=1))
    lines = [f"CPU: {rep['cpu']}, {threads} threads; OpenVINO, bundled pair; {repeats} x {len(imgs)} interleaved "
             f"calls per variant.", "", "| variant | p50 ms | p95 ms |", "|---|---|---|"]
    lines += [f"| {k} | {v['p50_ms']:.1f} | {v['p95_ms']:.1f} |" for k, v in rep["speed"].items()]
    lines += ["", "| split | MRE f32 | MRE bf16 | delta mm | mean shift, input px |", "|---|---|---|---|---|"]
    lines += [f"| {s} | {a['f32']:.4f} | {a['bf16']:.4f} | {a['delta_mre_mm']:+.4f} | {a['mean_shift_input_px']:.3f} |"
              for s, a in rep["accuracy"].items()]
    (out_dir / "precision_ab.md").write_text("\n".join(lines) + "\n")
    click.echo("\n".join(lines))


if __name__ == "__main__":
    main()
