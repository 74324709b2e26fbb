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
    paths = write_outputs(out, b, a, gray, tmp_path / "o")
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
