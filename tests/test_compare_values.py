"""sdk.compare and sdk.superimpose by value, on readings made up for the purpose (no model): the turning geometry,
the superimpositions' frame and signs, the reading-error rule, a measurement's propagated spread, the steadied
reading, and every cell of the CSV."""
import csv
import json
import math

import cv2
import numpy as np
import pytest

from sdk.compare import (
    DEFAULT_MM,
    MIN_MM,
    READING_MM,
    CompareError,
    _error_mm,
    _measure_spread,
    compare,
    steady_reading,
    turned,
    write_outputs,
)
from sdk.result import Landmarks
from sdk.schemas import ISBI19
from sdk.superimpose import REGIONS, Registration, rigid_fit, start

NAMES = tuple(ISBI19.names)
# a plausible face to the right, S-N level (pixels at 0.1 mm): enough for every ISBI measurement
BASE = {"sella": (700, 800), "nasion": (1400, 800), "orbitale": (1250, 950), "porion": (550, 1000),
        "subspinale": (1380, 1300), "supramentale": (1330, 1700), "pogonion": (1340, 1850), "menton": (1290, 1950),
        "gnathion": (1320, 1920), "gonion": (800, 1700), "lower_incisal_incision": (1390, 1500),
        "upper_incisal_incision": (1410, 1490), "upper_lip": (1500, 1450), "lower_lip": (1480, 1620),
        "subnasale": (1480, 1300), "soft_tissue_pogonion": (1440, 1880), "posterior_nasal_spine": (900, 1230),
        "anterior_nasal_spine": (1430, 1220), "articulare": (650, 1250)}
XY = np.array([BASE[n] for n in NAMES], np.float64)


def reading(xy=XY, spacing=0.1, flags=None, repaired=(), reliability=None, size=(2400, 1935)):
    return Landmarks(np.asarray(xy, np.float64), np.full(len(NAMES), 0.9, np.float32), NAMES, size, spacing,
                     "caller" if spacing else None, "isbi19",
                     point_flags=tuple(flags or ("",) * len(NAMES)), repaired=tuple(repaired),
                     reliability=None if reliability is None else np.asarray(reliability, np.float64))


def _i(name):
    return NAMES.index(name)


def test_turned_holds_the_whole_image_and_its_matrix_maps_pixels():
    img = np.zeros((40, 60), np.uint8)
    img[5, 10] = 255
    for deg in (30.0, -12.0, 90.0):
        out, m = turned(img, deg)
        a = math.radians(deg)
        assert out.shape == (math.ceil(40 * abs(math.cos(a)) + 60 * abs(math.sin(a))),
                             math.ceil(40 * abs(math.sin(a)) + 60 * abs(math.cos(a))))
        corners = np.array([[0, 0], [59, 0], [0, 39], [59, 39]], np.float64) @ m[:, :2].T + m[:, 2]
        assert corners.min() >= -0.5 and (corners[:, 0] <= out.shape[1] - 0.5).all() \
            and (corners[:, 1] <= out.shape[0] - 0.5).all()
        y, x = np.unravel_index(np.argmax(out), out.shape)
        assert np.abs(np.array([x, y]) - (m[:, :2] @ [10, 5] + m[:, 2])).max() <= 1.0
        # counter-clockwise on screen: the image's right points up-right
        assert m[1, 0] == pytest.approx(-math.sin(a)) and m[0, 0] == pytest.approx(math.cos(a))


def test_rigid_fit_and_starts():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (5, 2))
    a = math.radians(7.0)
    r = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    dst = src @ r.T + [3.0, -2.0]
    angle, t = rigid_fit(src, dst)
    assert angle == pytest.approx(7.0) and np.allclose(t, [3.0, -2.0])
    b = {n: XY[i] * 0.1 for i, n in enumerate(NAMES)}
    moved = {n: (p - b["sella"]) @ r.T + b["sella"] + [1.0, 2.0] for n, p in b.items()}
    reg = start(REGIONS[0], b, moved)
    assert reg.angle_deg == pytest.approx(-7.0) and reg.residual_mm == pytest.approx(0.0, abs=1e-9)
    assert np.allclose(reg.apply(moved["menton"]), b["menton"]) and np.allclose(reg.inverse(b["menton"]),
                                                                                moved["menton"])
    assert reg.centre == pytest.approx((b["sella"] + b["nasion"]) / 2) and reg.span_mm == pytest.approx(70.0)
    assert start(REGIONS[0], {"sella": b["sella"]}, moved) is None
    d = reg.to_dict()
    assert d["rotation_deg"] == pytest.approx(-7.0, abs=1e-3) and d["method"] == "landmarks (an approximation)"
    # the registration's error grows with the distance from its landmarks, by the turn its residual allows
    r2 = Registration("x", "x", 0.0, np.zeros(2), ("a", "b"), centre=np.zeros(2), span_mm=40.0, residual_mm=0.5)
    assert r2.error_at([0, 0]) == pytest.approx(0.5)
    assert r2.error_at([30, 40]) == pytest.approx(math.hypot(0.5, 0.5 / 20 * 50))
    r2.span_mm = 4.0                          # a short span: the turn is bounded by a 10 mm half-span
    assert r2.error_at([0, 10]) == pytest.approx(math.hypot(0.5, 0.5 / 10 * 10))


