"""How hard to shrink the flags' per-landmark intercepts, and where to cut: 5-fold cross-validation by image over
the validation carve x the cross-site variants (the data ``cephalo calibrate`` fits on), nothing from Test.

    python -m lab.studies.calib_shrink [--data ../shared/data/isbi2015] [--out lab/results/flags/calib_shrink.txt]

Per (l2 on the per-landmark intercepts, cut): held-out log loss and AUROC of P(within 4 mm), and the held-out
flags: how many, how many right (< 2 mm from the mean labels), how many off by more than 4 mm.
"""
from pathlib import Path

import click
import numpy as np

from lab.studies import report

FOLDS = 5


@click.command()
@click.option("--data", "data_dir", type=click.Path(exists=True, path_type=Path),
              default=Path("../shared/data/isbi2015"))
@click.option("--out", type=click.Path(path_type=Path), default=Path("lab/results/flags/calib_shrink.txt"))
def main(data_dir, out):
    from sdk import Detector
    from sdk.metrics import auroc
    from sdk.schemas import ISBI19
    from train.calibrate import collect, fit_calibration
    from train.data.variants import CROSS_SITE
    from train.datasets import load_train_val

    _, val = load_train_val(data_dir, ISBI19, "auto", ["train"], ("senior", "junior"), 30, 0)
    det = Detector(backend="onnxruntime")
    det.local.calibration = None
    d = collect(det, val, list(CROSS_SITE))
    err, lm, x, other = d["error_mm"], d["landmark"], d["features"], d["flagged_otherwise"]
    within = err <= 4.0
    ids = np.array(sorted(set(d["image"])))
    fold_of = {i: f for f, part in enumerate(np.array_split(np.random.default_rng(0).permutation(ids), FOLDS))
               for i in part}
    fold = np.array([fold_of[i] for i in d["image"]])
    lines = [f"{len(ids)} images x {len(CROSS_SITE)} variants, {len(err)} points, {int((~within).sum())} > 4 mm, "
             f"{int((err > 10).sum())} > 10 mm; {FOLDS}-fold by image", "",
             "| l2 landmark | held-out log loss | AUROC | cut | flagged | within 2 mm | > 4 mm | > 4 mm caught |",
             "|---|---|---|---|---|---|---|---|"]
    for l2 in (0.5, 2.0, 8.0, 32.0, 1e6):
        p = np.empty(len(err))
        for f in range(FOLDS):
            tr = fold != f
            cal = fit_calibration(x[tr], lm[tr], within[tr], ISBI19.k, l2_landmark=l2)
            p[~tr] = cal.probability(x[~tr], lm[~tr])
        q = np.clip(p, 1e-6, 1 - 1e-6)
        loss = float(-np.mean(within * np.log(q) + (~within) * np.log(1 - q)))
        for cut in (0.5, 0.4, 0.3, 0.0):
            flag = (p < cut) | other
            lines.append(f"| {l2:g} | {loss:.4f} | {auroc(1 - p, ~within):.3f} | {cut} | {int(flag.sum())} | "
                         f"{int((flag & (err < 2)).sum())} | {int((flag & ~within).sum())} | "
                         f"{int((flag & ~within).sum())}/{int((~within).sum())} |")
    report(lines, out)


if __name__ == "__main__":
    main()
