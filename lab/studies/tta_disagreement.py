"""Does a second reading of a perturbed image say which points are off? On the validation carve x the cross-site
variants (nothing from Test): each image is read as given and again turned by ``--angle`` degrees and scaled by
``--scale`` about its centre (its points mapped back); the two readings' distance per point is compared, as a
detector of points > 4 mm (and > 10 mm) off the mean labels, with the calibration's reliability.

    python -m lab.studies.tta_disagreement [--data ../shared/data/isbi2015] [--out lab/results/flags/tta.txt]

A Detector option built on this (an image with a point below 0.8 reliability read again, points more than
MAX_SHIFT first-stage input px apart flagged) was tried on 2026-12-05 and not kept: lab/RESULTS.md,
results/flags/tta_shipped.txt and tta_cross_site.md.
"""
from pathlib import Path

import click
import cv2
import numpy as np

from lab.studies import report


def perturbed(img: np.ndarray, angle: float, scale: float):
    """``img`` turned and scaled about its centre (edges padded black) and the (2, 3) map of its points."""
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=0), m


def back(xy: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Points of the perturbed image mapped back to the original's."""
    a, t = m[:, :2], m[:, 2]
    return (np.asarray(xy, np.float64) - t) @ np.linalg.inv(a).T


@click.command()
@click.option("--data", "data_dir", type=click.Path(exists=True, path_type=Path),
              default=Path("../shared/data/isbi2015"))
@click.option("--angle", type=float, default=5.0)
@click.option("--scale", type=float, default=0.92)
@click.option("--out", type=click.Path(path_type=Path), default=Path("lab/results/flags/tta.txt"))
def main(data_dir, angle, scale, out):
    from sdk import Detector
    from sdk.metrics import auroc
    from sdk.schemas import ISBI19
    from train.data.variants import CROSS_SITE, variant_readings
    from train.datasets import load_train_val

    _, val = load_train_val(data_dir, ISBI19, "auto", ["train"], ("senior", "junior"), 30, 0)
    det = Detector(backend="onnxruntime")
    rows = {k: [] for k in ("err", "d", "rel", "flag", "lm", "reading")}
    for j, (s, v, img, gt, inside, mm) in enumerate(variant_readings(val, list(CROSS_SITE))):
        res = det(img)
        pimg, m = perturbed(img, angle, scale)
        two = back(det(pimg).xy, m)
        rows["err"].append((np.linalg.norm(res.xy - gt, axis=1) * mm)[inside])
        rows["d"].append((np.linalg.norm(res.xy - two, axis=1) * mm)[inside])
        rows["rel"].append(res.reliability[inside])
        rows["flag"].append(np.array([bool(r) for r in res.point_flags])[inside])
        rows["lm"].append(np.arange(len(gt))[inside])
        rows["reading"].append(np.full(int(inside.sum()), j))
    err, d, rel, flag, lm = (np.concatenate(rows[k]) for k in ("err", "d", "rel", "flag", "lm"))
    far, gross = err > 4, err > 10
    lines = [f"validation carve x {len(CROSS_SITE)} variants: {len(err)} points, {int(far.sum())} > 4 mm, "
             f"{int(gross.sum())} > 10 mm; second reading turned {angle:g} deg, scaled {scale:g}", "",
             f"AUROC for > 4 mm: reliability {auroc(1 - rel, far):.3f}, disagreement {auroc(d, far):.3f}",
             f"disagreement median {np.median(d):.2f} mm, 99th percentile {np.percentile(d, 99):.2f} mm", "",
             "| disagreement over (mm) | points | within 2 mm | > 4 mm | > 10 mm | of them not flagged now | "
             "within 2 mm, not flagged now |", "|---|---|---|---|---|---|---|"]
    for t in (2, 3, 4, 6, 8):
        sel = d > t
        lines.append(f"| {t} | {int(sel.sum())} | {int((sel & (err < 2)).sum())} | {int((sel & far).sum())} | "
                     f"{int((sel & gross).sum())} | {int((sel & far & ~flag).sum())} | "
                     f"{int((sel & (err < 2) & ~flag).sum())} |")
    lines += ["", f"flagged now: {int(flag.sum())} ({int((flag & (err < 2)).sum())} within 2 mm, "
                  f"{int((flag & far).sum())} > 4 mm)"]
    report(lines, out)


if __name__ == "__main__":
    main()
