"""Would test-time augmentation buy accuracy? Shifted and zoomed copies of each model input, points averaged.

    python -m lab.studies.tta_probe --data ../shared/data/isbi2015 [--model FILE] [--val-count 30 --seed 0] [--out DIR]

Scored on the validation images the model was *not* trained on (the fixed 30-image carve of ISBI 001-150 that
``cephalo train`` makes with its default seed), never on Test1/Test2, so the answer can choose a recipe. Each copy
costs one more model run. Writes ``tta_probe.json``.
"""
from __future__ import annotations

import json
from pathlib import Path

import click
import cv2
import numpy as np


def _variants():
    out = {"identity": (1.0, 0.0, 0.0)}
    for d in (1, 2):                       # input px: a quarter and a half of a stride-4 heatmap cell
        for sx, sy in ((1, 1), (-1, -1), (1, -1), (-1, 1)):
            out[f"shift {d * sx:+d},{d * sy:+d} px"] = (1.0, float(d * sx), float(d * sy))
    for s in (0.9, 0.95, 1.05, 1.1):
        out[f"zoom x{s}"] = (s, 0.0, 0.0)
    return out


@click.command()
@click.option("--data", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True)
@click.option("--model", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="ONNX/IR model (default: the bundled one).")
@click.option("--val-count", default=30, show_default=True, help="The training run's --val-count.")
@click.option("--seed", default=0, show_default=True, help="The training run's --seed.")
@click.option("--threads", default=1, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=Path("lab/results/w32_384_bundled"))
def main(data, model, val_count, seed, threads, out):
    from sdk import Detector
    from sdk.decode import decode_heatmaps, heatmap_to_input
    from sdk.schemas import get_schema
    from train.datasets import load_folder
    from train.trainer import split_train_val

    det = Detector(model, threads=threads)
    m = det.meta
    _, val = split_train_val(load_folder(data, get_schema(m.schema.id), "auto", ["train"], ("senior",)),
                             val_count, seed)
    h, w = m.input_hw
    pad = (m.pad_value - m.mean) / m.std           # the letterbox's padding, normalised
    variants = _variants()
    preds = {k: [] for k in variants}
    for smp in val:
        x, lb, _ = det.preprocess(smp.image)
        for name, (s, dx, dy) in variants.items():
            # zoom about the input centre, then shift: p' = s p + t; undone on the decoded points
            t = np.array([(w - 1) / 2 * (1 - s) + dx, (h - 1) / 2 * (1 - s) + dy])
            a = np.array([[s, 0, t[0]], [0, s, t[1]]], np.float32)
            xi = np.stack([cv2.warpAffine(c, a, (w, h), flags=cv2.INTER_LINEAR, borderValue=float(pad)) for c in x])
            xy, _ = decode_heatmaps(det.run_network(xi[None])[0], m.sigma, m.decoder)
            preds[name].append(lb.to_image((heatmap_to_input(xy, m.heatmap_stride) - t) / s))
    gt = np.stack([s.points for s in val])
    sp = np.array([s.spacing for s in val])[:, None]
    P = {k: np.stack(v) for k, v in preds.items()}

    def mre(p):
        return round(float((np.linalg.norm(p - gt, axis=-1) * sp).mean()), 4)

    shifts = [k for k in P if k.startswith("shift")]
    combos = {
        "identity + 4 half-cell shifts (5 runs)": ["identity"] + [k for k in shifts if "2" in k],
        "identity + 4 quarter-cell shifts (5 runs)": ["identity"] + [k for k in shifts if "1" in k],
        "identity + zoom x0.9, x1.1 (3 runs)": ["identity", "zoom x0.9", "zoom x1.1"],
        "identity + zoom x0.95, x1.05 (3 runs)": ["identity", "zoom x0.95", "zoom x1.05"],
        f"all {len(P)} (mean)": list(P),
    }
    res = {"model": str(det.model_path), "images": [s.id for s in val], "labels": "senior",
           "single_mre_mm": {k: mre(v) for k, v in P.items()},
           "averaged_mre_mm": {k: mre(np.mean([P[n] for n in names], 0)) for k, names in combos.items()}}
    res["averaged_mre_mm"][f"all {len(P)} (median)"] = mre(np.median(np.stack(list(P.values())), 0))
    out.mkdir(parents=True, exist_ok=True)
    (out / "tta_probe.json").write_text(json.dumps(res, indent=1))
    for part in ("single_mre_mm", "averaged_mre_mm"):
        for k, v in res[part].items():
            click.echo(f"{k:45s} {v:.3f} mm")
    click.echo(f"-> {out / 'tta_probe.json'}")


if __name__ == "__main__":
    main()
