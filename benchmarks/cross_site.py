"""How the Detector does on other clinics' kind of images, and whether its flags catch its misses.

    python -m benchmarks.cross_site --data ../shared/data/isbi2015 [--model FILE] [--n-variant 25] [--out DIR]

Test1 and Test2 as they are, scored against the mean of both clinicians first, then challenge.csv (the official
ground truth), senior and junior; then the first ``--n-variant`` images of each split under each cross-site
variant (:mod:`train.data.variants`: another machine's field and spacing, a wider field, a second ruler, burned-in
text, collimation, tone curves, ...), scored against the mean labels. For every point: its error, whether it is
flagged and its reliability. Reports MRE/SDR, points more than 10 mm off (and how many of those are not flagged),
and the AUROC of "low reliability -> error > 4 mm", pooled over everything. Writes ``cross_site.json`` / ``.md``.
"""
from __future__ import annotations

import json
import platform
from pathlib import Path

import click
import numpy as np

LABEL_SETS = {"mean": ("senior", "junior"), "challenge": ("challenge",), "senior": ("senior",), "junior": ("junior",)}


def _counts(values: np.ndarray) -> dict:
    """{value: how often}, most frequent first."""
    names, n = np.unique(values.astype(str), return_counts=True)
    return {str(k): int(c) for k, c in sorted(zip(names, n), key=lambda t: -t[1])}


def _summary(err: np.ndarray) -> dict:
    return {"mre_mm": float(err.mean()), "sd_mm": float(err.std()),
            **{f"sdr{t}": float((err <= t).mean() * 100) for t in (2.0, 2.5, 3.0, 4.0)}}


@click.command()
@click.option("--data", "data_dir", type=click.Path(exists=True, path_type=Path), required=True)
@click.option("--model", type=click.Path(exists=True, path_type=Path), default=None, help="Default: bundled model.")
@click.option("--local-stage", default="auto", show_default=True, help="'auto', 'off', or a .local.onnx file.")
@click.option("--backend", default="onnxruntime", show_default=True)
@click.option("--threads", type=int, default=2, show_default=True)
@click.option("--splits", default="test1,test2", show_default=True)
@click.option("--n-variant", type=int, default=25, show_default=True, help="Images per split for each variant.")
@click.option("--variants", default="", help="Variant names or prefixes (default: the cross-site set).")
@click.option("--repair/--no-repair", default=True, show_default=True,
              help="Re-read implausible landmarks where the others put them (Detector(repair=)).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("results/cross_site"),
              show_default=True)
