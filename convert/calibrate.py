"""The flags' calibration of a local-stage model, fitted (:mod:`train.calibrate`) and stored in its metadata: the
workflow of ``cephalo calibrate`` and the recipes."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Sequence

from train.config import VAL_COUNT

# A point this far from the reference labels is a gross error (reported apart from the tolerance's misses).
GROSS_MM = 10.0


def calibrate_local(local_model: Path, data_dir: Path, *, first_model: Optional[Path] = None,
                    annotators: Sequence[str] = ("senior", "junior"), val_count: int = VAL_COUNT, seed: int = 0,
                    variants: Optional[Sequence[str]] = None, tolerance: float = 4.0, cut: float = 0.5,
                    write: bool = True) -> Dict:
    """Fit the per-point reliability (P(within ``tolerance`` mm of the reference labels)) of a local-stage model
    on the validation carve and its cross-site variants; ``write`` stores it in the model's metadata. Returns the
    fit's figures (AUROC, flagged share, gross errors, per variant MRE) and the calibration itself."""
    from sdk import Detector
    from sdk.errors import CephaloError
    from sdk.metrics import auroc
    from sdk.schemas import ISBI19
    from train.calibrate import collect, fit_calibration
    from train.data.variants import CROSS_SITE
    from train.datasets import load_train_val

    from .model_card import update_meta

    names = list(variants or CROSS_SITE)
    _, val = load_train_val(data_dir, ISBI19, "auto", ["train"], tuple(annotators), val_count, seed)
    if not val:
        raise CephaloError("--val-count 0 leaves no held-out images to calibrate on")
    det = Detector(first_model, backend="onnxruntime", local_stage=local_model)
    det.local.calibration = None           # the features are those of the uncalibrated reading
    d = collect(det, val, names)
    within = d["error_mm"] <= tolerance
    info = dict(tolerance_mm=tolerance, cut=cut,
                fitted_on=f"{data_dir.name} validation carve ({len(val)} images, seed {seed}; "
                          f"{','.join(annotators)}) x {len(names)} variants")
    cal = fit_calibration(d["features"], d["landmark"], within, ISBI19.k, **info)
    p = cal.probability(d["features"], d["landmark"])
    flagged = (p < cut) | d["flagged_otherwise"]
    far, gross = d["error_mm"] > tolerance, d["error_mm"] > GROSS_MM
    rep = {"points": int(len(p)), "off_by_more_than_tolerance": int(far.sum()),
           "auroc": auroc(1 - p, far), "flagged": int(flagged.sum()),
           "flagged_precision": float(far[flagged].mean()) if flagged.any() else None,
           "recall": float(flagged[far].mean()) if far.any() else None,
           "over_10mm": int(gross.sum()), "over_10mm_unflagged": int((gross & ~flagged).sum()),
           "per_variant_mre_mm": {v: float(d["error_mm"][d["variant"] == v].mean()) for v in names},
           "calibration": cal.to_dict()}
    if write:
        update_meta(local_model, extra={"calibration": cal.to_dict()})
    return rep