def test_the_reading_error_rule():
    b, a = reading(), reading()
    assert _error_mm(b, a, "sella") == (pytest.approx(READING_MM["sella"]), False)
    assert _error_mm(b, a, "gonion")[0] == pytest.approx(READING_MM["gonion"])
    rel = np.full(len(NAMES), 0.9)
    rel[_i("nasion")] = 0.5
    assert _error_mm(reading(reliability=rel), a, "nasion")[0] == pytest.approx(READING_MM["nasion"] / 0.5)
    rel[_i("nasion")] = 0.1                   # at least 0.25
    assert _error_mm(b, reading(reliability=rel), "nasion")[0] == pytest.approx(READING_MM["nasion"] / 0.25)
    flags = [""] * len(NAMES)
    flags[_i("menton")] = "low_peak"
    assert _error_mm(reading(flags=flags), a, "menton") == (pytest.approx(3 * max(READING_MM["menton"], MIN_MM)),
                                                          True)
    rep = [False] * len(NAMES)
    rep[_i("menton")] = True
    assert _error_mm(b, reading(repaired=rep), "menton")[1] is True
    assert DEFAULT_MM == 1.0 and MIN_MM == 0.25


def test_a_measurements_spread_is_propagated_from_its_landmarks():
    """SNA's spread, by its derivatives: a point at distance L from the vertex moves the angle by 1/L rad per mm
    across; the vertex by the sum of both arms' gradients."""
    res = reading()
    e = {n: 0.5 for n in NAMES}
    got = _measure_spread(res, "SNA", e, 0.1)
    s, n, a = (XY[_i(k)] * 0.1 for k in ("sella", "nasion", "subspinale"))
    sd = 0.5 / 2.448

    def grad(p, v):                           # d angle / d p for the arm v -> p, a vector of 1/L across the arm
        d = p - v
        return np.array([-d[1], d[0]]) / (d @ d)

    gs, ga = grad(s, n), grad(a, n)
    want = math.degrees(sd * math.sqrt(gs @ gs + ga @ ga + (gs + ga) @ (gs + ga)))
    assert got == pytest.approx(want, rel=0.02)
    assert _measure_spread(res, "SNA", {n: 1.0 for n in NAMES}, 0.1) == pytest.approx(2 * got, rel=1e-6)
    assert _measure_spread(res, "no such measurement", e, 0.1) is None


