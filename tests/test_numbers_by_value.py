"""Exact values of the small functions that decide the numbers users see, at their edges: the letterbox of any
shape, the reduced-decode size check, DARK on rotated and border peaks and its fall-backs, the heatmap decoder's
shapes and score clipping, training targets, angles at 0 and 180 degrees, the spacing range's ends, and the ISBI MW
classes. Written against the mutants a mutation run (setup.cfg [mutmut]) left alive."""
import math

import numpy as np
import pytest
from conftest import dicom_bytes

from sdk.decode import decode_heatmaps, gaussian_heatmaps, heatmap_to_input, input_to_heatmap
from sdk.errors import CephaloError, ImageError
from sdk.measurements import angle_at, isbi_mw_class, line_angle, measure
from sdk.preprocess import Letterbox, Preprocessing, letterbox_geometry, normalize, pad_pixel, resize_for_letterbox


@pytest.mark.parametrize("src,dst,want", [
    ((2400, 1935), (320, 320), Letterbox(2400, 1935, 320, 320, 320, 258, 0, 31)),
    ((500, 1000), (256, 256), Letterbox(500, 1000, 256, 256, 128, 256, 64, 0)),      # landscape: padded top
    ((1000, 500), (256, 192), Letterbox(1000, 500, 256, 192, 256, 128, 0, 32)),      # a non-square input
    ((300, 600), (192, 256), Letterbox(300, 600, 192, 256, 128, 256, 32, 0)),
    ((1, 1), (64, 64), Letterbox(1, 1, 64, 64, 64, 64, 0, 0)),
])
def test_letterbox_geometry_by_hand(src, dst, want):
    lb = letterbox_geometry(src, dst)
    assert lb == want
    assert lb.to_image(lb.to_input(np.array([[3.25, 7.5]]))) == pytest.approx(np.array([[3.25, 7.5]]))


@pytest.mark.parametrize("src", [(0, 10), (10, 0)])
def test_empty_image_size_is_an_error_naming_it(src):
    with pytest.raises(ImageError, match=f"image size {src[0]}x{src[1]} is empty"):
        letterbox_geometry(src, (64, 64))


def test_reduced_decode_size_is_the_ceiling_and_a_mismatch_says_so():
    lb = letterbox_geometry((1201, 967), (128, 128))
    ok = np.zeros((601, 484), np.uint8)                        # ceil(1201 / 2), ceil(967 / 2)
    assert resize_for_letterbox(ok, lb, 2).shape == (lb.new_h, lb.new_w)
    with pytest.raises(ImageError, match=r"image is \(600, 484\), letterbox was computed for \(1201, 967\) decoded at 1/2"):
        resize_for_letterbox(np.zeros((600, 484), np.uint8), lb, 2)
    with pytest.raises(ImageError, match=r"computed for \(1201, 967\)$"):
        resize_for_letterbox(np.zeros((600, 484), np.uint8), lb, 1)
    same = np.arange(128 * 100, dtype=np.uint8).reshape(128, 100)
    out = resize_for_letterbox(same, letterbox_geometry((128, 100), (128, 128)), 1)
    assert np.array_equal(out, same) and out.flags["C_CONTIGUOUS"]


def test_pad_and_normalise_values():
    assert [pad_pixel(v) for v in (0.0, 0.5, 1.0, 2.0, -1.0)] == [0, 128, 255, 255, 0]
    x = normalize(np.array([[0, 255]], np.uint8), 0.5, 0.25, 1)
    assert x.dtype == np.float32 and x.shape == (1, 1, 2) and x[0, 0].tolist() == [-2.0, 2.0]
    assert normalize(np.array([[0, 255]], np.uint8), 0.5, 0.25, 3).shape == (3, 1, 2)
    pre = Preprocessing([64, 48])
    assert pre.input_hw == (64, 48) and pre.key.endswith("64x48")


