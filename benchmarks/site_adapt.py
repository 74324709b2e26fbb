"""A clinic's conventions from a few of its labelled images: ISBI Test1 and Test2 each taken as "another site".

    python -m benchmarks.site_adapt --data ../shared/data/isbi2015 [--n-adapt 10] [--seeds 5] [--ear-rod] [--out DIR]

For each split: the Detector reads every image once (no site); then, for each seed, ``--n-adapt`` images drawn at
random make a site profile (:func:`sdk.site.fit_site` with the images' looks, against the mean of both clinicians)
and the split's other images are scored before and after applying it: MRE, SDR@2mm, porion's error, and the AUROC of
"low reliability -> error > 4 mm". ``--ear-rod``: a site that marks machine porion, simulated: an ear rod's ring is
planted in every image (:func:`ear_rod_site`) and porion labelled on its top. Writes ``site_adapt.json`` / ``.md``.
"""
from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

from benchmarks.cpu_bench import cpu_name


def plant_ear_rod(gray: np.ndarray, centre, radius_px: float, width_px: float, gain: float = 30.0) -> np.ndarray:
    """``gray`` (uint8) with an ear rod's ring drawn as an X-ray shows it end-on: a bright annulus of ``radius_px``
    (Gaussian profile ``width_px``) centred at ``centre`` (x, y). For a site that marks machine porion."""
    r = int(np.ceil(radius_px + 4 * width_px))
    cx, cy = float(centre[0]), float(centre[1])
    x0, y0 = max(0, int(cx) - r), max(0, int(cy) - r)
    x1, y1 = min(gray.shape[1], int(cx) + r + 1), min(gray.shape[0], int(cy) + r + 1)
    yy, xx = np.mgrid[y0:y1, x0:x1]
    ring = gain * np.exp(-0.5 * ((np.hypot(xx - cx, yy - cy) - radius_px) / width_px) ** 2)
    out = gray.copy()
    out[y0:y1, x0:x1] = np.clip(gray[y0:y1, x0:x1] + ring, 0, 255).astype(np.uint8)
    return out


def ear_rod_site(grays, truth: np.ndarray, names, mm: np.ndarray, seed: int = 0):
    """Each image with an ear rod planted where a machine would put it, and labels whose porion is the ring's top:
    a site that marks machine porion. The rod sits 4 mm below and 1.5 mm behind anatomical porion on average and
    moves 1.5 mm (sd) from patient to patient; ring radius 6.5 mm."""
    rng = np.random.default_rng(seed)
    k = list(names).index("porion")
    out_grays, out_truth = [], truth.copy()
    for i, (g, red) in enumerate(grays):
        top = truth[i, k] + (np.array([-1.5, 4.0]) + rng.normal(0, 1.5, 2)) / mm[i]
        radius = 6.5 / mm[i]
        centre = top + np.array([0.0, radius])
        out_grays.append((plant_ear_rod(g, (centre - (red - 1) / 2) / red, radius / red, 0.5 / mm[i] / red), red))
        out_truth[i, k] = top
    return out_grays, out_truth


