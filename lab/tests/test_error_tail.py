"""The tail split of lab/studies/error_tail.py on errors whose answer is known by construction."""
import numpy as np
import pytest

from lab.studies.error_tail import tail_figures


def test_tail_counts_disputed_points_and_the_floor():
    model = np.array([[1.0, 5.0], [1.0, 9.0]])          # two tail points, both on landmark "b"
    disagree = np.array([[1.0, 6.0], [1.0, 1.0]])       # the clinicians dispute only the first of them
    vs_junior = np.array([[1.0, 1.5], [1.0, 8.0]])      # ... and there the model sits on the junior's point
    r = tail_figures(model, disagree, vs_junior, ["a", "b"])
    assert r["tail_n"] == 2 and r["tail_disputed"] == 1 and r["tail_near_junior"] == 1
    assert r["tail_share_of_error_pct"] == pytest.approx(14 / 16 * 100)
    assert r["mre_where_clinicians_agree_mm"] == pytest.approx((1 + 1 + 9) / 3)
    assert r["mre_without_disputed_mm"] == pytest.approx((1 + 1 + 9) / 3)
    assert r["noise_floor_mm"] == pytest.approx(9 / 4 / np.sqrt(2))
    assert r["per_landmark"]["b"] == {"mre_mm": 7.0, "tail_n": 2, "tail_disputed": 1,
                                      "residual_disagreement_mm": 3.5}
    assert r["per_landmark"]["a"]["tail_n"] == 0