def test_compare_by_value(tmp_path):
    b = reading()
    xy = XY.copy()
    for name in ("pogonion", "menton", "gnathion", "supramentale"):
        xy[_i(name)] += (20.0, 10.0)          # 2 mm forward, 1 mm down
    a = reading(xy)
    out = compare(b, a, labels=("early.png", "late.png"))
    assert out["units"] == "mm" and out["before"]["label"] == "early.png" and out["after"]["mirrored"] is False
    rows = {r["name"]: r for r in out["displacements"]["overall"]}
    assert rows["pogonion"]["dx_mm"] == pytest.approx(2.0) and rows["pogonion"]["dy_mm"] == pytest.approx(1.0)
    assert rows["pogonion"]["distance_mm"] == pytest.approx(math.hypot(2, 1), abs=1e-3)
    assert not rows["pogonion"]["within_reading_error"] and rows["sella"]["within_reading_error"]
    assert rows["pogonion"]["limit_mm"] == pytest.approx(READING_MM["pogonion"], abs=1e-3)   # residual 0
    assert set(out["superimpositions"]) == {"overall", "maxilla", "mandible"}
    assert [r["name"] for r in out["displacements"]["maxilla"]] == [n for n in NAMES if n in REGIONS[1].shows]
    mand = {r["name"]: r for r in out["displacements"]["mandible"]}
    assert set(mand) == set(REGIONS[2].shows)
    sna = out["changes"]["SNA"]
    assert sna["change"] == pytest.approx(0.0, abs=1e-6) and sna["within_reading_error"] is True
    snb = out["changes"]["SNB"]
    assert snb["change"] == pytest.approx(snb["after"] - snb["before"], abs=2e-3) and snb["change"] > 0.5
    assert snb["limit"] == pytest.approx(2.576 * _measure_spread(b, "SNB", {n: _error_mm(b, a, n)[0] for n in NAMES},
                                                                 0.1), abs=2e-3)
    assert snb["within_reading_error"] is (abs(snb["change"]) <= snb["limit"])
    assert "isbi_class_before" in out["changes"]["ANB"]
    assert out["before_on_after_px"][_i("menton")] == pytest.approx(list(XY[_i("menton")]), abs=0.01)
    # the same, the later image mirrored (a face to the left): the same numbers, and said
    m = xy.copy()
    m[:, 0] = 1935 - 1 - m[:, 0]
    mo = compare(b, reading(m))
    assert mo["after"]["mirrored"] is True and any("mirrored" in n for n in mo["notes"])
    for r, q in zip(mo["displacements"]["overall"], out["displacements"]["overall"]):
        assert r["dx_mm"] == pytest.approx(q["dx_mm"], abs=1e-6) and r["dy_mm"] == pytest.approx(q["dy_mm"], abs=1e-6)
    assert mo["before_on_after_px"][_i("menton")][0] == pytest.approx(1935 - 1 - XY[_i("menton"), 0], abs=0.01)
    # the earlier tracing carried onto a later image of the same head, turned and shifted: onto its points, to
    # the hundredth of a pixel
    t = math.radians(3.0)
    turn = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    moved = (XY - 1000.0) @ turn.T + 1000.0 + [5.5, -3.25]
    carried = np.array(compare(b, reading(moved))["before_on_after_px"])
    assert np.abs(carried - moved).max() <= 0.006 and np.array_equal(carried, np.round(carried, 2))
    # without a spacing: pixels, angles only, said
    po = compare(reading(spacing=None), reading(xy, spacing=None))
    assert po["units"].startswith("px") and "dx_px" in po["displacements"]["overall"][0]
    assert po["displacements"]["overall"][_i("pogonion")]["dx_px"] == pytest.approx(20.0)
    assert any("angles only" in n for n in po["notes"])
    # sella doubtful in the later reading: the overall superimposition is doubtful, and said
    flags = [""] * len(NAMES)
    flags[_i("sella")] = "low_peak"
    do = compare(b, reading(xy, flags=flags))
    assert do["doubtful"] == ["sella is doubtful in after: the overall superimposition is doubtful"]
    with pytest.raises(CompareError, match="different landmark sets"):
        compare(b, Landmarks(XY[:18], np.ones(18, np.float32), NAMES[:18], (2400, 1935), 0.1, "caller", ""))
    with pytest.raises(CompareError, match="after: not read as a cephalogram"):
        compare(b, Landmarks(XY, np.ones(19, np.float32), NAMES, (2400, 1935), 0.1, "caller", "isbi19",
                             flags=("low_confidence",)))
    # every cell of the CSV is the JSON's
    gray = np.full((2400, 1935), 90, np.uint8)
    paths = write_outputs(out, a, gray, tmp_path / "o")
    assert [p.name for p in paths] == ["compare.json", "compare.csv", "compare.png"]
    assert json.loads(paths[0].read_text()) == json.loads(json.dumps(out))
    rows = list(csv.DictReader(open(paths[1], newline="")))
    disp = [r for r in rows if r["kind"] == "displacement"]
    assert len(disp) == sum(len(v) for v in out["displacements"].values())
    for r in disp:
        j = {x["name"]: x for x in out["displacements"][r["superimposition"]]}[r["name"]]
        assert (float(r["dx"]), float(r["dy"]), float(r["distance"]), float(r["limit"])) == \
            (j["dx_mm"], j["dy_mm"], j["distance_mm"], j["limit_mm"])
        assert r["unit"] == "mm" and r["within_reading_error"] == str(j["within_reading_error"])
        assert r["doubtful"] == str(j["doubtful"]) and r["before"] == r["after"] == r["change"] == ""
    ch = [r for r in rows if r["kind"] == "change"]
    assert [r["name"] for r in ch] == list(out["changes"])
    for r in ch:
        j = out["changes"][r["name"]]
        assert (float(r["before"]), float(r["after"]), float(r["change"])) == (j["before"], j["after"], j["change"])
        assert r["unit"] == j["unit"] and r["limit"] == ("" if j["limit"] is None else str(j["limit"]))
        assert r["within_reading_error"] == str(j["within_reading_error"]) and r["doubtful"] == str(j["doubtful"])
        assert r["superimposition"] == r["dx"] == r["dy"] == r["distance"] == ""
    png = cv2.imread(str(paths[2]))
    assert png.shape[0] == 2400 and png.shape[1] > 1935
    # the later image faded under the tracings: its grey 90 shows as 128 + 45
    assert (png[5, 5] == 173).all()


