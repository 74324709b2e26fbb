"""A site's looks by value (:mod:`sdk.site_look`): the grid a look is sampled on, the match's sub-pixel peak and its
move in the full image's pixels, and which looks a site keeps."""
import cv2
import numpy as np
import pytest

from sdk import site_look
from sdk.site_look import HALF, Look, _standard, _subpixel, fit_looks, match, refine, sample


def _texture(shape=(400, 300), seed=0) -> np.ndarray:
    g = cv2.GaussianBlur(np.random.default_rng(seed).normal(0, 1, shape).astype(np.float32), (0, 0), 3)
    return np.clip(g / g.std() * 40 + 128, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("centre", [(150.0, 200.0), (5.0, 8.0), (295.5, 396.0), (-5.0, 395.0)])
@pytest.mark.parametrize("step", [0.8, 3.0])
def test_a_sample_is_the_smoothed_image_resampled_on_its_grid(centre, step):
    """Only the neighbourhood is smoothed, but the grid is what smoothing the whole image would give, up to its
    edges (replicated beyond them, the grid partly outside)."""
    g = _texture()
    half = 10
    got = sample(g, np.array(centre), step, half)
    src = cv2.GaussianBlur(g, (0, 0), 0.5 * step) if step > 1.5 else g
    m = np.array([[step, 0, centre[0] - half * step], [0, step, centre[1] - half * step]])
    want = cv2.warpAffine(src, m, (2 * half + 1, 2 * half + 1), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
    assert got.shape == (2 * half + 1, 2 * half + 1) and got.dtype == np.float32
    assert np.abs(got - want).max() <= 1.0


@pytest.mark.parametrize("step", [0.8, 3.0])
@pytest.mark.parametrize("centre", [(-500.0, -500.0), (-40.0, 120.0), (120.0, 430.0), (340.0, 20.0)])
def test_a_sample_wholly_outside_the_image_is_flat(centre, step):
    """Nothing to see: zeros, whatever the step (a replicated edge would be a stripe a look could match)."""
    got = sample(_texture(), np.array(centre), step, 10)
    assert got.shape == (21, 21) and got.dtype == np.float32 and not got.any()


def test_the_subpixel_peak_is_the_parabolas_vertex():
    r = np.zeros((5, 5))
    for i in range(5):
        for j in range(5):
            r[i, j] = -((j - 2.3) ** 2) - 0.5 * (i - 1.8) ** 2        # vertex at x 2.3, y 1.8
    dx, dy = _subpixel(r, 2, 2)
    assert dx == pytest.approx(0.3) and dy == pytest.approx(-0.2)
    r2 = -((np.arange(5)[None, :] - 2.0 - 0.9) ** 2) + np.zeros((5, 1))    # beyond half a pixel: clipped
    assert _subpixel(r2, 2, 2) == (pytest.approx(0.5), 0.0)
    flat = np.ones((5, 5))
    assert _subpixel(flat, 2, 2) == (0.0, 0.0) and _subpixel(r, 0, 4) == (0.0, 0.0)     # no curve; at the edge


def _rings(n=6, seed=1, blank=()):
    """n images, each a texture with a bright ring (radius 12 px) somewhere; the ring tops (x, y)."""
    rng = np.random.default_rng(seed)
    grays, tops = [], []
    for i in range(n):
        g = _texture(seed=10 + i)
        cx, cy = rng.uniform(100, 200), rng.uniform(150, 250)
        if i not in blank:
            cv2.circle(g, (int(round(cx * 16)), int(round(cy * 16))), 12 * 16, 255, 3, cv2.LINE_AA, shift=4)
        grays.append(g)
        tops.append((cx, cy - 12))
    return grays, np.array(tops)


@pytest.mark.parametrize("reduction", [1, 2])
def test_a_match_moves_the_point_onto_its_look_in_full_image_pixels(reduction):
    """A point 7.3 px right of and 5.4 px above the structure is moved back onto it (on an image decoded at 1/2, its
    pixels scaled back); a flat image matches nothing and leaves the point."""
    grays, tops = _rings(2)
    sn_px = 240.0 * reduction                   # a grid step of one (decoded) pixel
    gray, top = grays[0], tops[0] * reduction   # the image as decoded; the ring top in full-image pixels
    patch = _standard(sample(gray, site_look.to_gray(top, reduction), 1.0, HALF))
    start = top + np.array([7.3, -5.4]) * reduction        # off the grid: the sub-pixel peak brings it back
    got, score = match(gray, reduction, start, sn_px, patch)
    assert score > 0.95 and np.abs(got - top).max() < 0.3 * reduction
    flat = np.full_like(gray, 90)
    same, s = match(flat, reduction, start, sn_px, patch)
    assert s == 0.0 and np.array_equal(same, start)


def test_refine_moves_a_point_whose_match_reaches_the_looks_bar():
    grays, tops = _rings(1)
    patch = _standard(sample(grays[0], tops[0], 1.0, HALF))
    xy = np.round(np.array([[10.0, 10.0], tops[0] + (6, 4)])).astype(int)       # integer points in: floats out
    _, score = match(grays[0], 1, xy[1].astype(float), 240.0, patch)
    out, scores = refine(grays[0], 1, xy, 240.0, {1: Look(patch, score)})      # the bar met exactly: moved
    assert out.dtype == np.float64 and scores[1] == score and np.array_equal(out[0], xy[0])
    assert np.abs(out[1] - tops[0]).max() < 0.3 and not float(out[1][0]).is_integer()
    kept, _ = refine(grays[0], 1, xy, 240.0, {1: Look(patch, score + 1e-6)})  # not met: left
    assert np.array_equal(kept, xy)


def test_a_site_keeps_a_look_where_it_pays_and_chooses_its_bar():
    """Landmark 0 is labelled on two images only (no look); landmark 1 is marked on the ring top, which the model
    misses by (8, -6) px: a look is kept, with the bar that errs least (one image shows no ring: its match must be
    refused, so the bar is not 0); landmark 2 the model reads right: no look."""
    grays, tops = _rings(6, blank=(3,))
    n = len(grays)
    truth = np.stack([tops + 30, tops, tops + (0, 40)], axis=1)
    truth[2:, 0] = np.nan
    placed = truth.copy()
    placed[:, 0] = tops + 30
    placed[:, 1] = tops + (8, -6)
    looks, report, after = fit_looks([(g, 1) for g in grays], placed, truth, np.full(n, 240.0), np.full(n, 0.1))
    assert 0 not in report and set(report) == {1, 2} and list(looks) == [1]
    r = report[1]
    assert r["kept"] and r["min_score"] in (0.3, 0.5) and r["offset_only_mm"] == 1.0 and r["with_look_mm"] < 0.25
    assert r["matched"] == pytest.approx(5 / 6, abs=1e-3) and r["wins"] == pytest.approx(5 / 6, abs=1e-3)
    ringed = [i for i in range(n) if i != 3]
    assert np.abs(after[ringed, 1] - tops[ringed]).max() < 0.5 and np.array_equal(after[3, 1], placed[3, 1])
    assert not report[2]["kept"] and np.array_equal(after[:, 2], placed[:, 2])
    assert looks[1].patch.shape == (2 * HALF + 1, 2 * HALF + 1) and looks[1].min_score == r["min_score"]


def test_a_look_that_does_not_cut_the_error_by_enough_is_not_kept(monkeypatch):
    grays, tops = _rings(6)
    n = len(grays)
    truth = tops[:, None, :].copy()
    placed = truth + (8.0, -6.0)
    _, report, _ = fit_looks([(g, 1) for g in grays], placed, truth, np.full(n, 240.0), np.full(n, 0.1))
    gain = 1 - report[0]["with_look_mm"] / report[0]["offset_only_mm"]
    assert report[0]["kept"] and 0.9 < gain < 1
    monkeypatch.setattr(site_look, "MIN_GAIN", (gain + 1) / 2)                # a bar just above what it gained
    looks, report, after = fit_looks([(g, 1) for g in grays], placed, truth, np.full(n, 240.0), np.full(n, 0.1))
    assert not report[0]["kept"] and not looks and np.array_equal(after, placed)
