"""Can the repair's own re-read clear a false alarm? A point the shape check calls implausible and the repair did not
move was read again where the other points put it; when that re-read, made on a patch centred elsewhere, comes
back to the first reading with a clear peak, the unusual position is perhaps the patient's, not the network's.
Counted on the validation carve x the cross-site variants (real readings) and on simulated first-stage failures
(a point moved 8-30 mm, as lab/studies/repair_sim.py makes them), nothing from Test.

    python -m lab.studies.confirm_sim [--out lab/results/flags/confirm_sim.txt]

Per rule (re-read within D mm of the first reading, peak >= P): the still-implausible real points it would clear,
by error (< 2 mm, 2-4, > 4 mm), and the simulated failures (> 4 mm) it would clear: these must stay flagged.
"""
from pathlib import Path

import click
import numpy as np

from lab.studies import report


@click.command()
@click.option("--data", "data_dir", type=click.Path(exists=True, path_type=Path),
              default=Path("../shared/data/isbi2015"))
@click.option("--out", type=click.Path(path_type=Path), default=Path("lab/results/flags/confirm_sim.txt"))
def main(data_dir, out):
    from sdk import Detector
    from sdk.decode import decode_to_image
    from sdk.quality import COND_Z, IMPLAUSIBLE, assess, shape_model
    from sdk.repair import ReadingFrame, repair_points
    from sdk.schemas import ISBI19
    from train.data.variants import CROSS_SITE, variant_readings
    from train.datasets import load_train_val

    rng = np.random.default_rng(0)
    _, val = load_train_val(data_dir, ISBI19, "auto", ["train"], ("senior", "junior"), 30, 0)
    det = Detector(backend="onnxruntime", threads=2, repair=False)
    m, model = det.meta, shape_model(ISBI19.id, ISBI19.names)
    rows = []      # (kind 0 real / 1 sim, error of the first reading mm, re-read's distance from it mm, peak)
    for s, v, img, gt, inside, px_mm in variant_readings(val, CROSS_SITE):
        x, lb, loaded = det.preprocess(img)
        xy, scores = decode_to_image(det.run_network(x[None])[0], lb, m.heatmap_stride, m.sigma, m.decoder)
        frame = ReadingFrame(loaded.gray, lb, loaded.reduction, np.zeros(2))
        to_input = np.array([lb.scale_x, lb.scale_y])
        for kind in (0, 1):
            start, moved = xy.copy(), np.array([], int)
            if kind:
                moved = rng.choice(np.flatnonzero(inside), size=1, replace=False)
                ang = rng.uniform(0, 2 * np.pi)
                start[moved] += np.array([np.cos(ang), np.sin(ang)]) * rng.uniform(8.0, 30.0) / px_mm
                start[moved] = np.clip(start[moved], 0, np.array(img.shape[1::-1]) - 1)
            local, _ = det.local.locate_with_peaks(loaded.gray, lb, start, loaded.reduction)
            a = assess(local, scores, img.shape[:2], m.schema.id, m.schema.names)
            bad = np.array([r == IMPLAUSIBLE for r in a.reasons]) & inside
            if not bad.any() or "implausible_shape" in a.flags:
                continue
            rep = repair_points(local, bad, det.local, frame, model, COND_Z)
            left = np.flatnonzero(bad & ~rep.repaired & (model.conditional_z(rep.xy) > COND_Z))
            if kind:
                left = np.intersect1d(left, moved)
            if not len(left):
                continue
            pos, cov = model.conditional_positions(rep.xy, left)
            spread = np.sqrt(np.linalg.eigvalsh(cov)[:, -1]) * float(to_input.max())
            new, pk = det.local.locate_at(frame.gray, lb, pos, left, frame.reduction, prior_sd=float(spread.max()))
            err = np.linalg.norm(rep.xy[left] - gt[left], axis=1) * px_mm
            d = np.linalg.norm(new - rep.xy[left], axis=1) * px_mm
            rows += [(kind, float(e), float(dd), float(p)) for e, dd, p in zip(err, d, pk)]
    r = np.array(rows).reshape(-1, 4)
    real, sim = r[r[:, 0] == 0], r[(r[:, 0] == 1) & (r[:, 1] > 4)]
    lines = [f"{len(val)} images x {len(CROSS_SITE)} variants: {len(real)} real points still implausible after "
             f"repair (< 2 mm {int((real[:, 1] < 2).sum())}, 2-4 mm {int(((real[:, 1] >= 2) & (real[:, 1] <= 4)).sum())},"
             f" > 4 mm {int((real[:, 1] > 4).sum())}); {len(sim)} simulated failures > 4 mm still implausible", "",
             "| re-read within mm | peak >= | real cleared < 2 mm | 2-4 mm | > 4 mm | simulated failures cleared |",
             "|---|---|---|---|---|---|"]
    for dmax in (1.0, 2.0, 3.0):
        for pmin in (0.15, 0.25, 0.4):
            c_real = (real[:, 2] <= dmax) & (real[:, 3] >= pmin)
            c_sim = (sim[:, 2] <= dmax) & (sim[:, 3] >= pmin)
            e = real[c_real, 1]
            lines.append(f"| {dmax:g} | {pmin:g} | {int((e < 2).sum())} | {int(((e >= 2) & (e <= 4)).sum())} | "
                         f"{int((e > 4).sum())} | {int(c_sim.sum())}/{len(sim)} |")
    lines += ["", "real points: error mm, re-read's distance mm, peak"]
    lines += [f"  {e:6.2f} {dd:6.2f} {p:.3f}" for _, e, dd, p in sorted(map(tuple, real), key=lambda t: t[1])]
    report(lines, out)


if __name__ == "__main__":
    main()
