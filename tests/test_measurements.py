"""Measurements on constructed geometry with hand-computed answers (signs and ISBI 2015 classes included).

The profile faces right (nasion right of sella), image y points down: a direction at ``deg`` below the backward
horizontal is ``(-cos, +sin)``.
"""
import json
import math

import numpy as np
import pytest

from sdk.measurements import measure
from sdk.schemas import ISBI19


def _back_down(deg: float) -> np.ndarray:
    """Unit vector pointing backwards (-x) and ``deg`` degrees down from the horizontal."""
    r = math.radians(deg)
    return np.array([-math.cos(r), math.sin(r)])


def skull(sna=82.0, snb=78.0, palatal_down=3.0, ab_mp=70.0, facial=87.0, ab_facial=-5.0, fma=30.0,
          overjet_px=30.0, s_go=70.0, n_me=100.0):
    """A profile whose measurements are known by construction:
    - S=(0,0), N=(100,0): SN horizontal; A and B at the given SNA / SNB.
    - FH horizontal (Po=(0,10), Or=(100,10)); palatal plane ``palatal_down`` degrees down anteriorly.
    - ODI = ab_mp + palatal_down with the mandibular plane horizontal and the A-B line at ``ab_mp`` to it;
      APDI = facial + ab_facial + palatal_down (the facial line N-Pog at ``facial`` to FH).
    ODI and APDI each need their own A-B line, so they are built on separate skulls (see the tests)."""
    s, n = np.array([0.0, 0.0]), np.array([100.0, 0.0])
    p = {"sella": s, "nasion": n, "subspinale": n + 50 * _back_down(sna), "supramentale": n + 100 * _back_down(snb)}
    p["porion"], p["orbitale"] = np.array([0.0, 10.0]), np.array([100.0, 10.0])
    t = math.tan(math.radians(palatal_down))
    p["posterior_nasal_spine"], p["anterior_nasal_spine"] = np.array([20.0, 50.0]), np.array([120.0, 50.0 + 100 * t])
    p["gonion"] = s + np.array([0.0, s_go])
    p["menton"] = n + np.array([0.0, n_me])
    p["pogonion"] = n + 100 * _back_down(facial)
    p["upper_incisal_incision"] = np.array([130.0, 60.0])
    p["lower_incisal_incision"] = np.array([130.0 - overjet_px, 60.0])
    p["articulare"] = np.array([5.0, 40.0])
    p["gnathion"] = np.array([105.0, 95.0])
    return p


def _mirror(p, width=1000.0):
    return {k: np.array([width - v[0], v[1]]) for k, v in p.items()}


def test_steiner_angles_and_anb_sign():
    m = measure(skull(sna=82, snb=78), ISBI19)
    assert m["SNA"]["value"] == pytest.approx(82, abs=1e-3) and m["SNB"]["value"] == pytest.approx(78, abs=1e-3)
    assert m["ANB"]["value"] == pytest.approx(4, abs=1e-3) and m["ANB"]["isbi_class"] == "C1"
    c3 = measure(skull(sna=80, snb=83), ISBI19)          # mandible ahead of the maxilla: Class III
    assert c3["ANB"]["value"] == pytest.approx(-3, abs=1e-3) and c3["ANB"]["isbi_class"] == "C3"
    assert c3["SNB"]["isbi_class"] == "C3" and c3["SNA"]["isbi_class"] == "C1"
    c2 = measure(skull(sna=85, snb=74), ISBI19)
    assert c2["ANB"]["isbi_class"] == "C2" and c2["SNA"]["isbi_class"] == "C2" and c2["SNB"]["isbi_class"] == "C2"


