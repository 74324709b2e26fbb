"""One first-stage checkpoint run at several input sizes (same weights), alone and with a local stage behind it.

    python -m lab.studies.input_size_probe --data ../shared/data/isbi2015 --checkpoint ft_scale/last.pt \
        --local bundle_local96/model_int8.local.onnx [--sizes 384,320,288,256] [--split val] [--out DIR]

HRNet is fully convolutional, so a checkpoint exports at any input that is a multiple of 32; the compute scales
with the pixel count. Each size is exported to an FP32 ONNX file with its own metadata and run through
``sdk.Detector`` (onnxruntime, 2 threads); the local stage rescales its patches to the first stage's size
(:class:`sdk.local_stage.LocalStage`), so its patches keep the scale it was trained on. ``--split val`` is the 30
training images the bundled model held out (for choosing); pass the 120-image local stage there, since the
bundled one saw them. Writes ``input_size_probe.json`` and ``.md``: MRE mm, SDR@2mm and Detector p50 per size.
Latencies here are FP32 and measured while the images are scored: only their ratios mean anything.
"""
from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import click
import numpy as np


@click.command()
@click.option("--data", "data_dir", type=click.Path(exists=True, path_type=Path), required=True)
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True)
@click.option("--local", "local_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Local-stage file to run behind each size (omit: first stage only).")
@click.option("--sizes", default="384,320,288,256", show_default=True)
@click.option("--split", default="val", show_default=True, help="'val' (30 held-out training images) or a split.")
@click.option("--n", "n_images", type=int, default=30, show_default=True)
@click.option("--threads", type=int, default=2, show_default=True)
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("lab/results/speed"),
              show_default=True)
def main(data_dir, checkpoint, local_path, sizes, split, n_images, threads, out_dir):
    """Accuracy and relative cost of a first stage at smaller inputs."""
    from convert.export import checkpoint_meta, export_onnx
    from sdk import Detector
    from sdk.image_io import load_image
    from sdk.metrics import radial_errors
    from sdk.schemas import ISBI19
    from train.checkpoint import load_checkpoint
    from train.datasets import load_folder
    from train.trainer import split_train_val

    sizes = [int(s) for s in sizes.split(",") if s]
    if any(s % 32 for s in sizes):
        raise click.BadParameter(f"input sizes must be multiples of 32 (HRNet's stride), got {sizes}")
    if split == "val":
        samples = split_train_val(load_folder(data_dir, ISBI19, split=["train"]), 30, 0)[1][:n_images]
    else:
        samples = load_folder(data_dir, ISBI19, split=[split])[:n_images]
    grays = [load_image(s.image).gray for s in samples]
    ck = load_checkpoint(checkpoint)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in sizes:
        onnx_path = out_dir / f"probe_{size}.onnx"
        export_onnx(ck, onnx_path, replace(checkpoint_meta(ck), input_h=size, input_w=size))
        for refine in ([False, local_path] if local_path else [False]):
            det = Detector(onnx_path, backend="onnxruntime", threads=threads, auto_view=False, local_stage=refine)
            errs, times = [], []
            for s, g in zip(samples, grays):
                t = time.perf_counter()
                xy = det(g).xy
                times.append((time.perf_counter() - t) * 1000)
                errs.append(radial_errors(xy[None], s.points[None])[0] * s.spacing)
            e = np.stack(errs)
            rows.append({"input": size, "stages": 2 if refine else 1, "mre_mm": float(e.mean()),
                         "sdr2_pct": float((e < 2).mean() * 100), "p50_ms_fp32": float(np.median(times)),
                         "per_landmark_mm": dict(zip(ISBI19.names, e.mean(0).round(3).tolist()))})
            click.echo(f"input {size} {'two stages' if refine else 'first only'}: MRE {e.mean():.3f} mm "
                       f"SDR@2mm {rows[-1]['sdr2_pct']:.1f}% p50 {rows[-1]['p50_ms_fp32']:.0f} ms (FP32)")
        onnx_path.unlink()
    res = {"checkpoint": str(checkpoint), "local_stage": str(local_path) if local_path else None, "split": split,
           "images": len(samples), "rows": rows}
    (out_dir / "input_size_probe.json").write_text(json.dumps(res, indent=2))
    lines = [f"`{checkpoint}` exported at each input size (FP32, onnxruntime, {threads} threads), {len(samples)} "
             f"{split} images, senior labels; local stage: `{local_path}`.", "",
             "| input | stages | MRE mm | SDR@2mm | Detector p50 ms (FP32) |", "|---|---|---|---|---|"]
    lines += [f"| {r['input']} | {r['stages']} | {r['mre_mm']:.3f} | {r['sdr2_pct']:.1f}% | {r['p50_ms_fp32']:.0f} |"
              for r in rows]
    (out_dir / "input_size_probe.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