def _rotated_peak(hw, centre, sx, sy, theta, sigma_scale=1.0):
    h, w = hw
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    c, s = math.cos(theta), math.sin(theta)
    u = (xx - centre[0]) * c + (yy - centre[1]) * s
    v = -(xx - centre[0]) * s + (yy - centre[1]) * c
    return np.exp(-0.5 * ((u / sx) ** 2 + (v / sy) ** 2)).astype(np.float32)


@pytest.mark.parametrize("theta", [0.0, math.radians(30), math.radians(-50)])
def test_dark_recovers_rotated_elliptic_peaks(theta):
    """The cross derivative matters when the peak's axes are not the image's: an elliptic Gaussian rotated 30
    or -50 degrees is read to its true centre."""
    centre = (20.37, 14.71)
    hm = _rotated_peak((32, 40), centre, 2.5, 1.3, theta)
    xy, score = decode_heatmaps(hm[None], sigma=1.5)
    assert xy[0] == pytest.approx(centre, abs=0.06) and 0.9 < score[0] <= 1.0


@pytest.mark.parametrize("centre", [(0.3, 10.4), (38.8, 10.4), (20.2, 0.25), (20.2, 22.7)])
def test_dark_at_the_border(centre):
    """Peaks on the map's first or last row/column: derivatives are taken one pixel in, and the point still
    lands on the true centre."""
    hm = _rotated_peak((24, 40), centre, 1.5, 1.5, 0.0)
    xy, _ = decode_heatmaps(hm[None], sigma=1.5)
    assert xy[0] == pytest.approx(centre, abs=0.12)


def test_dark_falls_back_to_the_argmax_and_clips_its_step():
    ridge = np.zeros((12, 12), np.float32)
    ridge[5, :] = 1.0                           # no maximum along x: the argmax stands (first column)
    xy, _ = decode_heatmaps(ridge[None], sigma=1.5)
    assert xy[0].tolist() == [0.0, 5.0]
    # a spike next to a broad, slightly lower hill: the Newton step points far away and is clipped to 1.5 px
    hm = 0.9 * _rotated_peak((20, 40), (26.0, 10.0), 4.0, 4.0, 0.0)
    hm[10, 20] = 1.0
    xy, _ = decode_heatmaps(hm[None], sigma=1.5)
    assert xy[0, 0] == pytest.approx(21.5, abs=1e-9) and xy[0, 1] == pytest.approx(10.0, abs=0.01)


def test_decoder_shapes_scores_and_small_maps():
    rng = np.random.default_rng(1)
    hm = rng.random((2, 3, 4, 6)).astype(np.float32) * 0.5
    xy, scores = decode_heatmaps(hm)
    assert xy.shape == (2, 3, 2) and scores.shape == (2, 3) and xy.dtype == np.float64 and scores.dtype == np.float32
    hm[0, 0] = -0.5
    hm[1, 2] *= 10
    hm[1, 2, 1, 1] = 7.0
    _, scores = decode_heatmaps(hm)
    assert scores[0, 0] == 0.0 and scores[1, 2] == 1.0                 # clipped to [0, 1]
    two_rows = np.zeros((1, 2, 5), np.float32)
    two_rows[0, 1, 3] = 1.0
    assert decode_heatmaps(two_rows)[0][0].tolist() == [3.0, 1.0]      # too small for DARK: the argmax
    three = _rotated_peak((3, 3), (1.2, 0.9), 1.0, 1.0, 0.0)
    assert decode_heatmaps(three[None])[0][0] != pytest.approx([1.0, 1.0])   # 3x3 is enough for DARK
    with pytest.raises(ValueError, match="NaN or infinity"):
        decode_heatmaps(np.full((1, 4, 4), np.nan, np.float32))