class _Fake:
    """A detector that reads the same anatomy wherever the image puts it: points carried by the turn it was given
    (the test's own ``turned``), and a record of each call."""

    def __init__(self, xy, tilt):
        self.xy, self.tilt, self.calls = xy, tilt, []

    def __call__(self, image, spacing=None):
        self.calls.append((image.shape, spacing))
        if len(self.calls) == 1:
            return reading(self.xy, spacing=spacing)
        _, m = turned(np.zeros(self.shape, np.uint8), -self.turn)
        return reading(self.xy @ m[:, :2].T + m[:, 2] + 1.0, spacing=0.3)    # 1 px off, to see the mean


def test_steady_reading_reads_a_tilted_head_again_and_averages():
    a = math.radians(12.0)                   # S-N turned 12 deg from level: head_turn asks for -18.5 deg
    xy = XY.copy()
    xy[_i("nasion")] = XY[_i("sella")] + 700 * np.array([math.cos(a), math.sin(a)])
    fake = _Fake(xy, 12.0)
    fake.shape, fake.turn = (2400, 1935), -18.5
    img = np.zeros((2400, 1935), np.uint8)
    res, turn = steady_reading(fake, img, img, 0.1)
    assert turn == -18.5 and len(fake.calls) == 2
    assert fake.calls[0] == ((2400, 1935), 0.1) and fake.calls[1][1] == 0.1        # the first's spacing
    assert fake.calls[1][0] == turned(img, 18.5)[0].shape
    _, m = turned(img, 18.5)
    back = ((xy @ m[:, :2].T + m[:, 2] + 1.0) - m[:, 2]) @ np.linalg.inv(m[:, :2]).T
    assert np.allclose(res.xy, (xy + back) / 2) and res.spacing == 0.1
    level = XY.copy()
    level[_i("nasion")] = XY[_i("sella")] + 700 * np.array([math.cos(math.radians(-6.3)),
                                                            math.sin(math.radians(-6.3))])
    fake = _Fake(level, 0.0)
    res, turn = steady_reading(fake, img, img, 0.1)
    assert turn == 0.0 and len(fake.calls) == 1 and np.array_equal(res.xy, level)


def _texture(h, w, seed):
    """A smooth random texture (grey levels 20-235): something for the image registration to hold on to."""
    g = cv2.GaussianBlur(np.random.default_rng(seed).uniform(0, 255, (h, w)).astype(np.float32), (0, 0), 3)
    return cv2.normalize(g, None, 20, 235, cv2.NORM_MINMAX).astype(np.uint8)


def _moved(img, deg, shift, about):
    m = cv2.getRotationMatrix2D(about, deg, 1.0)
    m[:, 2] += shift
    return cv2.warpAffine(img, m, (img.shape[1], img.shape[0]), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT), m


