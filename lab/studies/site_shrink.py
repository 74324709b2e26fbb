"""How much of a site's median offsets to apply: the cross-validated hard gates (``fit_site`` until 2026-12-04)
against shrinking each offset by its own signal-to-noise (``max(0, 1 - (g se)^2 / |median|^2)``, a positive-part
James-Stein factor) and against a trimmed mean.

Chosen on the validation carve (30 training images the bundled pair did not train on), each annotator taken as a
"site" (the model reads the clinicians' mean; each annotator's habits are a convention): 10 images adapt, the other
20 are scored, 20 draws. Test1/Test2 (10 adapt, 90 scored against the mean labels, 20 draws) are reported after.

    python -m lab.studies.site_shrink [--test]
"""
import json
import sys
from pathlib import Path

import numpy as np

from sdk import Detector
from sdk import site as S
from sdk.schemas import ISBI19
from train.datasets import load_folder, load_train_val

DATA = Path("../shared/data/isbi2015")
N_ADAPT, DRAWS = 10, 20
NAMES = ISBI19.names
VARIANTS = ([("hard", g) for g in (0, 1, 2)] + [("soft", g) for g in (0.5, 1, 1.5, 2)] + [("trim", 0)]
            + [("trim+soft", g) for g in (0.5, 1)])


def offsets(rel: np.ndarray, mode: str, g: float) -> np.ndarray:
    med = np.median(rel, axis=0)
    n = rel.shape[0]
    sd = 1.4826 * np.median(np.abs(rel - med), axis=0)
    se = np.linalg.norm(1.2533 * sd / np.sqrt(n), axis=1)
    m = np.linalg.norm(med, axis=1)
    if mode == "hard":
        return med * (m > g * np.maximum(se, 1e-9))[:, None] if g > 0 else med
    if mode == "soft":
        return med * np.clip(1 - (g * se) ** 2 / np.maximum(m, 1e-12) ** 2, 0, 1)[:, None]
    s = np.sort(rel, axis=0)
    k = max(1, n // 5)
    trim = s[k:n - k].mean(axis=0)
    if mode == "trim":
        return trim
    t = np.linalg.norm(trim, axis=1)
    return trim * np.clip(1 - (g * se) ** 2 / np.maximum(t, 1e-12) ** 2, 0, 1)[:, None]


def _moved(pred, off):
    _, rot, length = S.frames(pred, NAMES)
    return pred + S.from_frame(off, rot, length)


def _mre(p, t, mm):
    return float((np.linalg.norm(p - t, axis=2) * mm[:, None]).mean())


def score(pred, truth, mm) -> dict:
    """Mean MRE over draws per variant, and of the hard gate picked by leave-one-out (the old fit)."""
    out = {str(v): [] for v in VARIANTS}
    out["before"], out["hard, picked by LOO"] = [], []
    for seed in range(DRAWS):
        idx = np.random.default_rng(seed).permutation(len(pred))
        fit, rest = idx[:N_ADAPT], idx[N_ADAPT:]
        _, rot, length = S.frames(pred[fit], NAMES)
        rel = S.to_frame(truth[fit] - pred[fit], rot, length)
        out["before"].append(_mre(pred[rest], truth[rest], mm[rest]))
        loo = {}
        for v in VARIANTS:
            out[str(v)].append(_mre(_moved(pred[rest], offsets(rel, *v)), truth[rest], mm[rest]))
            o = np.stack([_moved(pred[fit][i:i + 1], offsets(rel[np.arange(N_ADAPT) != i], *v))[0]
                          for i in range(N_ADAPT)])
            loo[v] = _mre(o, truth[fit], mm[fit])
        out["hard, picked by LOO"].append(out[str(min(VARIANTS[:3], key=loo.get))][-1])
    return {k: round(float(np.mean(v)), 4) for k, v in out.items()}


def main():
    det = Detector(backend="onnxruntime")
    rep = {}
    for who in ("senior", "junior"):
        _, va = load_train_val(DATA, ISBI19, "auto", ["train"], (who,), 30, 0, False)
        pred = np.stack([r.xy for r in det.batch([s.image for s in va])])
        rep[f"validation carve, {who} as the site"] = score(pred, np.stack([s.points for s in va]),
                                                             np.array([s.spacing for s in va]))
    if "--test" in sys.argv:
        for split in ("test1", "test2"):
            ss = load_folder(DATA, ISBI19, split=[split], annotators=("senior", "junior"))
            pred = np.stack([r.xy for r in det.batch([s.image for s in ss])])
            rep[f"{split}, mean labels"] = score(pred, np.stack([s.points for s in ss]),
                                                 np.array([s.spacing for s in ss]))
    print(json.dumps(rep, indent=1))


if __name__ == "__main__":
    main()