def test_heatmap_mapping_and_training_targets_by_value():
    assert heatmap_to_input(np.array([0, 2]), 4).tolist() == [1.5, 9.5]
    assert input_to_heatmap(np.array([1.5, 9.5]), 4).tolist() == [0.0, 2.0]
    assert heatmap_to_input(np.array([1], np.int64), 4).dtype == np.float64
    t = gaussian_heatmaps(np.array([[3.5, 2.0], [-0.6, 2.0], [3.0, 8.6], [9.0, 2.0]]), (6, 8), 1.5)
    assert t.dtype == np.float32 and t.shape == (4, 6, 8)
    yy, xx = np.mgrid[0:6, 0:8]
    want = np.exp(-((xx - 3.5) ** 2 + (yy - 2.0) ** 2) / (2 * 1.5 ** 2))
    assert np.allclose(t[0], want, atol=1e-6)
    assert not t[1].any() and not t[2].any() and not t[3].any()     # points off the map: no target at all
    edge = gaussian_heatmaps(np.array([[-0.5, 5.5], [7.5, -0.5]]), (6, 8), 1.5)
    assert edge[0].max() > 0 and edge[1].max() > 0                    # on the map's outer edge: still targets


def test_angles_at_their_ends_and_degenerate_vectors():
    o = np.zeros(2)
    assert angle_at(o, np.array([1, 0]), np.array([-2, 0])) == pytest.approx(180.0)
    assert angle_at(o, np.array([1, 0]), np.array([3, 0])) == pytest.approx(0.0)
    assert angle_at(o, np.array([1, 0]), np.array([0, 5])) == pytest.approx(90.0)
    assert angle_at(o, np.array([1e-7, 0]), np.array([0, 1e-7])) == pytest.approx(90.0)   # tiny, not zero
    assert line_angle(o, np.array([1, 0]), o, np.array([-1, 0])) == pytest.approx(0.0)     # lines, not rays
    assert line_angle(o, np.array([1, 1]), o, np.array([-1, 1])) == pytest.approx(90.0)
    assert line_angle(o, np.array([1e-7, 0]), o, np.array([1e-7, 1e-7])) == pytest.approx(45.0)


def test_the_profile_direction_comes_from_x_not_y():
    """A profile placed anywhere on the image, facing right or left, gives the same signed values."""
    from test_measurements import _mirror, skull

    base = skull(sna=80, snb=83, overjet_px=-25.0)
    shifted = {k: v + np.array([300.0, 700.0]) for k, v in base.items()}
    for p in (shifted, _mirror(shifted, 2000.0)):
        m = measure(p, spacing=0.1)
        assert m["ANB"]["value"] == pytest.approx(-3.0, abs=1e-3) and m["MW"]["value"] == pytest.approx(-2.5, abs=1e-3)
        assert m["SNA"]["norm_mean"] == 82.0 and m["SNA"]["norm_sd"] == 3.5
        assert m["ANB"]["isbi_class_meaning"] == "skeletal Class III"


def test_isbi_mw_classes_and_meanings():
    assert [isbi_mw_class(v) for v in (3.0, 4.5, 4.51, 0.0, 1.0, -2.0)] == [
        ("C1", "normal overjet"), ("C1", "normal overjet"), ("C4", "large overjet"), ("C2", "edge to edge"),
        ("C3", "anterior crossbite or small overjet"), ("C3", "anterior crossbite or small overjet")]


@pytest.mark.parametrize("value", [0.01, 1.0])
def test_spacing_range_ends_are_accepted(value):
    from sdk.spacing import check_spacing, plausible

    assert check_spacing(value) == value and plausible(value)
    assert not plausible(value * (0.99 if value == 0.01 else 1.01)) and not plausible(None)