def test_refine_holds_to_its_region_and_says_when_it_cannot():
    """The anterior cranial base box moves by one rigid transform, the rest of the image by another: the refined
    overall superimposition finds the box's, from a start 1 deg and 1 mm off. A flat region, missing landmarks
    and a start far off are refused by name, the landmarks' start kept."""
    from sdk.superimpose import refine

    mm = 0.5
    before_img = _texture(600, 700, 1)
    s, n = np.array([150.0, 250.0]), np.array([450.0, 250.0])            # px; S-N level, 150 mm long
    inside, m_in = _moved(before_img, 2.0, (4.0, -3.0), (300.0, 250.0))
    outside, _ = _moved(before_img, -4.0, (-12.0, 9.0), (300.0, 250.0))
    box = np.zeros(before_img.shape, bool)
    box[250 - 30:250 + 31, 150 - 20:450 + 21] = True                   # the region: 12 mm across, 8 mm beyond
    after_img = np.where(box, inside, outside)
    # after px = m_in @ before px inside the box; the registration maps after mm -> before mm
    r_true = np.linalg.inv(m_in[:, :2])
    t_true = -r_true @ m_in[:, 2]
    before = {"sella": s * mm, "nasion": n * mm}
    start = Registration("overall", "anterior cranial base", float(np.degrees(np.arctan2(r_true[1, 0], r_true[0, 0])))
                         + 1.0, t_true * mm + [1.0, 0.0], ("sella", "nasion"))
    got = refine(start, REGIONS[0], before, before_img, mm, after_img, mm)
    assert got.image == "refined" and got.score > 0.9
    assert got.angle_deg == pytest.approx(np.degrees(np.arctan2(r_true[1, 0], r_true[0, 0])), abs=0.05)
    probe = np.array([[200.0, 240.0], [400.0, 260.0]])                  # before px inside the box
    in_after = probe @ m_in[:, :2].T + m_in[:, 2]
    assert np.abs(got.apply(in_after * mm) - probe * mm).max() < 0.05
    flat = np.full_like(before_img, 100)
    reg = Registration("overall", "x", 0.0, np.zeros(2), ("sella", "nasion"))
    assert refine(reg, REGIONS[0], before, flat, mm, after_img, mm).image == \
        "not refined: the region is flat in one image"
    reg = Registration("overall", "x", 0.0, np.zeros(2), ("sella", "nasion"))
    assert refine(reg, REGIONS[0], before, before_img, mm, flat, mm).image == \
        "not refined: the region is flat in one image"
    reg = Registration("mandible", "x", 0.0, np.zeros(2), ("gonion", "menton"))
    assert refine(reg, REGIONS[2], {"menton": s * mm}, before_img, mm, after_img, mm).image == \
        "not refined: the region's landmarks are missing"
    reg = Registration("overall", "x", 0.0, np.zeros(2), ("sella", "nasion"))
    assert refine(reg, REGIONS[0], {"sella": s * mm, "nasion": s * mm + 0.5}, before_img, mm, after_img,
                  mm).image == "not refined: the region's landmarks are missing"        # S on N: no axis
    # a start 8 mm off: the image registration finds the nearest fit far from it, or none; either way dropped
    reg = Registration("overall", "x", float(np.degrees(np.arctan2(r_true[1, 0], r_true[0, 0]))),
                       t_true * mm + [8.0, 0.0], ("sella", "nasion"))
    far = refine(reg, REGIONS[0], before, before_img, mm, _texture(600, 700, 9), mm)
    assert far.image.startswith("not refined") and far.notes and np.allclose(far.t, t_true * mm + [8.0, 0.0])


def test_the_symphysis_box_and_the_axis_boxes():
    from sdk.superimpose import SYMPHYSIS, _box

    pts = {n: np.array(p, np.float64) for n, p in zip(SYMPHYSIS, [(10, 20), (12, 30), (11, 34), (9, 36)])}
    c, u, hl, hw = _box(REGIONS[2], pts)
    assert np.allclose(c, [10.5, 30.0]) and np.allclose(u, [1, 0]) and (hl, hw) == (9.0, 9.0)
    assert _box(REGIONS[2], {"menton": pts["menton"]}) is None
    two = {k: pts[k] for k in ("pogonion", "menton")}
    assert np.allclose(_box(REGIONS[2], two)[0], (pts["pogonion"] + pts["menton"]) / 2)
    b = {"posterior_nasal_spine": np.array([0.0, 0.0]), "anterior_nasal_spine": np.array([30.0, 40.0])}
    c, u, hl, hw = _box(REGIONS[1], b)
    assert np.allclose(c, [15, 20]) and np.allclose(u, [0.6, 0.8])
    assert hl == pytest.approx(25.0 + REGIONS[1].pad_along) and hw == REGIONS[1].across
    assert _box(REGIONS[1], {"posterior_nasal_spine": np.zeros(2), "anterior_nasal_spine": np.array([0.6, 0.6])}) \
        is None
    assert _box(REGIONS[1], {"posterior_nasal_spine": np.zeros(2), "anterior_nasal_spine": np.array([1.2, 0.0])}) \
        is not None


