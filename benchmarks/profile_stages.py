"""Where one ``Detector`` call spends its time: read, decode, grey, resize, normalise, model, decode heatmaps, and
the local stage's fine image, patches, model and decode when the model has one.

    python -m benchmarks.profile_stages [--model FILE] [--backend openvino] [--threads 2] IMAGE...

Each stage is the SDK's own function, timed in interleaved rounds (median, ms); ``sum`` is their total and
``end-to-end`` one ``Detector.__call__`` on the same file. Writes ``stages.json`` and ``stages.md`` to ``--out``.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path

import click
import cv2


def profile_image(det, image: Path, runs: int) -> dict:
    """Median ms of each stage. Stages run in rounds (each stage once per round) so that the shared machine's
    slow spells fall on all of them alike, rather than on whichever stage was timed then."""
    from sdk.decode import decode_to_image
    from sdk.image_io import REDUCE_MARGIN, load_image
    from sdk.preprocess import letterbox_geometry, normalize, pad_to_input, resize_for_letterbox

    m = det.meta
    data = Path(image).read_bytes()
    # the Detector's own decode: reduced for large JPEGs (fast_decode), keeping the local stage's fine scale
    keep = det.local.factor if det.local is not None else REDUCE_MARGIN
    reduce_for = m.input_hw if det.fast_decode else None
    loaded = load_image(data, reduce_for, keep)
    gray, red = loaded.gray, loaded.reduction
    lb = letterbox_geometry(loaded.full_hw, m.input_hw)
    small = resize_for_letterbox(gray, lb, red)
    x = normalize(pad_to_input(small, lb, m.pad_value), m.mean, m.std, m.channels)
    hm = det.run_network(x[None])
    stages = {
        "read file": lambda: Path(image).read_bytes(),
        f"decode (1/{red})": lambda: load_image(data, reduce_for, keep),
        "letterbox resize": lambda: resize_for_letterbox(gray, lb, red),
        "pad + normalise": lambda: normalize(pad_to_input(small, lb, m.pad_value), m.mean, m.std, m.channels),
        "model": lambda: det.run_network(x[None]),
        "decode heatmaps": lambda: decode_to_image(hm[0], lb, m.heatmap_stride, m.sigma, m.decoder),
    }
    if det.local is not None:   # the local stage (sdk.local_stage), when the model has one
        from sdk.local_stage import local_inputs, local_points

        loc = det.local
        xy = decode_to_image(hm[0], lb, m.heatmap_stride, m.sigma, m.decoder)[0]
        fine = loc.fine(gray, lb, red)
        xp, mats = local_inputs(fine, xy, loc.params)
        hp = loc.run_network(xp)
        stages.update({
            "local: fine image": lambda: loc.fine(gray, lb, red),
            "local: cut patches": lambda: local_inputs(fine, xy, loc.params),
            "local: model": lambda: loc.run_network(xp),
            "local: decode": lambda: local_points(hp, mats, fine, loc.params, xy),
        })
    read = det._read(hm[0], lb, loaded, None)
    stages["shape check and flags"] = lambda: det._assess(read)
    stages["end-to-end"] = lambda: det(image)
    times = {k: [] for k in stages}
    for r in range(runs + 2):
        for k, fn in stages.items():
            t = time.perf_counter()
            fn()
            if r >= 2:  # two warm-up rounds
                times[k].append((time.perf_counter() - t) * 1000)
    row = {k: statistics.median(v) for k, v in times.items() if k != "end-to-end"}
    row["sum"] = sum(row.values())
    row["end-to-end"] = statistics.median(times["end-to-end"])
    return {"image": str(image), "size": [int(loaded.full_hw[1]), int(loaded.full_hw[0])], "ms": row}


@click.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--model", type=click.Path(exists=True, path_type=Path), default=None, help="Default: bundled model.")
@click.option("--backend", default="openvino", show_default=True)
@click.option("--threads", type=int, default=2, show_default=True)
@click.option("--runs", type=int, default=15, show_default=True)
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("results/stages"), show_default=True)
def main(images, model, backend, threads, runs, out_dir):
    """Per-stage timing of Detector calls."""
    from sdk import Detector

    cv2.setNumThreads(threads)
    det = Detector(model, backend=backend, threads=threads)
    rows = [profile_image(det, p, runs) for p in images]
    res = {"model": str(det.model_path), "backend": det.info["backend"], "threads": det.info["threads"],
           "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs",
           "opencv_threads": cv2.getNumThreads(), "rows": rows}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "stages.json").write_text(json.dumps(res, indent=2))
    stages = list(rows[0]["ms"])
    lines = [f"Model `{Path(res['model']).name}`, {res['backend']}, {res['threads']} threads; median of {runs} runs, ms.",
             "", "| stage | " + " | ".join(f"{Path(r['image']).name} ({r['size'][0]}x{r['size'][1]})" for r in rows)
             + " |", "|---|" + "---|" * len(rows)]
    for s in stages:
        lines.append(f"| {s} | " + " | ".join(f"{r['ms'][s]:.1f}" for r in rows) + " |")
    (out_dir / "stages.md").write_text("\n".join(lines) + "\n")
    click.echo("\n".join(lines))


if __name__ == "__main__":
    main()