def test_isbi_class_boundaries_belong_to_the_normal_class():
    from sdk.measurements import MEASUREMENTS, isbi_mw_class

    bands = {m.name: m.isbi for m in MEASUREMENTS if m.isbi is not None}
    assert {k: (c.lo, c.hi) for k, c in bands.items()} == {
        "SNA": (79.4, 83.2), "SNB": (74.6, 78.7), "ANB": (3.2, 5.7), "FMA": (26.8, 31.4), "ODI": (68.4, 80.5),
        "APDI": (77.6, 85.2), "FHI": (0.65, 0.75)}
    for c in bands.values():
        assert c.of(c.lo)[0] == c.of(c.hi)[0] == "C1" and c.of(c.lo - 1e-6)[0] != "C1" != c.of(c.hi + 1e-6)[0]
    assert [isbi_mw_class(v)[0] for v in (2.0, 4.5, 4.6, 0.0, 1.9, -1.0)] == ["C1", "C1", "C4", "C2", "C3", "C3"]
    assert measure(skull(sna=83.3), ISBI19)["SNA"]["isbi_class"] == "C2"


def test_odi_by_construction():
    # mandibular plane horizontal (gonion and menton level), A-B line at 70 degrees to it, palatal plane 3 down
    p = skull(palatal_down=3.0, s_go=100.0, n_me=100.0)
    b = np.array([100.0, 150.0])
    p["supramentale"], p["subspinale"] = b, b + 50 * np.array([-math.cos(math.radians(70)), -math.sin(math.radians(70))])
    m = measure(p, ISBI19)
    assert m["ODI"]["value"] == pytest.approx(73.0, abs=1e-3) and m["ODI"]["isbi_class"] == "C1"
    up = skull(palatal_down=-3.0, s_go=100.0, n_me=100.0)
    up["supramentale"], up["subspinale"] = p["supramentale"], p["subspinale"]
    m = measure(up, ISBI19)
    assert m["ODI"]["value"] == pytest.approx(67.0, abs=1e-3) and m["ODI"]["isbi_class"] == "C3"   # open bite


def test_apdi_by_construction():
    p = skull(palatal_down=3.0, facial=87.0)
    fac = p["pogonion"] - p["nasion"]
    a = np.array([125.0, 60.0])

    def ab_at(deg):        # A-B line turned from the facial line; + = clockwise on screen = B further back
        r = math.radians(deg)
        rot = np.array([[math.cos(r), -math.sin(r)], [math.sin(r), math.cos(r)]])
        return a, a + 40 * rot @ (fac / np.linalg.norm(fac))

    p["subspinale"], p["supramentale"] = ab_at(5.0)      # B behind A: the A-B plane angle is -5
    m = measure(p, ISBI19)
    assert m["APDI"]["value"] == pytest.approx(87 - 5 + 3, abs=1e-3) and m["APDI"]["isbi_class"] == "C1"
    p["subspinale"], p["supramentale"] = ab_at(13.0)
    assert measure(p, ISBI19)["APDI"]["isbi_class"] == "C2"          # 77: Class II tendency
    p["subspinale"], p["supramentale"] = ab_at(-3.0)                  # B ahead of A: +3
    assert measure(p, ISBI19)["APDI"]["value"] == pytest.approx(93.0, abs=1e-3)


def test_fhi_fma_and_mw():
    p = skull(s_go=70.0, n_me=100.0, overjet_px=30.0)
    m = measure(p, ISBI19, spacing=0.1)
    assert m["FHI"]["value"] == pytest.approx(0.70, abs=1e-3) and m["FHI"]["isbi_class"] == "C1"
    assert m["MW"]["value"] == pytest.approx(3.0, abs=1e-3) and m["MW"]["isbi_class"] == "C1"
    assert m["MW"]["unit"] == "mm"
    cross = measure(skull(overjet_px=-25.0), ISBI19, spacing=0.1)["MW"]
    assert cross["value"] == pytest.approx(-2.5, abs=1e-3) and cross["isbi_class"] == "C3"
    assert measure(skull(overjet_px=60.0), ISBI19, spacing=0.1)["MW"]["isbi_class"] == "C4"
    assert "MW" not in measure(p, ISBI19)                             # a distance needs a spacing
    # FMA: mandibular plane 30 degrees down anteriorly against a horizontal FH
    q = skull()
    q["gonion"], q["menton"] = np.array([0.0, 200.0]), np.array([100.0, 200.0 + 100 * math.tan(math.radians(30))])
    fma = measure(q, ISBI19)["FMA"]
    assert fma["value"] == pytest.approx(30.0, abs=1e-3) and fma["isbi_class"] == "C1"
    q["menton"] = np.array([100.0, 200.0 + 100 * math.tan(math.radians(35))])
    assert measure(q, ISBI19)["FMA"]["isbi_class"] == "C2"            # high angle