def test_compare_says_what_and_whom_exactly(tmp_path):
    """The refusals and notes name the image; the frame is S-N's own (a tilted S-N too); values are rounded to
    the thousandth; a doubtful landmark marks the measurements that use it; the later image's picture carries the
    earlier tracing by the overall superimposition even when a regional one differs."""
    b = reading()
    with pytest.raises(CompareError, match=r"^late\.png: not read as a cephalogram \(low_confidence, "
                                           r"implausible_shape\): nothing to compare$"):
        compare(b, Landmarks(XY, np.ones(19, np.float32), NAMES, (2400, 1935), 0.1, "caller", "isbi19",
                             flags=("low_confidence", "implausible_shape")), labels=("early.png", "late.png"))
    names = ("a", "b") + NAMES[2:]
    with pytest.raises(CompareError, match=r"^the landmarks read \(custom\) have no sella: no superimposition$"):
        compare(*(Landmarks(XY, np.ones(19, np.float32), names, (2400, 1935), 0.1, "caller", "") for _ in "ab"))
    with pytest.raises(CompareError, match=r"^early\.png and late\.png were read with different landmark sets"):
        compare(b, Landmarks(XY[:18], np.ones(18, np.float32), NAMES[:18], (2400, 1935), 0.1, "caller", ""),
                labels=("early.png", "late.png"))
    one = compare(b, reading(spacing=None), labels=("early.png", "late.png"))
    assert one["units"].startswith("px") and one["notes"] == [
        "no pixel spacing for late.png: angles only (displacements need mm: --spacing, DICOM, a ruler or a site)"]
    both = compare(reading(spacing=None), reading(spacing=None), labels=("early.png", "late.png"))
    assert both["notes"][0].startswith("no pixel spacing for early.png and late.png: angles only")
    errors = {n: _error_mm(b, b, n)[0] for n in NAMES}
    assert both["changes"]["SNA"]["limit"] == round(2.576 * _measure_spread(reading(spacing=None), "SNA", errors,
                                                                            1.0), 3)
    # the earlier image faces left, the later right: the earlier is mirrored, and named
    m = XY.copy()
    m[:, 0] = 1935 - 1 - m[:, 0]
    left = compare(reading(m), b, labels=("early.png", "late.png"))
    assert left["before"]["mirrored"] is True and left["after"]["mirrored"] is False
    assert left["notes"] == ["the two face different ways: early.png was mirrored to compare"]
    assert all(r["distance_mm"] == pytest.approx(0.0, abs=1e-6) for r in left["displacements"]["overall"])
    right = compare(b, reading(m), labels=("early.png", "late.png"))
    assert right["notes"] == ["the two face different ways: late.png was mirrored to compare"]
    # S-N tilted by 20 deg (y down): a point moved 1 mm along S-N reads dx 1, dy 0; across it (down), dy 1
    a = math.radians(20.0)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    tilted = (XY - XY[0]) @ rot.T + XY[0]
    u = rot @ [1.0, 0.0]
    v = rot @ [0.0, 1.0]
    moved = tilted.copy()
    moved[_i("pogonion")] += 12.3456 * u + 23.4567 * v
    moved[_i("supramentale")] += 6.789 * u
    out = compare(reading(tilted), reading(moved))
    row = out["displacements"]["overall"][_i("pogonion")]
    assert (row["dx_mm"], row["dy_mm"], row["distance_mm"]) == (1.235, 2.346, round(math.hypot(1.23456, 2.34567), 3))
    assert row["limit_mm"] == round(READING_MM["pogonion"], 3)
    assert out["changes"]["SNB"]["change"] != 0 and out["changes"]["SNB"]["limit"] > 0
    for r in out["displacements"]["overall"]:
        for k in ("dx_mm", "dy_mm", "distance_mm", "limit_mm"):
            assert r[k] == round(r[k], 3)
    for c in out["changes"].values():
        assert c["change"] == round(c["change"], 3) and c["limit"] == round(c["limit"], 3)
    # a landmark flagged in one reading: the measurements that use it are doubtful, the others not
    flags = [""] * len(NAMES)
    flags[_i("subspinale")] = "low_peak"
    fl = compare(b, reading(flags=flags))
    assert fl["changes"]["SNA"]["doubtful"] is True and fl["changes"]["SNB"]["doubtful"] is False
    flags[_i("subspinale")], flags[_i("nasion")] = "", "low_peak"
    assert compare(reading(flags=flags), b, labels=("early.png", "late.png"))["doubtful"] == [
        "nasion is doubtful in early.png: the overall superimposition is doubtful"]
    assert compare(reading(flags=flags), b)["changes"]["SNA"]["doubtful"] is True
    assert fl["changes"]["ANB"]["isbi_class_after"] == b.measurements()["ANB"]["isbi_class"]
    # the maxilla moves, the cranial base does not: the picture's earlier tracing follows the overall one
    mx = XY.copy()
    for name in ("anterior_nasal_spine", "posterior_nasal_spine"):
        mx[_i(name)] += (30.0, 15.0)
    pm = compare(b, reading(mx))
    assert pm["superimpositions"]["maxilla"]["shift_mm"] != pm["superimpositions"]["overall"]["shift_mm"]
    assert np.allclose(pm["before_on_after_px"], XY, atol=0.01)
    # a measurement the later reading lacks (mm, no spacing there) is left out; the others are all there
    part = compare(b, reading(spacing=None))
    assert "SNA" in part["changes"] and "MW" not in part["changes"] and "MW" in b.measurements()
    assert list(part["changes"]) == [k for k in b.measurements() if k in reading(spacing=None).measurements()]
    # in pixels, the CSV says px and carries the pixel numbers
    paths = write_outputs(one, b, np.zeros((2400, 1935), np.uint8), tmp_path / "deep" / "er")
    rows = [r for r in csv.DictReader(open(paths[1], newline="")) if r["kind"] == "displacement"]
    assert rows and all(r["unit"] == "px" for r in rows)
    assert float(rows[0]["limit"]) == one["displacements"]["overall"][0]["limit_px"]
    write_outputs(one, b, np.zeros((2400, 1935), np.uint8), tmp_path / "deep" / "er")      # again: replaced
    assert paths[0].read_text().startswith('{\n "before": {')


