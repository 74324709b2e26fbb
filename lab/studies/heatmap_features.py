"""Would the first-stage heatmaps' shape sharpen the flags? Three features per point beside the calibration's four
(:func:`sdk.quality.point_features`): the second-highest peak more than 4 heatmap px away over the first, the share
of the positive mass within 3 px of the peak, the mass's spread. Logistic fits as ``cephalo calibrate`` makes them,
cross-validated over the validation carve's images (5 folds) x the cross-site variants; AUROC of P(within 4 mm) for
errors > 4 mm and the flags at the shipped cut.

    python -m lab.studies.heatmap_features
"""
from pathlib import Path

import numpy as np

from sdk import Detector
from sdk.metrics import auroc
from sdk.quality import point_features
from sdk.schemas import ISBI19
from train.calibrate import fit_calibration
from train.data.variants import CROSS_SITE, variant_readings
from train.datasets import load_train_val


def heatmap_features(hm: np.ndarray) -> np.ndarray:
    """(K, h, w) heatmaps -> (K, 3): log second peak ratio, log mass share near the peak, log1p spread."""
    k, h, w = hm.shape
    yy, xx = np.mgrid[0:h, 0:w]
    out = np.zeros((k, 3))
    for i in range(k):
        m = hm[i]
        py, px = divmod(int(np.argmax(m)), w)
        d2 = (yy - py) ** 2 + (xx - px) ** 2
        pos = np.maximum(m, 0)
        tot = pos.sum() + 1e-9
        second = m[d2 > 16].max() / max(float(m[py, px]), 1e-6)
        out[i] = [np.log(max(second, 0) + 1e-3), np.log(pos[d2 <= 9].sum() / tot + 1e-3),
                  np.log1p(np.sqrt((pos * d2).sum() / tot))]
    return out


def main():
    det = Detector(backend="onnxruntime")
    _, val = load_train_val(Path("../shared/data/isbi2015"), ISBI19, "auto", ["train"], ("senior", "junior"), 30, 0)
    f4, hmf, err, lm, img = [], [], [], [], []
    for s, _v, im, gt, inside, mm in variant_readings(val, CROSS_SITE):
        res, ev = det.evidence(im)
        x, _, _ = det.preprocess(im)
        f4.append(point_features(res.scores, ev.local_peak, ev.shift, ev.shape_z)[inside])
        hmf.append(heatmap_features(det.run_network(x[None])[0])[inside])
        err.append((np.linalg.norm(res.xy - gt, axis=1) * mm)[inside])
        lm.append(np.arange(len(gt))[inside])
        img.append(np.full(int(inside.sum()), s.id))
    f4, hmf, err, lm, img = (np.concatenate(a) for a in (f4, hmf, err, lm, img))
    ids = np.unique(img)
    np.random.default_rng(0).shuffle(ids)
    folds = np.array_split(ids, 5)
    print(f"{len(err)} points, {int((err > 4).sum())} > 4 mm")
    for name, x in {"the four": f4, "+ second peak": np.c_[f4, hmf[:, 0]], "+ mass near the peak": np.c_[f4, hmf[:, 1]],
                    "+ spread": np.c_[f4, hmf[:, 2]], "+ all three": np.c_[f4, hmf]}.items():
        p = np.zeros(len(err))
        for f in folds:
            te = np.isin(img, f)
            p[te] = fit_calibration(x[~te], lm[~te], err[~te] <= 4, len(ISBI19.names)).probability(x[te], lm[te])
        fl = p < 0.5
        print(f"{name}: AUROC {auroc(1 - p, err > 4):.3f}; flagged {int(fl.sum())}, of them within 2 mm "
              f"{int((fl & (err <= 2)).sum())}, > 4 mm {int((fl & (err > 4)).sum())}")


if __name__ == "__main__":
    main()
