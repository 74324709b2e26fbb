"""The flags' calibration: the logistic fit recovers a known model, the AUROC is the rank statistic, a
calibration stored in a local-stage file reaches the Detector's results."""
import numpy as np
import pytest

from sdk.metrics import auroc
from sdk.quality import FEATURES, Calibration, point_features
from train.calibrate import fit_calibration


def test_fit_recovers_a_known_logistic_model():
    rng = np.random.default_rng(0)
    n, k = 20000, 5
    x = rng.normal(size=(n, 4))
    lm = rng.integers(0, k, n)
    coef, bias = np.array([1.5, -0.8, 0.0, 2.0]), np.array([0.5, -1.0, 0.0, 1.0, 2.0])
    p = 1 / (1 + np.exp(-(x @ coef + bias[lm])))
    y = rng.random(n) < p
    cal = fit_calibration(x, lm, y, k, l2_landmark=1e-6, l2_coef=1e-6)
    assert np.allclose(cal.coef, coef, atol=0.08) and np.allclose(cal.bias, bias, atol=0.12)
    back = Calibration.from_dict(cal.to_dict())
    assert np.allclose(back.probability(x[:k]), cal.probability(x[:k]), atol=1e-5)   # rows = landmarks
    with pytest.raises(ValueError, match="features"):
        Calibration.from_dict({**cal.to_dict(), "features": ["a"]})


def test_auroc_is_the_rank_statistic():
    rng = np.random.default_rng(1)
    d = rng.normal(size=300).round(1)          # with ties
    pos = rng.random(300) < 0.3
    brute = np.mean([(a > b) + 0.5 * (a == b) for a in d[pos] for b in d[~pos]])
    assert auroc(d, pos) == pytest.approx(brute)
    assert auroc(np.arange(10), np.arange(10) >= 5) == 1.0 and np.isnan(auroc(np.ones(3), np.zeros(3, bool)))


def test_point_features_are_finite_at_the_edges():
    f = point_features(np.array([0.0, 1.0, 0.5]), np.array([1.0, 0.0, 0.3]), np.array([0.0, 50.0, 2.0]),
                       np.array([0.0, 30.0, 1.0]))
    assert f.shape == (3, len(FEATURES)) and np.isfinite(f).all()


def test_a_calibration_in_the_local_stage_gives_reliabilities(tiny_onnx, tiny_local, tmp_path):
    import shutil

    from conftest import ISBI_FIX

    from convert.model_card import update_meta
    from sdk import Detector

    local = tmp_path / "m.local.onnx"
    shutil.copyfile(tiny_local["int8"], local)
    img = sorted((ISBI_FIX / "images").glob("*.jpg"))[0]
    plain = Detector(tiny_onnx["onnx"], backend="onnxruntime", local_stage=local)(img)
    assert plain.reliability is None
    # every point certain to be off: all flagged with the calibration's reason; certain to be right: none
    for bias, expect in ((-50.0, True), (50.0, False)):
        cal = Calibration(np.zeros(4), np.full(19, bias), tolerance_mm=4.0, cut=0.5, fitted_on="test")
        update_meta(local, extra={"calibration": cal.to_dict()})
        res = Detector(tiny_onnx["onnx"], backend="onnxruntime", local_stage=local, auto_view=False)(img)
        assert res.reliability is not None and res.reliability.shape == (19,)
        doubtful = [r == "likely off by more than 4 mm" for r in res.point_flags]
        other = [r in ("outside the image", "implausible position") for r in res.point_flags]
        assert all(d or o for d, o in zip(doubtful, other)) if expect else not any(doubtful)
        assert np.allclose(res.xy, plain.xy)         # the calibration flags; it never moves a point