def test_spacing_messages_name_the_range_and_the_likely_mistake():
    from sdk.spacing import check_spacing

    with pytest.raises(CephaloError) as e:
        check_spacing(10.0, "--spacing")
    msg = str(e.value)
    assert msg == ("--spacing: pixel spacing 10.0 mm per pixel is outside the plausible range 0.01-1 mm for a "
                   "radiograph (did you give pixels per mm? 10 px/mm is 0.1 mm/px)")
    with pytest.raises(CephaloError) as e:
        check_spacing(0.001)
    assert str(e.value) == ("spacing=: pixel spacing 0.001 mm per pixel is outside the plausible range 0.01-1 mm "
                            "for a radiograph")
    with pytest.raises(CephaloError) as e:
        check_spacing("0.1")
    assert str(e.value) == "spacing=: pixel spacing must be a number of mm per pixel, got '0.1' (str)"


def test_unavailable_names_what_is_missing_exactly():
    from sdk.measurements import unavailable
    from sdk.schemas import ISBI19

    u = unavailable(ISBI19, spacing=None)
    assert u["Interincisal angle"] == ("needs upper_incisor_apex, lower_incisor_apex, which schema 'isbi19' does "
                                       "not have")
    assert u["MW"] == "a distance: needs a pixel spacing (spacing=, DICOM, or a ruler)"
    assert "MW" not in unavailable(ISBI19) and "MW" not in unavailable(ISBI19, spacing=0.1)


def test_dicom_pixels_are_stretched_to_16_bits_exactly():
    from sdk.dicom import read_dicom

    px = np.tile(np.linspace(100, 4000, 40), (32, 1)).astype(np.uint16)
    got, spacing, notes = read_dicom(dicom_bytes(px), "a.dcm")
    want = np.rint((px.astype(np.float64) - 100) * (65535.0 / 3900)).astype(np.uint16)
    assert got.dtype == np.uint16 and np.array_equal(got, want) and spacing is None and notes == ()
    inv, _, _ = read_dicom(dicom_bytes(px, "MONOCHROME1"), "b.dcm")          # high values are dark
    assert np.array_equal(inv, 65535 - want)
    flat, _, _ = read_dicom(dicom_bytes(np.full((8, 8), 700)), "c.dcm")
    assert flat.dtype == np.uint16 and not flat.any()                          # no contrast: all black
    frames = np.stack([px, px[:, ::-1]])
    first, _, _ = read_dicom(dicom_bytes(frames), "d.dcm")
    assert np.array_equal(first, want)                                          # multi-frame: the first


@pytest.mark.parametrize("tags,spacing,note", [
    (dict(ImagerPixelSpacing=[0.1, 0.12]), 0.11, None),                          # non-square: averaged
    (dict(ImagerPixelSpacing=[0.1, 0.0], PixelSpacing=[0.2, 0.2]), 0.2,
     "DICOM ImagerPixelSpacing [0.1, 0.0] mm is not a usable spacing (expected 0.01-1 mm); ignored"),
    (dict(PixelSpacing=[5.0, 5.0]), None,
     "DICOM PixelSpacing [5.0, 5.0] mm is not a usable spacing (expected 0.01-1 mm); ignored"),
])
def test_dicom_spacing_tags_by_value(tags, spacing, note):
    from sdk.dicom import read_dicom

    _, got, notes = read_dicom(dicom_bytes(np.arange(64).reshape(8, 8), **tags), "s.dcm")
    assert got == (pytest.approx(spacing) if spacing is not None else None)
    if note is None:
        assert notes == ()
    else:
        assert notes[0] == note
        assert ((notes[-1] == "no pixel spacing from the file: pass spacing= (--spacing) for millimetres")
                == (spacing is None))


