import numpy as np
import pytest

from sdk.decode import decode_heatmaps, decode_to_image, gaussian_heatmaps, heatmap_to_input, input_to_heatmap
from sdk.preprocess import letterbox_geometry


@pytest.mark.parametrize("src_hw", [(2400, 1935), (1935, 2400), (384, 384), (1000, 1500)])
@pytest.mark.parametrize("stride", [4, 2])
def test_subpixel_round_trip_through_letterbox(src_hw, stride):
    """Gaussians at known sub-pixel positions of the original image come back through preprocess + decode."""
    rng = np.random.default_rng(0)
    h, w = src_hw
    lb = letterbox_geometry(src_hw, (384, 384))
    # Points well inside the image so their Gaussians are not cut by the heatmap border.
    pts = np.stack([rng.uniform(0.1 * w, 0.9 * w, 12), rng.uniform(0.1 * h, 0.9 * h, 12)], axis=1)
    hm_xy = input_to_heatmap(lb.to_input(pts), stride)
    hm = gaussian_heatmaps(hm_xy, (384 // stride, 384 // stride), sigma=1.5)
    got, scores = decode_to_image(hm, lb, stride, 1.5, "dark")
    err_input_px = np.linalg.norm(lb.to_input(got) - lb.to_input(pts), axis=1)
    assert err_input_px.max() < 0.05
    assert (scores > 0.5).all()


def test_dark_beats_argmax():
    xy = np.array([[10.3, 20.7], [40.45, 5.2]])
    hm = gaussian_heatmaps(xy, (48, 64), 2.0)
    a, _ = decode_heatmaps(hm, 2.0, "argmax")
    d, _ = decode_heatmaps(hm, 2.0, "dark")
    assert np.abs(a - xy).max() > 0.2
    assert np.abs(d - xy).max() < 0.02


def test_heatmap_input_mapping_is_pixel_centre_exact():
    assert np.allclose(heatmap_to_input(np.array([0.0, 0.0]), 4), [1.5, 1.5])
    xy = np.array([[3.25, 7.5]])
    assert np.allclose(input_to_heatmap(heatmap_to_input(xy, 4), 4), xy)


def test_letterbox_inverse():
    lb = letterbox_geometry((2400, 1935), (384, 384))
    assert lb.new_h == 384 and lb.pad_left == (384 - lb.new_w) // 2 and lb.pad_top == 0
    p = np.array([[0.0, 0.0], [1934.0, 2399.0], [100.25, 1000.75]])
    assert np.allclose(lb.to_image(lb.to_input(p)), p)
    # The image's outer edges (-0.5 and size - 0.5) land on the resized content's edges.
    edges = lb.to_input(np.array([[-0.5, -0.5], [1934.5, 2399.5]]))
    assert np.allclose(edges, [[lb.pad_left - 0.5, -0.5], [lb.pad_left + lb.new_w - 0.5, 383.5]])


def test_bad_heatmaps_rejected():
    with pytest.raises(ValueError, match="NaN"):
        decode_heatmaps(np.full((2, 8, 8), np.nan), 1.5)
    with pytest.raises(ValueError, match="decoder"):
        decode_heatmaps(np.zeros((2, 8, 8)), 1.5, "median")
    with pytest.raises(ValueError, match="shape"):
        decode_heatmaps(np.zeros((8, 8)), 1.5)


def test_flat_heatmap_gives_zero_score_and_finite_point():
    xy, s = decode_heatmaps(np.zeros((1, 16, 16)), 1.5)
    assert np.isfinite(xy).all() and s[0] == 0