@pytest.mark.parametrize("case", [dict(), dict(sna=80, snb=83), dict(overjet_px=-25.0), dict(palatal_down=-4.0)])
def test_a_facing_left_profile_measures_the_same(case):
    p = skull(**case)
    a, b = measure(p, ISBI19, spacing=0.1), measure(_mirror(p), ISBI19, spacing=0.1)
    assert set(a) == set(b)
    for k in a:
        assert b[k]["value"] == pytest.approx(a[k]["value"], abs=1e-3), k
        assert b[k].get("isbi_class") == a[k].get("isbi_class"), k


def test_landmarks_carry_the_classes_and_mm_measurements():
    from sdk.result import Landmarks

    p = skull()
    xy = np.stack([p.get(n, np.array([50.0, 50.0])) for n in ISBI19.names])
    res = Landmarks(xy, np.ones(19, np.float32), ISBI19.names, (400, 400), 0.1, "caller", "isbi19")
    m = res.measurements()
    assert m["ANB"]["isbi_class"] == "C1" and m["MW"]["value"] == pytest.approx(3.0, abs=1e-3)
    nosp = Landmarks(xy, np.ones(19, np.float32), ISBI19.names, (400, 400), None, None, "isbi19")
    assert "MW" not in nosp.measurements() and "ANB" in nosp.measurements()


def _aariz(p):
    """The same points under aariz29's own names (its aliases resolve subspinale -> a_point and so on)."""
    from sdk.schemas import AARIZ29

    return {AARIZ29.names[AARIZ29.index(k)]: v for k, v in p.items()}


def analyses_skull():
    """skull() plus the landmarks only aariz29 has, placed for hand-computed values (spacing 0.1 mm/px)."""
    p = skull(facial=87.0)
    p["gnathion"] = p["sella"] + 200 * np.array([math.cos(math.radians(60)), math.sin(math.radians(60))])
    p["gonion"], p["menton"] = np.array([0.0, 200.0]), np.array([100.0, 200.0])       # MP level with FH: FMA 0
    p["lower_incisor_apex"] = np.array([80.0, 190.0])
    p["lower_incisal_incision"] = p["lower_incisor_apex"] + 30 * np.array([math.sin(math.radians(5)),
                                                                          -math.cos(math.radians(5))])
    p["condylion"], p["subspinale"] = np.array([10.0, 20.0]), np.array([102.0, 50.0])
    p["pronasale"], p["soft_tissue_pogonion"] = np.array([150.0, 40.0]), np.array([130.0, 160.0])
    p["upper_lip"], p["lower_lip"] = np.array([135.0, 100.0]), np.array([140.0, 100.0])
    p["upper_molar_cusp_tip"], p["lower_molar_cusp_tip"] = np.array([60.0, 100.0]), np.array([60.0, 104.0])
    p["upper_2nd_pm_cusp_tip"], p["lower_2nd_pm_cusp_tip"] = np.array([90.0, 100.0]), np.array([90.0, 104.0])
    p["supramentale"] = np.array([97.0, 140.0])
    p["upper_incisor_apex"] = np.array([110.0, 20.0])
    return p