def test_prepare_wires_decode_reduction_keep_and_every_field(tmp_path):
    import cv2

    from sdk.preprocess import prepare, preprocess

    g = (np.indices((1200, 968)).sum(axis=0) % 256).astype(np.uint8)
    data = cv2.imencode(".jpg", g, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
    pre = Preprocessing((128, 128), pad_value=0.5)
    assert pre.prepare(data)[2].reduction == 4                      # large enough for 1/4 at the 2x margin
    assert pre.prepare(data, keep=3.0)[2].reduction == 2            # a finer scale kept (the local stage's)
    assert pre.prepare(data, fast_decode=False)[2].reduction == 1
    x, lb, loaded = prepare(data, (128, 128), 0.5, 0.25, 0.5)     # the free function: same defaults and fields
    assert loaded.reduction == 4 and np.array_equal(x, pre.prepare(data)[0])
    assert lb.pad_left > 0 and np.isclose(x[0, 0, 0], (128 / 255 - 0.5) / 0.25, atol=1e-6)   # the pad value
    assert prepare(data, (128, 128), 0.5, 0.25, 0.5, keep=3.0)[2].reduction == 2
    small = loaded.gray
    a, lb_a = preprocess(small, (128, 128), 0.5, 0.25, 0.0, src_hw=loaded.full_hw, reduction=4)
    assert a.shape == (1, 128, 128) and (lb_a.src_h, lb_a.src_w) == (1200, 968)


def test_shrinking_averages_pixels_and_channels_repeat():
    checker = (np.indices((400, 400)).sum(axis=0) % 2 * 255).astype(np.uint8)
    small = resize_for_letterbox(checker, letterbox_geometry((400, 400), (100, 100)), 1)
    assert np.abs(small.astype(int) - 128).max() <= 1                  # area averaging, not a sampled checkerboard
    assert normalize(np.zeros((2, 2), np.uint8), 0.0, 1.0, 2).shape == (2, 2, 2)


def test_ahead_and_convexity_do_not_depend_on_the_line_direction():
    from sdk.measurements import _ahead

    a, b, p = np.array([0.0, 0.0]), np.array([10.0, 100.0]), np.array([30.0, 50.0])
    assert _ahead(p, a, b) == pytest.approx(_ahead(p, b, a)) and _ahead(p, a, b) > 0
    q = {"nasion": np.array([0.0, 0.0]), "pogonion": np.array([0.0, 100.0]), "subspinale": np.array([0.5, 50.0])}
    assert measure(q)["Angle of convexity"]["value"] > 0                 # half a pixel ahead is ahead


def test_profile_direction_with_a_vertical_offset_and_values_rounded_to_3_places():
    from test_measurements import skull

    p = {k: v + np.array([300.0, 50.0]) for k, v in skull(overjet_px=30.0).items()}
    m = measure(p, spacing=0.1)
    assert m["MW"]["value"] == pytest.approx(3.0, abs=1e-3)              # facing right: not mirrored
    assert all(round(e["value"], 3) == e["value"] for e in m.values())
    with pytest.raises(ValueError, match="choose from isbi2015, steiner, downs, tweed, mcnamara, ricketts"):
        measure(p, analyses=["nope"])


def test_targets_stop_at_the_map_edge_and_the_default_decoder_is_dark():
    from sdk.decode import decode_to_image

    t = gaussian_heatmaps(np.array([[8.2, 2.0], [3.0, -1.0], [3.0, 6.3]]), (6, 8), 1.5)
    assert not t.any()                           # just past the right, top and bottom edges: no target
    hm = _rotated_peak((16, 16), (7.3, 8.6), 1.5, 1.5, 0.0)
    lb = letterbox_geometry((64, 64), (64, 64))
    xy, _ = decode_to_image(hm[None], lb, 4, 1.5)
    assert xy[0] == pytest.approx([(7.3 + 0.5) * 4 - 0.5, (8.6 + 0.5) * 4 - 0.5], abs=0.2)


def test_dark_keeps_the_argmax_at_a_dip_and_clips_steps_both_ways():
    yy, xx = np.mgrid[0:21, 0:21]
    ring = 0.8 * np.exp(-0.5 * ((np.hypot(xx - 10, yy - 10) - 3.0) / 0.8) ** 2).astype(np.float32)
    ring[10, 10] = 1.0                           # the argmax sits in the middle of a brighter ring: a dip
    xy, _ = decode_heatmaps(ring[None], sigma=1.5)
    assert xy[0].tolist() == [10.0, 10.0]
    hm = 0.9 * _rotated_peak((20, 40), (14.0, 10.0), 4.0, 4.0, 0.0)
    hm[10, 20] = 1.0                             # the hill on the left this time
    xy, _ = decode_heatmaps(hm[None], sigma=1.5)
    assert xy[0, 0] == pytest.approx(18.5, abs=1e-9)


def test_dicom_errors_rgb_window_and_a_malformed_spacing_tag(monkeypatch):
    import sys

    from sdk.dicom import read_dicom

    with pytest.raises(ImageError, match=r"DICOM bad.dcm: cannot decode its pixels"):
        read_dicom(b"DICM" + b"\0" * 200, "bad.dcm")
    px = np.tile(np.linspace(0, 4000, 40), (32, 1)).astype(np.uint16)
    windowed, _, _ = read_dicom(dicom_bytes(px, WindowCenter=1000, WindowWidth=500), "w.dcm")
    plain, _, _ = read_dicom(dicom_bytes(px), "p.dcm")
    # the VOI window (1000 +- 250) was applied: everything above it saturates, where the plain stretch had one
    assert windowed[0, 0] == 0 and (windowed[0] == 65535).sum() > 20 and (plain[0] == 65535).sum() == 1
    _, s, notes = read_dicom(dicom_bytes(px, ImagerPixelSpacing=[0.1], PixelSpacing=[0.2, 0.2]), "m.dcm")
    assert s == pytest.approx(0.2) and notes[0].startswith("DICOM ImagerPixelSpacing") and "pair" in notes[0]
    monkeypatch.setitem(sys.modules, "pydicom", None)
    with pytest.raises(ImageError, match="image x.dcm is DICOM; install the 'dicom' extra"):
        read_dicom(b"", "x.dcm")


def test_dicom_colour_pixels_are_not_taken_for_frames():
    from conftest import dicom_bytes

    from sdk.dicom import read_dicom

    rgb = np.zeros((16, 20, 3), np.uint8)
    rgb[..., 0] = np.arange(20, dtype=np.uint8)[None, :] * 10
    got, _, _ = read_dicom(dicom_bytes(rgb, "RGB"), "rgb.dcm")
    assert got.shape == (16, 20, 3)


def test_resize_rule_is_area_when_shrinking_and_linear_when_enlarging():
    import cv2

    rng = np.random.default_rng(3)
    g = rng.integers(0, 256, (400, 400), dtype=np.uint8)
    small = resize_for_letterbox(g, letterbox_geometry((400, 400), (100, 100)), 1)
    block = g.reshape(100, 4, 100, 4).astype(np.float64).mean(axis=(1, 3))
    assert np.abs(small.astype(np.float64) - block).max() <= 0.5001      # 4x4 block means: area averaging
    wide = rng.integers(0, 256, (50, 200), dtype=np.uint8)
    lb = letterbox_geometry((50, 200), (256, 256))
    assert np.array_equal(resize_for_letterbox(wide, lb, 1),
                          cv2.resize(wide, (lb.new_w, lb.new_h), interpolation=cv2.INTER_LINEAR))


def test_line_angle_and_signed_distance_off_the_axes():
    from sdk.measurements import _ahead

    o = np.zeros(2)
    assert line_angle(o, np.array([1.0, 2.0]), o, np.array([2.0, 1.0])) == pytest.approx(math.degrees(math.atan2(3, 4)))
    a, b, p = np.array([5.0, 10.0]), np.array([15.0, 110.0]), np.array([40.0, 60.0])
    assert _ahead(p, a, b) == pytest.approx(_ahead(p, b, a)) == pytest.approx(30 * 100 / math.hypot(10, 100))
    with pytest.raises(ValueError, match="^heatmaps contain NaN or infinity$"):
        decode_heatmaps(np.full((1, 4, 4), np.inf, np.float32))
