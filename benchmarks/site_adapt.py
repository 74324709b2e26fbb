"""A clinic's conventions from a few of its labelled images: ISBI Test1 and Test2 each taken as "another site".

    python -m benchmarks.site_adapt --data ../shared/data/isbi2015 [--n-adapt 10] [--seeds 5] [--out DIR]

For each split: the Detector reads every image once (no site); then, for each seed, ``--n-adapt`` images drawn at
random make a site profile (:func:`sdk.site.fit_site`, against the mean of both clinicians) and the split's other
images are scored before and after applying it: MRE, SDR@2mm, and the AUROC of "low reliability -> error > 4 mm".
Writes ``site_adapt.json`` / ``.md``.
"""
from __future__ import annotations

import json
import platform
from pathlib import Path

import click
import numpy as np


def _scores(pred, truth, mm, rel):
    from sdk.metrics import auroc

    err = np.linalg.norm(pred - truth, axis=2) * mm[:, None]
    far = err > 4.0
    return {"mre_mm": float(err.mean()), "sdr2": float((err <= 2).mean() * 100),
            "auroc_reliability": auroc(1 - rel.ravel(), far.ravel()) if far.any() else None,
            "per_landmark_mm": err.mean(axis=0).round(3).tolist()}


@click.command()
@click.option("--data", "data_dir", type=click.Path(exists=True, path_type=Path), required=True)
@click.option("--splits", default="test1,test2", show_default=True)
@click.option("--n-adapt", type=int, default=10, show_default=True)
@click.option("--seeds", type=int, default=5, show_default=True)
@click.option("--backend", default="onnxruntime", show_default=True)
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("results/site_adapt"),
              show_default=True)
def main(data_dir, splits, n_adapt, seeds, backend, out_dir):
    """Site profiles from a few images of ISBI Test1 / Test2, scored on the rest."""
    from sdk import Detector
    from sdk.schemas import ISBI19
    from sdk.site import fit_site
    from train.datasets import load_folder

    det = Detector(backend=backend)
    report = {"cpu": platform.processor() or platform.machine(), "n_adapt": n_adapt, "seeds": seeds, "splits": {}}
    for split in splits.split(","):
        samples = load_folder(data_dir, ISBI19, split=[split], annotators=("senior", "junior"))
        res = det.batch([s.image for s in samples])
        pred = np.stack([r.xy for r in res])
        rel = np.stack([r.reliability for r in res])
        truth = np.stack([s.points for s in samples])
        mm = np.array([s.spacing for s in samples])
        runs = []
        for seed in range(seeds):
            idx = np.random.default_rng(seed).permutation(len(samples))
            fit, rest = idx[:n_adapt], idx[n_adapt:]
            prof = fit_site(f"{split}-{seed}", ISBI19.id, ISBI19.names, pred[fit], truth[fit], mm[fit])
            after = np.stack([prof.apply(p) for p in pred[rest]])
            runs.append({"seed": seed, "gate": prof.gate, "before": _scores(pred[rest], truth[rest], mm[rest], rel[rest]),
                         "after": _scores(after, truth[rest], mm[rest], rel[rest])})
        mean = {k: {m: float(np.mean([r[k][m] for r in runs if r[k][m] is not None]))
                    for m in ("mre_mm", "sdr2", "auroc_reliability")} for k in ("before", "after")}
        report["splits"][split] = {"images": len(samples), "scored_per_seed": len(samples) - n_adapt,
                                   "mean": mean, "runs": runs}
        click.echo(f"{split}: {n_adapt} images adapt, {len(samples) - n_adapt} scored, {seeds} seeds: MRE "
                   f"{mean['before']['mre_mm']:.3f} -> {mean['after']['mre_mm']:.3f} mm, SDR@2mm "
                   f"{mean['before']['sdr2']:.1f} -> {mean['after']['sdr2']:.1f}%, reliability AUROC "
                   f"{mean['before']['auroc_reliability']:.3f} -> {mean['after']['auroc_reliability']:.3f}")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "site_adapt.json").write_text(json.dumps(report, indent=1))
    lines = [f"Site profiles from {n_adapt} images of each split (mean of {seeds} seeds; the rest scored against the "
             f"mean of both clinicians; bundled model, {backend}).", "",
             "| split | scored | MRE before | MRE after | SDR@2 before | SDR@2 after | AUROC before | AUROC after |",
             "|---|---|---|---|---|---|---|---|"]
    for split, d in report["splits"].items():
        b, a = d["mean"]["before"], d["mean"]["after"]
        lines.append(f"| {split} | {d['scored_per_seed']} | {b['mre_mm']:.3f} | {a['mre_mm']:.3f} | {b['sdr2']:.1f}% | "
                     f"{a['sdr2']:.1f}% | {b['auroc_reliability']:.3f} | {a['auroc_reliability']:.3f} |")
    (out_dir / "site_adapt.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