def dot_rod_site(grays, truth: np.ndarray, names, mm: np.ndarray, seed: int = 0):
    """Another clinic's ear rods, as that clinic's images show them: one bright ring per image, outer radius 4.6-5.1
    mm, rim 0.8 mm, a dot at its centre, its top from 2 mm behind to 8 mm in front of anatomical porion and from 5 mm
    above to 10 mm below it (face to the right); porion labelled on the ring's top."""
    import cv2

    rng = np.random.default_rng(seed)
    k = list(names).index("porion")
    out_grays, out_truth = [], truth.copy()
    for i, (g, red) in enumerate(grays):
        top = truth[i, k] + np.array([rng.uniform(-2.0, 8.0), rng.uniform(-5.0, 10.0)]) / mm[i]
        outer = rng.uniform(4.6, 5.1) / mm[i]
        centre = top + np.array([0.0, outer])
        f = 4
        r = int(np.ceil(outer)) + 4
        x0, y0 = int(centre[0]) - r, int(centre[1]) - r
        big = np.zeros(((2 * r + 1) * f, (2 * r + 1) * f), np.float32)
        c = (int(round((centre[0] - x0 + 0.5) * f)), int(round((centre[1] - y0 + 0.5) * f)))
        cv2.circle(big, c, int(round(outer * f)), 1.0, -1)
        cv2.circle(big, c, int(round((outer - 0.8 / mm[i]) * f)), 0.0, -1)
        cv2.circle(big, c, int(round(0.6 / mm[i] * f)), 1.0, -1)
        small = cv2.resize(big, (2 * r + 1, 2 * r + 1), interpolation=cv2.INTER_AREA) * 60.0
        out = g.astype(np.float32)
        ys, xs = slice(max(0, y0), y0 + 2 * r + 1), slice(max(0, x0), x0 + 2 * r + 1)
        sub = small[max(0, y0) - y0:, max(0, x0) - x0:][: out[ys, xs].shape[0], : out[ys, xs].shape[1]]
        out[ys, xs] += sub
        out_grays.append((np.clip(out, 0, 255).astype(np.uint8), red))
        out_truth[i, k] = top
    return out_grays, out_truth


def _scores(pred, truth, mm, rel):
    from sdk.metrics import auroc
    from sdk.schemas import ISBI19

    err = np.linalg.norm(pred - truth, axis=2) * mm[:, None]
    far = err > 4.0
    return {"mre_mm": float(err.mean()), "sdr2": float((err <= 2).mean() * 100),
            "porion_mm": float(err[:, list(ISBI19.names).index("porion")].mean()),
            "auroc_reliability": auroc(1 - rel.ravel(), far.ravel()) if far.any() else None,
            "per_landmark_mm": err.mean(axis=0).round(3).tolist()}


@click.command()
@click.option("--data", "data_dir", type=click.Path(exists=True, path_type=Path), required=True)
@click.option("--splits", default="test1,test2", show_default=True)
@click.option("--n-adapt", type=int, default=10, show_default=True)
@click.option("--seeds", type=int, default=5, show_default=True)
@click.option("--backend", default="onnxruntime", show_default=True)
@click.option("--ear-rod", type=click.Choice(["none", "isbi", "dot"]), default="none", show_default=True,
              help="A simulated site that marks machine porion on a planted ear rod: isbi (a faint ring, radius 6.5 "
                   "mm) or dot (another clinic's: one bright ring with a dot, outer radius 4.6-5.1 mm).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("results/site_adapt"),
              show_default=True)