def test_facing_is_read_from_sella_and_nasion_alone():
    from sdk.compare import _facing_right

    xy = XY.copy()
    xy[_i("sella")], xy[_i("nasion")] = (900.0, 100.0), (1600.0, 50.0)      # N far up and ahead
    assert _facing_right(reading(xy)) is True
    xy[_i("nasion")] = (850.0, 1200.0)
    assert _facing_right(reading(xy)) is False
    xy[_i("nasion")] = (900.0, 1200.0)                                     # straight below: not to the left
    assert _facing_right(reading(xy)) is True


def test_steady_reading_at_its_edges():
    from sdk.compare import UPRIGHT_FROM_DEG

    img = np.zeros((2400, 1935), np.uint8)
    a = math.radians(-6.5 + UPRIGHT_FROM_DEG)          # exactly the threshold: read again
    xy = XY.copy()
    xy[_i("nasion")] = XY[_i("sella")] + 700 * np.array([math.cos(a), math.sin(a)])
    fake = _Fake(xy, 0.0)
    fake.shape, fake.turn = (2400, 1935), -UPRIGHT_FROM_DEG
    _, turn = steady_reading(fake, img, img, None)
    assert turn == -UPRIGHT_FROM_DEG and len(fake.calls) == 2 and fake.calls[1][1] is None   # no spacing: none
    first = Landmarks(XY, np.ones(19, np.float32), NAMES, (2400, 1935), None, None, "isbi19",
                      flags=("low_confidence",))
    res, turn = steady_reading(lambda image, spacing=None: first, img, img)
    assert res is first and turn == 0.0