def main(data_dir, model, local_stage, backend, threads, splits, n_variant, variants, repair, out_dir):
    """Accuracy on ISBI Test1/Test2 and on cross-site variants, gross errors, and whether the flags catch them."""
    from sdk import Detector
    from sdk.image_io import load_image
    from sdk.metrics import auroc
    from sdk.schemas import ISBI19
    from train.data.variants import CROSS_SITE, VARIANTS, in_frame
    from train.datasets import load_folder

    from .robustness import pick_variants

    det = Detector(model, backend=backend, threads=threads, repair=repair,
                   local_stage={"auto": True, "off": False}.get(local_stage, local_stage))
    names = [v for v in (pick_variants(variants) if variants else CROSS_SITE) if v != "as is"]
    rows, pooled = [], {"err": [], "flag": [], "rel": [], "score": [], "repaired": [], "why": [], "landmark": []}

    def record(res, err):
        pooled["err"].append(err)
        pooled["flag"].append(res.flagged)
        pooled["repaired"].append(np.array(res.repaired or [False] * len(res.names), bool))
        pooled["rel"].append(res.reliability if res.reliability is not None else res.scores)
        pooled["score"].append(res.scores)
        pooled["why"].append(np.array(list(res.point_flags) if res.point_flags else [""] * len(res.names), object))
        pooled["landmark"].append(np.array(res.names, object))

    per_landmark = {}
    for split in [s for s in splits.split(",") if s]:
        sets = {k: load_folder(data_dir, ISBI19, split=[split], annotators=a) for k, a in LABEL_SETS.items()
                if all((data_dir / f"{x}.csv").is_file() for x in a)}
        base = sets["mean"]
        errs = {k: [] for k in sets}
        flags, grays = [], []
        for i, s in enumerate(base):
            g = load_image(s.image).gray
            if i < n_variant:
                grays.append(g)
            res = det(g)
            flags.append(res.flagged)
            for k, ss in sets.items():
                errs[k].append(np.linalg.norm(res.xy - ss[i].points, axis=1) * ss[i].spacing)
            record(res, errs["mean"][-1])
        e_mean = np.stack(errs["mean"])
        fl = np.stack(flags)
        per_landmark[split] = dict(zip(ISBI19.names, np.round(e_mean.mean(axis=0), 3).tolist()))
        row = {"split": split, "variant": "as is", "images": len(base),
               "labels": {k: _summary(np.concatenate(v)) for k, v in errs.items()},
               "over_10mm": int((e_mean > 10).sum()), "over_10mm_unflagged": int(((e_mean > 10) & ~fl).sum()),
               "flagged_points": int(fl.sum()), "flagged_within_2mm": int((fl & (e_mean <= 2)).sum()),
               "points": int(fl.size)}
        rows.append(row)
        click.echo(f"{split} as is: mean {row['labels']['mean']['mre_mm']:.3f} mm, "
                   + ", ".join(f"{k} {v['mre_mm']:.3f}" for k, v in row["labels"].items() if k != "mean")
                   + f"; > 10 mm: {row['over_10mm']} ({row['over_10mm_unflagged']} unflagged)")
        for v in names if grays else ():          # --n-variant 0: the splits as they are only
            fimg, fpts, factor = VARIANTS[v]
            e_all, f_all = [], []
            for s, g in zip(base, grays):
                img = fimg(g)
                res = det(img)
                gt = fpts(s.points, g.shape)
                inside = in_frame(gt, img.shape)
                e = np.linalg.norm(res.xy - gt, axis=1) * s.spacing * factor
                record(res, np.where(inside, e, np.nan))
                e_all.append(e[inside])
                f_all.append(res.flagged[inside])
            e, f = np.concatenate(e_all), np.concatenate(f_all)
            rows.append({"split": split, "variant": v, "images": len(grays), "labels": {"mean": _summary(e)},
                         "over_10mm": int((e > 10).sum()), "over_10mm_unflagged": int(((e > 10) & ~f).sum()),
                         "flagged_points": int(f.sum()), "flagged_within_2mm": int((f & (e <= 2)).sum()),
                         "points": int(f.size)})
            click.echo(f"{split} {v}: mean {rows[-1]['labels']['mean']['mre_mm']:.3f} mm; > 10 mm: "
                       f"{rows[-1]['over_10mm']} ({rows[-1]['over_10mm_unflagged']} unflagged)")
    err, flag = np.concatenate(pooled["err"]), np.concatenate(pooled["flag"])
    rel, score = np.concatenate(pooled["rel"]), np.concatenate(pooled["score"])
    fixed = np.concatenate(pooled["repaired"])
    why, landmark = np.concatenate(pooled["why"]), np.concatenate(pooled["landmark"])
    ok = ~np.isnan(err)
    err, flag, rel, score, fixed, why, landmark = (a[ok] for a in (err, flag, rel, score, fixed, why, landmark))
    right = flag & (err <= 2)    # false alarms: what to cut without losing the misses
    far = err > 4.0
    total = {"points": int(len(err)), "over_4mm": int(far.sum()),
             "auroc_reliability": auroc(1 - rel, far) if det.local is not None else None,
             "auroc_heatmap_score": auroc(1 - score, far),
             "auroc_flag": auroc(flag.astype(float), far),
             "flagged": int(flag.sum()), "flagged_precision_over_4mm": float(far[flag].mean()) if flag.any() else None,
             "recall_over_4mm": float(flag[far].mean()) if far.any() else None,
             "over_10mm": int((err > 10).sum()), "over_10mm_unflagged": int(((err > 10) & ~flag).sum()),
             "flagged_within_2mm": int((flag & (err <= 2)).sum()), "repaired": int(fixed.sum()),
             "repaired_within_4mm": int((fixed & (err <= 4)).sum()),
             "flagged_by_reason": _counts(why[flag]),
             "flagged_over_4mm_by_reason": _counts(why[flag & far]),
             "flagged_within_2mm_by_reason": _counts(why[right]),
             "flagged_within_2mm_by_landmark": _counts(landmark[right])}
    click.echo(json.dumps(total, indent=2))
    out_dir.mkdir(parents=True, exist_ok=True)
    res = {"model": str(det.model_path), "local_stage": det.info["local_stage"], "backend": det.info["backend"],
           "repair": repair,
           "cpu": platform.processor() or platform.machine(), "rows": rows, "pooled": total,
           "per_landmark_mean_labels": per_landmark}
    (out_dir / "cross_site.json").write_text(json.dumps(res, indent=2))
    lines = [f"`{Path(res['model']).name}` + local stage `{Path(res['local_stage'] or '-').name}`, {res['backend']}; "
             f"errors against the mean of both clinicians unless named.", "",
             "| split | variant | images | MRE mean | challenge | senior | junior | SDR@2 mean | > 10 mm | unflagged | "
             "flagged | flagged within 2 mm |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lab = r["labels"]
        cell = [f"{lab[k]['mre_mm']:.3f}" if k in lab else "" for k in ("mean", "challenge", "senior", "junior")]
        lines.append(f"| {r['split']} | {r['variant']} | {r['images']} | " + " | ".join(cell)
                     + f" | {lab['mean']['sdr2.0']:.1f}% | {r['over_10mm']} | {r['over_10mm_unflagged']} | "
                     f"{r['flagged_points']} | {r['flagged_within_2mm']} |")
    lines += ["", "Pooled over every row: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                                                       for k, v in total.items() if not isinstance(v, dict))]
    lines += [f"{k.replace('_', ' ')}: " + ", ".join(f"{n} {c}" for n, c in v.items())
              for k, v in total.items() if isinstance(v, dict)]
    (out_dir / "cross_site.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