def test_downs_tweed_mcnamara_ricketts_wits_by_construction():
    from sdk.schemas import AARIZ29

    p = analyses_skull()
    m = measure(_aariz(p), AARIZ29, spacing=0.1)
    assert m["Facial angle"]["value"] == pytest.approx(87.0, abs=1e-3)
    assert m["Y-axis"]["value"] == pytest.approx(60.0, abs=1e-3)
    assert m["IMPA"]["value"] == pytest.approx(95.0, abs=1e-3)                 # proclined 5 degrees
    assert m["FMA"]["value"] == pytest.approx(0.0, abs=1e-3)
    assert m["FMIA"]["value"] == pytest.approx(85.0, abs=1e-3)
    assert m["A to N-perp"]["value"] == pytest.approx(0.2, abs=1e-3)           # 2 px ahead of N, 0.1 mm/px
    assert m["Co-A"]["value"] == pytest.approx(0.1 * math.hypot(92, 30), abs=1e-3)
    # E-line from (150,40) to (130,160): the upper lip 600/|(-20,120)| px behind it, the lower lip on it
    assert m["Upper lip to E-line"]["value"] == pytest.approx(-0.1 * 600 / math.hypot(20, 120), abs=1e-3)
    assert m["Lower lip to E-line"]["value"] == pytest.approx(0.0, abs=1e-3)
    assert m["Wits"]["value"] == pytest.approx(0.5, abs=1e-3)                 # A 5 px ahead of B along the plane
    # convexity: N-A-Pog = 180 - 2 atan(5/50) with A 5 px ahead of the N-Pog line: +11.42; 5 px behind: -11.42
    q = {"nasion": np.array([0.0, 0.0]), "pogonion": np.array([0.0, 100.0]), "subspinale": np.array([5.0, 50.0])}
    assert measure(q)["Angle of convexity"]["value"] == pytest.approx(2 * math.degrees(math.atan(0.1)), abs=1e-3)
    q["subspinale"] = np.array([-5.0, 50.0])
    assert measure(q)["Angle of convexity"]["value"] == pytest.approx(-2 * math.degrees(math.atan(0.1)), abs=1e-3)


def test_aariz_analyses_measure_the_same_facing_left():
    from sdk.schemas import AARIZ29

    p = _aariz(analyses_skull())
    a, b = measure(p, AARIZ29, spacing=0.1), measure(_mirror(p), AARIZ29, spacing=0.1)
    assert set(a) == set(b) and len(a) == 27
    for k in a:
        assert b[k]["value"] == pytest.approx(a[k]["value"], abs=1e-3), k


def test_analyses_select_and_name_what_is_missing():
    from sdk.measurements import ANALYSES, unavailable

    p = skull()
    got = measure(p, ISBI19, spacing=0.1, analyses=["steiner"])
    assert set(got) == {"SNA", "SNB", "ANB", "SN-GoGn"}
    assert set(unavailable(ISBI19, 0.1, ["steiner"])) == {"U1-NA", "L1-NB", "Interincisal angle"}
    assert set(measure(p, ISBI19, spacing=0.1, analyses=["isbi2015"])) == set(ANALYSES["isbi2015"][1])
    with pytest.raises(ValueError, match="unknown analysis 'stiener'"):
        measure(p, ISBI19, analyses=["stiener"])


def test_a_measurement_on_a_flagged_landmark_is_doubtful_and_missing_ones_are_named():
    from dataclasses import replace

    from sdk.result import Landmarks

    p = skull()
    xy = np.stack([p.get(n, np.array([50.0, 50.0])) for n in ISBI19.names])
    res = Landmarks(xy, np.ones(19, np.float32), ISBI19.names, (400, 400), 0.1, "caller", "isbi19")
    flags = tuple("likely off by more than 4 mm" if n == "subspinale" else "" for n in ISBI19.names)
    m = replace(res, point_flags=flags).measurements()
    assert m["SNA"]["doubtful"] and m["ANB"]["doubtful"] and not m["SNB"]["doubtful"]
    assert m["SNA"]["landmarks"] == ["sella", "nasion", "subspinale"]
    d = json.loads(replace(res, point_flags=flags).to_json())
    assert d["measurements"]["ODI"]["doubtful"] and "U1-NA" in d["unavailable_measurements"]
    assert set(res.measurements(["tweed"])) == {"FMA"}