def main(data_dir, splits, n_adapt, seeds, backend, ear_rod, out_dir):
    """Site profiles from a few images of ISBI Test1 / Test2, scored on the rest."""
    from sdk import Detector
    from sdk.image_io import load_image
    from sdk.schemas import ISBI19
    from sdk.site import fit_site
    from train.datasets import load_folder

    det = Detector(backend=backend)
    report = {"cpu": cpu_name()["cpu"], "n_adapt": n_adapt, "seeds": seeds, "ear_rod": ear_rod, "splits": {}}
    for split in splits.split(","):
        samples = load_folder(data_dir, ISBI19, split=[split], annotators=("senior", "junior"))
        truth = np.stack([s.points for s in samples])
        mm = np.array([s.spacing for s in samples])
        images = [s.image for s in samples]
        if ear_rod != "none":     # planted in the full-size images, which the Detector then reads as arrays
            plant = ear_rod_site if ear_rod == "isbi" else dot_rod_site
            grays, truth = plant([(load_image(im).gray, 1) for im in images], truth, ISBI19.names, mm)
            images = [g for g, _ in grays]
        else:
            grays = [(loaded.gray, loaded.reduction) for loaded in (det.preprocess(im)[2] for im in images)]
        res = det.batch(images)
        pred = np.stack([r.xy for r in res])
        rel = np.stack([r.reliability for r in res])
        rods = np.array([r.ear_rods.machine_porion if r.ear_rods is not None else (np.nan, np.nan) for r in res])
        k = list(ISBI19.names).index("porion")
        sn = np.linalg.norm(pred[:, 1] - pred[:, 0], axis=1)
        runs = []
        for seed in range(seeds):
            idx = np.random.default_rng(seed).permutation(len(samples))
            fit, rest = idx[:n_adapt], idx[n_adapt:]
            prof = fit_site(f"{split}-{seed}", ISBI19.id, ISBI19.names, pred[fit], truth[fit], mm[fit],
                            grays=[grays[i] for i in fit], machine=rods[fit])
            offsets = np.stack([prof.apply(pred[i]) for i in rest])
            after = np.stack([prof.apply(pred[i], *grays[i]) for i in rest])
            if prof.porion == "machine":    # as the Detector places it: the rods' top where found, else the offset
                found = np.isfinite(rods[rest]).all(axis=1)
                after[found, k] = rods[rest][found] + np.asarray(prof.machine_offset) * sn[rest][found, None]
            runs.append({"seed": seed, "looks": sorted(prof.looks), "porion": prof.report.get("porion"),
                         "rods_found": int(np.isfinite(rods[rest]).all(axis=1).sum()),
                         "before": _scores(pred[rest], truth[rest], mm[rest], rel[rest]),
                         "offsets_only": _scores(offsets, truth[rest], mm[rest], rel[rest]),
                         "after": _scores(after, truth[rest], mm[rest], rel[rest])})
        mean = {k: {m: float(np.mean([r[k][m] for r in runs if r[k][m] is not None]))
                    for m in ("mre_mm", "sdr2", "porion_mm", "auroc_reliability")}
                for k in ("before", "offsets_only", "after")}
        report["splits"][split] = {"images": len(samples), "scored_per_seed": len(samples) - n_adapt,
                                   "mean": mean, "runs": runs}
        click.echo(f"{split}: {n_adapt} images adapt, {len(samples) - n_adapt} scored, {seeds} seeds: MRE "
                   f"{mean['before']['mre_mm']:.3f} -> {mean['after']['mre_mm']:.3f} mm, SDR@2mm "
                   f"{mean['before']['sdr2']:.1f} -> {mean['after']['sdr2']:.1f}%, reliability AUROC "
                   f"{mean['before']['auroc_reliability']:.3f} -> {mean['after']['auroc_reliability']:.3f}; porion "
                   f"{mean['before']['porion_mm']:.2f} -> {mean['offsets_only']['porion_mm']:.2f} (offsets) -> "
                   f"{mean['after']['porion_mm']:.2f} mm; looks kept: {[r['looks'] for r in runs]}; porion: "
                   f"{[r['porion'] for r in runs]}")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "site_adapt.json").write_text(json.dumps(report, indent=1))
    lines = [f"Site profiles from {n_adapt} images of each split (mean of {seeds} seeds; the rest scored against the "
             f"mean of both clinicians{f', porion on a planted ear rod ({ear_rod})' if ear_rod != 'none' else ''}; "
             f"bundled model, {backend}; "
             f"{report['cpu']}).", "",
             "| split | scored | MRE before | MRE after | SDR@2 before | SDR@2 after | AUROC before | AUROC after | "
             "porion before | offsets only | with looks |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for split, d in report["splits"].items():
        b, o, a = d["mean"]["before"], d["mean"]["offsets_only"], d["mean"]["after"]
        lines.append(f"| {split} | {d['scored_per_seed']} | {b['mre_mm']:.3f} | {a['mre_mm']:.3f} | {b['sdr2']:.1f}% | "
                     f"{a['sdr2']:.1f}% | {b['auroc_reliability']:.3f} | {a['auroc_reliability']:.3f} | "
                     f"{b['porion_mm']:.2f} | {o['porion_mm']:.2f} | {a['porion_mm']:.2f} |")
    (out_dir / "site_adapt.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
