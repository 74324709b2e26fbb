"""The conditional shape check: each landmark judged by where the other landmarks put it (sdk.quality)."""
import json

import numpy as np
import pytest

from sdk.quality import COND_Z, SHAPE_Z, ShapeModel, assess, shape_model
from sdk.schemas import ISBI19
from train.shape_model import fit_shape_model

STP, SELLA, PORION = (ISBI19.names.index(n) for n in ("soft_tissue_pogonion", "sella", "porion"))


@pytest.fixture(scope="module")
def model():
    m = shape_model("isbi19", ISBI19.names)
    assert m is not None and m.cov is not None and m.cov.shape == (38, 38)
    return m


@pytest.fixture(scope="module")
def mean_labels():
    from conftest import ISBI_FIX

    from train.datasets import load_folder

    return load_folder(ISBI_FIX, ISBI19, annotators=("senior", "junior"))


def test_clinicians_configurations_pass(model, mean_labels):
    z = np.stack([model.conditional_z(s.points) for s in mean_labels])
    assert z.shape == (len(mean_labels), 19) and np.isfinite(z).all()
    assert (z > COND_Z).sum() <= 1 and np.median(z) < 1.5


def test_a_point_slid_along_an_outline_stands_out_where_the_mean_shape_misses_it(model, mean_labels):
    """Soft-tissue pogonion 15 mm down the chin: inside the landmark's spread about the mean shape (the old check),
    far from where the chin, lips and menton put it."""
    s = mean_labels[0]
    moved = s.points.copy()
    moved[STP] += [0, 15 / s.spacing]
    assert model.z_scores(moved)[STP] < SHAPE_Z
    z = model.conditional_z(moved)
    assert z[STP] > COND_Z and np.delete(z, STP).max() < COND_Z
    assert assess(moved, np.full(19, 0.9), (2000, 2000), "isbi19", ISBI19.names).reasons[STP] == "implausible position"


def test_one_gross_error_does_not_hide_another(model, mean_labels):
    s = mean_labels[1]
    moved = s.points.copy()
    moved[PORION] = moved[SELLA] + [60, -150]      # on the ruler, ~60 mm up
    moved[SELLA] += [15 / s.spacing, 0]
    z = model.conditional_z(moved)
    assert z[PORION] > COND_Z and z[SELLA] > COND_Z
    assert (z > COND_Z).sum() == 2


def test_fit_gives_a_covariance_only_with_spacings(mean_labels):
    sets = [s.points for s in mean_labels]
    plain = fit_shape_model(sets, ISBI19)
    assert plain.cov is None and np.allclose(plain.conditional_z(sets[0]), plain.z_scores(sets[0]))
    m = fit_shape_model(sets, ISBI19, spacings=[s.spacing for s in mean_labels], noise_mm=1.0)
    assert np.allclose(m.cov, m.cov.T) and np.linalg.eigvalsh(m.cov).min() > 0
    noisier = fit_shape_model(sets, ISBI19, spacings=[s.spacing for s in mean_labels], noise_mm=2.0)
    assert noisier.conditional_z(sets[0]).mean() < m.conditional_z(sets[0]).mean()   # more noise, less doubt
    back = ShapeModel.from_dict(json.loads(json.dumps(m.to_dict())))
    assert np.allclose(back.cov, m.cov, atol=1e-8) and np.allclose(back.conditional_z(sets[2]),
                                                                    m.conditional_z(sets[2]), atol=1e-4)