def test_turned_is_centred_and_smooth():
    img = np.zeros((41, 61), np.uint8)
    cv2.circle(img, (15, 12), 3, 255, -1)
    img = cv2.GaussianBlur(img, (0, 0), 1.5)
    out, m = turned(img, 25.0)
    yy, xx = np.mgrid[:out.shape[0], :out.shape[1]]
    w = out.astype(np.float64)
    c = np.array([(w * xx).sum(), (w * yy).sum()]) / w.sum()
    yy, xx = np.mgrid[:41, :61]
    c0 = np.array([(img * xx).sum(), (img * yy).sum()], np.float64) / img.sum()
    assert np.abs(c - (m[:, :2] @ c0 + m[:, 2])).max() < 0.05
    white, _ = turned(np.full((41, 61), 255, np.uint8), 25.0)
    assert white[0, 0] == 0 and white[out.shape[0] // 2, out.shape[1] // 2] == 255
    edge = np.zeros((41, 61), np.uint8)
    edge[:, 30:] = 255
    e, _ = turned(edge, 3.0)
    assert len(np.unique(e[20])) > 3          # interpolated, not nearest: the edge has grey steps


def test_a_face_to_the_left_is_mirrored_with_its_image():
    """The earlier image faces left, the later right, the same head: the earlier one's image is mirrored with its
    points, so the image refinement holds (a turn of nothing) and nothing moved."""
    img = _texture(2400, 1935, 3)
    left = np.ascontiguousarray(img[:, ::-1])
    m = XY.copy()
    m[:, 0] = 1935 - 1 - m[:, 0]
    out = compare(reading(m), reading(XY), left, img)
    overall = out["superimpositions"]["overall"]
    assert out["before"]["mirrored"] is True and overall["image"] == "refined" and overall["image_correlation"] > 0.99
    assert abs(overall["rotation_deg"]) < 0.01 and np.abs(overall["shift_mm"]).max() < 0.01


def test_the_records_of_a_superimposition_and_of_each_reading():
    reg = Registration("overall", "anterior cranial base (S-N at S)", 1.23456, np.array([0.12345, -2.34567]),
                       ("sella", "nasion"), residual_mm=0.45678)
    reg.notes.append("a note")
    assert reg.to_dict() == {"region": "anterior cranial base (S-N at S)", "landmarks": ["sella", "nasion"],
                             "rotation_deg": 1.235, "shift_mm": [0.123, -2.346], "residual_mm": 0.457,
                             "method": "landmarks (an approximation)", "image": None, "image_correlation": None,
                             "notes": ["a note"]}
    reg.image, reg.score = "refined", 0.987654
    d = reg.to_dict()
    assert d["method"] == "landmarks + image" and d["image"] == "refined" and d["image_correlation"] == 0.9877
    flags = [""] * len(NAMES)
    flags[_i("gonion")] = "low_peak"
    out = compare(reading(flags=flags), reading(spacing=0.1), labels=("early.png", "late.png"))
    assert out["before"] == {"label": "early.png", "image_size": [2400, 1935], "spacing_mm": 0.1,
                             "spacing_source": "caller", "mirrored": False, "flags": [],
                             "doubtful_landmarks": ["gonion"]}
    assert out["after"]["doubtful_landmarks"] == [] and out["after"]["label"] == "late.png"
    assert out["frame"].startswith("dx along S-N (forward") and "one patient" in out["caution"]
    assert out["reading_error"].startswith("A change is \"within reading error\"")


def test_starts_and_residuals_when_the_head_grew():
    """Growth is what is measured: the overall start keeps S on S and S-N's direction (never a fit of both
    ends), its residual is the RMS over its landmarks; a region whose landmarks are missing is left out, the
    others still registered; one image alone refines nothing."""
    from sdk.superimpose import superimpose

    b = {n: XY[i] * 0.1 for i, n in enumerate(NAMES)}
    grown = {n: b["sella"] + (p - b["sella"]) * 1.1 for n, p in b.items()}       # 10% larger about S
    reg = start(REGIONS[0], b, grown)
    assert reg.angle_deg == pytest.approx(0.0, abs=1e-9) and np.allclose(reg.apply(grown["sella"]), b["sella"])
    assert reg.region == REGIONS[0].description
    # N lands 7 mm beyond N (S-N is 70 mm): the RMS over S and N is 7 / sqrt(2)
    assert reg.residual_mm == pytest.approx(7.0 / math.sqrt(2))
    r2 = Registration("x", "x", 0.0, np.zeros(2), ("a", "b"), centre=np.array([10.0, 0.0]), span_mm=40.0,
                      residual_mm=0.5)
    assert r2.error_at([10, 0]) == pytest.approx(0.5) and r2.error_at([-10, 0]) == pytest.approx(
        math.hypot(0.5, 0.5 / 20 * 20))
    no_ans = {k: v for k, v in b.items() if k != "anterior_nasal_spine"}
    regs = superimpose(no_ans, no_ans)
    assert [r.name for r in regs] == ["overall", "mandible"]
    img = _texture(2400, 1935, 4)
    regs = superimpose(b, b, img, 0.1, None, 0.1)
    assert [r.image for r in regs] == [None, None, None]


def test_another_schemas_landmarks_by_their_names_and_aliases():
    """An Aariz reading: its points in mm under its own names and under the names the superimpositions ask for
    (its aliases); a landmark with no measured reading error gets the default."""
    from sdk.compare import _points_mm
    from sdk.schemas import AARIZ29

    names = tuple(AARIZ29.names)
    xy = np.random.default_rng(3).uniform(100, 2000, (len(names), 2))
    res = Landmarks(xy, np.full(len(names), 0.9, np.float32), names, (2400, 1935), 0.1, "caller", "aariz29")
    pts = _points_mm(res, 0.1, mirror=False)
    for alias, own in (("subspinale", "a_point"), ("supramentale", "b_point"), ("lower_incisal_incision",
                                                                                  "lower_incisor_tip")):
        assert np.allclose(pts[alias], xy[names.index(own)] * 0.1) and np.allclose(pts[own], pts[alias])
    mirrored = _points_mm(res, 0.1, mirror=True)
    assert mirrored["subspinale"][0] == pytest.approx((1935 - 1 - xy[names.index("a_point"), 0]) * 0.1)
    assert _error_mm(res, res, "ramus") == (pytest.approx(DEFAULT_MM), False)
    assert _error_mm(res, res, "sella") == (pytest.approx(READING_MM["sella"]), False)
