"""Where the large errors are, and how many of them are points the two clinicians themselves disagree on.

    python -m lab.studies.error_tail --data ../shared/data/isbi2015 [--model FILE] [--val-refine FILE] [--out DIR]

For validation (the 30 training images the bundled first stage held out; both stages, with ``--val-refine``: a
local stage that never saw them either), Test1 and Test2 it runs ``sdk.Detector`` and splits the error against the
senior's labels into its tail (points > 4 mm off) and the rest. Each point also gets the two clinicians' own
disagreement on it: senior - junior after taking out that landmark's mean senior - junior offset on the split (the
habit; ``label_drift.py``), so what is left is per-image disagreement. A point is *disputed* when that is > 4 mm.

The noise floor is a rough, assumption-laden figure: if both clinicians' per-image errors were independent and of
equal spread, each would be ``residual disagreement / sqrt(2)`` from the truth (radial means add in quadrature
for 2-D Gaussians), and a perfect model would score about that against either of them. Reporting only: nothing
here is used to choose a model (the offsets are fitted on the labels they are scored on).

Writes ``error_tail.json`` and ``error_tail.md``.
"""
from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

TAIL_MM = 4.0
AGREE_MM = 2.0


def tail_figures(model_err: np.ndarray, disagreement: np.ndarray, err_junior: np.ndarray, names) -> dict:
    """(N, K) mm arrays: the model vs senior, the clinicians' residual disagreement, the model vs the junior moved
    onto the senior's habit -> the tail summary and a per-landmark table."""
    tail = model_err > TAIL_MM
    disputed = disagreement > TAIL_MM
    agree = disagreement <= AGREE_MM
    res = {
        "n_points": int(model_err.size),
        "mre_mm": float(model_err.mean()),
        "tail_points_pct": float(tail.mean() * 100),
        "tail_share_of_error_pct": float(model_err[tail].sum() / model_err.sum() * 100),
        "tail_disputed": int((tail & disputed).sum()),
        "tail_n": int(tail.sum()),
        "tail_near_junior": int((tail & (err_junior <= AGREE_MM)).sum()),
        "disputed_points_pct": float(disputed.mean() * 100),
        "mre_where_clinicians_agree_mm": float(model_err[agree].mean()),
        "agree_points_pct": float(agree.mean() * 100),
        "mre_without_disputed_mm": float(model_err[~disputed].mean()),
        "residual_disagreement_mm": float(disagreement.mean()),
        "noise_floor_mm": float(disagreement.mean() / np.sqrt(2)),
    }
    res["per_landmark"] = {
        n: {"mre_mm": round(float(model_err[:, k].mean()), 3), "tail_n": int(tail[:, k].sum()),
            "tail_disputed": int((tail & disputed)[:, k].sum()),
            "residual_disagreement_mm": round(float(disagreement[:, k].mean()), 3)}
        for k, n in enumerate(names)}
    return res


@click.command()
@click.option("--data", "data_dir", type=click.Path(path_type=Path, exists=True), required=True)
@click.option("--model", type=click.Path(path_type=Path), default=None, help="First-stage file (default: bundled).")
@click.option("--val-refine", type=click.Path(path_type=Path, exists=True), default=None,
              help="Local stage for the validation images (one that never saw them); without it validation runs "
                   "the first stage alone.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("lab/results/labels"))
@click.option("--threads", type=int, default=2, show_default=True)
def main(data_dir, model, val_refine, out_dir, threads):
    from sdk import Detector
    from sdk.schemas import get_schema
    from train.data.labels import annotator_offsets
    from train.datasets import load_folder
    from train.trainer import split_train_val

    sch = get_schema("isbi19")
    names = list(sch.names)
    val_name = "val, both stages" if val_refine else "val, first stage"
    runs = {val_name: ("train", Detector(model, threads=threads, local_stage=str(val_refine) if val_refine else False)),
            "test1, both stages": ("test1", Detector(model, threads=threads)),
            "test2, both stages": ("test2", Detector(model, threads=threads))}
    results = {}
    for key, (split, det) in runs.items():
        senior = load_folder(data_dir, sch, split=[split], annotators=("senior",))
        junior = {s.id: s for s in load_folder(data_dir, sch, split=[split], annotators=("junior",))}
        if split == "train":
            senior = split_train_val(senior, 30, 0)[1]
        junior = [junior[s.id] for s in senior]
        habit = annotator_offsets(senior, junior, [s.id for s in senior])  # (K, 2) mm, this split's habit
        pred = np.array([(det(s.image).xy - s.points) * s.spacing for s in senior])        # model - senior, mm
        jun = np.array([(j.points - s.points) * s.spacing for s, j in zip(senior, junior)]) + habit
        results[key] = tail_figures(np.linalg.norm(pred, axis=2), np.linalg.norm(jun, axis=2),
                                    np.linalg.norm(pred - jun, axis=2), names)
        results[key]["n_images"] = len(senior)

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "error_tail.json").write_text(json.dumps({"model": str(model or "bundled"),
                                                         "val_refine": str(val_refine or ""),
                                                         "results": results}, indent=1))
    lines = ["# The error's tail and the clinicians' disagreement", "",
             f"`python -m lab.studies.error_tail --data ../shared/data/isbi2015"
             f"{' --val-refine ' + val_refine.name if val_refine else ''}`. Senior labels. Tail: points > "
             f"{TAIL_MM:g} mm off. Disputed: the two clinicians > {TAIL_MM:g} mm apart on that point after the "
             f"split's mean per-landmark habit is taken out. Noise floor: residual disagreement / sqrt(2).", "",
             "| split | MRE mm | tail points | tail share of the error | tail points disputed | tail points within "
             f"{AGREE_MM:g} mm of the junior | MRE where the clinicians agree (<= {AGREE_MM:g} mm; share of points) | "
             "MRE without disputed points | residual disagreement mm | noise floor mm |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for key, r in results.items():
        lines.append(f"| {key} ({r['n_images']}) | {r['mre_mm']:.3f} | {r['tail_points_pct']:.1f}% | "
                     f"{r['tail_share_of_error_pct']:.0f}% | {r['tail_disputed']}/{r['tail_n']} | "
                     f"{r['tail_near_junior']}/{r['tail_n']} | {r['mre_where_clinicians_agree_mm']:.3f} "
                     f"({r['agree_points_pct']:.0f}%) | {r['mre_without_disputed_mm']:.3f} | "
                     f"{r['residual_disagreement_mm']:.2f} | {r['noise_floor_mm']:.2f} |")
    keys = list(results)
    lines += ["", "Per landmark: MRE mm, tail points (of them disputed), residual disagreement mm.", "",
              "| landmark | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for n in names:
        cells = []
        for key in keys:
            p = results[key]["per_landmark"][n]
            cells.append(f"{p['mre_mm']:.2f}, {p['tail_n']} ({p['tail_disputed']}), "
                         f"{p['residual_disagreement_mm']:.2f}")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    (out_dir / "error_tail.md").write_text("\n".join(lines) + "\n")
    click.echo("\n".join(lines))


if __name__ == "__main__":
    main()
