"""How far the labels' own conventions move between ISBI's splits, and how much of the model's error that explains.

    python -m lab.studies.label_drift --data ../shared/data/isbi2015 [--model FILE] [--out DIR]

Three tables, per landmark, in mm (x right, y down):
- the mean senior - junior offset on train (001-150), Test1 and Test2: where the two orthodontists disagree by
  habit rather than by noise, and whether that habit stays the same across the splits;
- the mean offset (bias) of the model's points from the senior labels on the 30 validation images the bundled
  model never trained on (first stage alone: the local stage's final fit saw them), and on Test1 and Test2 (both
  stages);
- the MRE with each landmark's mean offset on that split taken out: an oracle, for reporting only (it is fitted
  on the very labels it is scored on). It says how much of the error is a shift of convention a model trained on
  001-150 cannot know about.

Writes ``label_drift.json`` and ``label_drift.md``.
"""
from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np


@click.command()
@click.option("--data", "data_dir", type=click.Path(path_type=Path, exists=True), required=True)
@click.option("--model", type=click.Path(path_type=Path), default=None, help="First-stage file (default: bundled).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("lab/results/labels"))
@click.option("--threads", type=int, default=2, show_default=True)
def main(data_dir, model, out_dir, threads):
    from sdk import Detector
    from sdk.schemas import get_schema
    from train.data.labels import point_offsets
    from train.datasets import load_folder
    from train.trainer import split_train_val

    sch = get_schema("isbi19")
    names = list(sch.names)
    load = {(sp, a): load_folder(data_dir, sch, split=[sp], annotators=(a,))
            for sp in ("train", "test1", "test2") for a in ("senior", "junior")}
    annot = {sp: point_offsets(load[(sp, "senior")], load[(sp, "junior")], [s.id for s in load[(sp, "senior")]])
             for sp in ("train", "test1", "test2")}

    first = Detector(model, threads=threads, local_stage=False)
    both = Detector(model, threads=threads)
    _, val = split_train_val(load[("train", "senior")], 30, 0)
    model_sets = {"val (first stage)": (first, val), "test1 (both stages)": (both, load[("test1", "senior")]),
                  "test2 (both stages)": (both, load[("test2", "senior")])}
    bias, summary = {}, {}
    for key, (det, samples) in model_sets.items():
        d = np.array([(det(s.image).xy - s.points) * s.spacing for s in samples])
        b = d.mean(axis=0)
        e, e0 = np.linalg.norm(d, axis=2), np.linalg.norm(d - b, axis=2)
        bias[key] = b
        summary[key] = {"n": len(samples), "mre_mm": float(e.mean()), "mre_bias_removed_mm": float(e0.mean()),
                        "sdr2": float((e <= 2).mean() * 100), "sdr2_bias_removed": float((e0 <= 2).mean() * 100),
                        "per_landmark_mre_mm": dict(zip(names, e.mean(0).round(3).tolist())),
                        "per_landmark_bias_removed_mm": dict(zip(names, e0.mean(0).round(3).tolist()))}

    out_dir.mkdir(parents=True, exist_ok=True)
    js = {"senior_minus_junior_mm": {sp: dict(zip(names, o.mean(0).round(3).tolist())) for sp, o in annot.items()},
          "senior_junior_mre_mm": {sp: float(np.linalg.norm(o, axis=2).mean()) for sp, o in annot.items()},
          "model_minus_senior_mm": {k: dict(zip(names, b.round(3).tolist())) for k, b in bias.items()},
          "summary": summary, "model": str(model or "bundled")}
    (out_dir / "label_drift.json").write_text(json.dumps(js, indent=1))

    def cell(v):
        return f"{v[0]:+.1f}, {v[1]:+.1f} ({np.hypot(*v):.1f})"

    lines = ["# Label conventions across ISBI's splits", "",
             "`python -m lab.studies.label_drift --data ../shared/data/isbi2015`. Mean offsets in mm as "
             "(x, y) and (length); x right, y down.", "",
             "| landmark | senior - junior, train | Test1 | Test2 | model - senior, val | Test1 | Test2 |",
             "|---|---|---|---|---|---|---|"]
    for k, n in enumerate(names):
        lines.append(f"| {n} | " + " | ".join(cell(annot[sp].mean(0)[k]) for sp in annot) + " | "
                     + " | ".join(cell(bias[key][k]) for key in bias) + " |")
    lines += ["", "senior-junior MRE: " + ", ".join(f"{sp} {v:.2f} mm" for sp, v in js["senior_junior_mre_mm"].items()),
              "", "| model vs senior | images | MRE mm | with each landmark's mean offset removed (oracle) | SDR@2 | "
              "oracle SDR@2 |", "|---|---|---|---|---|---|"]
    for key, s in summary.items():
        lines.append(f"| {key} | {s['n']} | {s['mre_mm']:.3f} | {s['mre_bias_removed_mm']:.3f} | {s['sdr2']:.1f}% | "
                     f"{s['sdr2_bias_removed']:.1f}% |")
    (out_dir / "label_drift.md").write_text("\n".join(lines) + "\n")
    click.echo("\n".join(lines))


if __name__ == "__main__":
    main()
