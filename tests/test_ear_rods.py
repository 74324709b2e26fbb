"""The ear rods and machine porion (issue 45): rings found where they are, at the positions labelled by eye and
planted ones at another clinic's distances; nothing where there is none; porion='machine' moves porion and says so;
a site whose labels sit on the rods' top is told it marks machine porion."""
import csv
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import ISBI_FIX

from sdk import Detector
from sdk.detector import NO_MACHINE_PORION
from sdk.ear_rods import CERTAIN_SCORE, find_rings

ROOT = Path(__file__).resolve().parents[1]
LABELS = ROOT / "lab" / "data" / "ear_rods" / "isbi_rings.csv"
SHARED = ROOT.parent / "shared" / "data" / "isbi2015"
FIX_MM = 0.4        # the fixtures: ISBI images at a quarter of their size


def _fixture_porion(name):
    """The clinicians' anatomical porion (mean of senior and junior) of a fixture, in its pixels."""
    pts = []
    for who in ("senior", "junior"):
        with open(ISBI_FIX / f"{who}.csv", newline="") as f:
            for r in csv.DictReader(f):
                if r["image"] == name:
                    pts.append((float(r["porion_x"]), float(r["porion_y"])))
    return np.mean(pts, axis=0)


def _quarter(xy):
    """Full-resolution ISBI pixels -> the fixtures' (pixel centres at integers)."""
    return (np.asarray(xy, np.float64) + 0.5) / 4 - 0.5


def _without_rings(gray):
    """A fixture with its thin ear-rod rings washed out (the anatomy's coarse shading kept) and a little noise."""
    g = cv2.GaussianBlur(gray.astype(np.float32), (0, 0), 6)
    g += np.random.default_rng(1).normal(0, 3, g.shape)
    return np.clip(g, 0, 255).astype(np.uint8)


def _plant(gray, top_xy, outer_mm=4.9, rim_mm=0.8, mm=FIX_MM, bright=60):
    """A bright ring of ``outer_mm`` outer radius, ``rim_mm`` wide, with a dot at its centre, whose outer top lies
    at ``top_xy``; drawn at 8x and reduced, so its edges are smooth."""
    f = 8
    big = np.zeros((gray.shape[0] * f, gray.shape[1] * f), np.float32)
    r_out, r_in = outer_mm / mm, (outer_mm - rim_mm) / mm
    cx, cy = top_xy[0], top_xy[1] + r_out
    c = (int(round((cx + 0.5) * f)), int(round((cy + 0.5) * f)))
    cv2.circle(big, c, int(round(r_out * f)), 1.0, -1)
    cv2.circle(big, c, int(round(r_in * f)), 0.0, -1)
    cv2.circle(big, c, int(round(0.6 / mm * f)), 1.0, -1)
    small = cv2.resize(big, (gray.shape[1], gray.shape[0]), interpolation=cv2.INTER_AREA)
    return np.clip(gray.astype(np.float32) + bright * small, 0, 255).astype(np.uint8)


def test_the_rings_labelled_by_eye_are_found_on_the_fixtures():
    """Fixtures 001, 002 and 004 are among the 65 images whose rings were labelled by eye (lab/data/ear_rods): the
    machine porion found at a quarter of the resolution lies within 1 mm of the label's, with as many rings. (003's
    second ring, 3.8 mm beside the first, is lost at the fixtures' 0.4 mm/px, coarser than any clinic's export;
    at full resolution it is found: the test below.)"""
    rows = {r["image"]: r for r in csv.DictReader(open(LABELS, newline=""))}
    for name in ("001.jpg", "002.jpg", "004.jpg"):
        gray = cv2.imread(str(ISBI_FIX / "images" / name), cv2.IMREAD_GRAYSCALE)
        rods = find_rings(gray, _fixture_porion(name), FIX_MM)
        label = _quarter([float(rows[name]["machine_porion_x"]), float(rows[name]["machine_porion_y"])])
        assert rods is not None and len(rods.rings) == int(rows[name]["rings"]), name
        assert np.linalg.norm(rods.machine_porion - label) * FIX_MM < 1.0, name


@pytest.mark.parametrize("dx_mm,dy_mm", [(-2.0, -5.0), (8.0, 10.0), (3.0, 2.0), (0.0, 8.0), (6.0, -3.0)])
def test_a_single_ring_with_a_dot_is_found_at_another_clinics_distances(dx_mm, dy_mm):
    """The other clinic's rods: one bright ring, outer radius 4.6-5.1 mm, rim 0.8 mm, a dot at its centre, its top
    from 2 mm behind to 8 mm in front of the anatomical porion and from 5 mm above to 10 mm below it."""
    gray = cv2.imread(str(ISBI_FIX / "images" / "152.jpg"), cv2.IMREAD_GRAYSCALE)
    por = _fixture_porion("152.jpg")
    top = por + np.array([dx_mm, dy_mm]) / FIX_MM
    rods = find_rings(_plant(_without_rings(gray), top), por, FIX_MM)
    assert rods is not None and len(rods.rings) == 1 and rods.certain
    assert np.linalg.norm(rods.machine_porion - top) * FIX_MM < 0.5
    assert 4.0 < rods.rings[0].r * FIX_MM < 5.1


def test_nothing_is_reported_where_there_is_no_ring():
    gray = cv2.imread(str(ISBI_FIX / "images" / "152.jpg"), cv2.IMREAD_GRAYSCALE)
    por = _fixture_porion("152.jpg")
    assert find_rings(_without_rings(gray), por, FIX_MM) is None
    det = Detector(backend="onnxruntime")
    noise = np.random.default_rng(0).integers(0, 256, (600, 480)).astype(np.uint8)
    res = det(noise)
    assert not res.is_cephalogram and res.ear_rods is None and res.to_dict()["ear_rods"] is None
    full = det(gray)
    assert full.ear_rods is not None
    cut = np.ascontiguousarray(gray[: int(full.ear_rods.machine_porion[1]) - 5])    # the image ends above the rods
    assert det(cut).ear_rods is None and find_rings(cut, por, FIX_MM) is None


def test_machine_porion_moves_porion_and_says_so(tmp_path):
    img = ISBI_FIX / "images" / "001.jpg"
    plain = Detector(backend="onnxruntime")(img, spacing=FIX_MM)
    machine = Detector(backend="onnxruntime", porion="machine")
    res = machine(img, spacing=FIX_MM)
    k = res.names.index("porion")
    assert np.allclose(res.xy[k], plain.ear_rods.machine_porion) and res.site_placed[k] == "machine"
    others = np.arange(len(res.names)) != k
    assert np.array_equal(res.xy[others], plain.xy[others])
    assert res.measurements()["FMA"]["porion"] == "machine" and plain.measurements()["FMA"]["porion"] == "anatomical"
    assert res.measurements()["FMA"]["value"] != pytest.approx(plain.measurements()["FMA"]["value"], abs=1e-3)
    rec = res.to_dict()
    assert rec["ear_rods"]["anatomical_porion"]["x"] == pytest.approx(plain.xy[k, 0], abs=0.01)
    assert rec["ear_rods"]["machine_porion"]["x_mm"] == pytest.approx(res.xy[k, 0] * FIX_MM, abs=2e-3)
    assert rec["landmarks"][k]["site_placed"] == "machine"
    # no rods in the image: porion stays where the model read it, flagged, and the measurements say so
    washed = _without_rings(cv2.imread(str(img), cv2.IMREAD_GRAYSCALE))
    none = machine(washed, spacing=FIX_MM)
    if none.is_cephalogram:
        assert none.ear_rods is None and none.point_flags[k] == NO_MACHINE_PORION
        assert none.measurements()["FMA"]["doubtful"] and none.status == "check"
    with pytest.raises(Exception, match="porion='nope'"):
        Detector(backend="onnxruntime", porion="nope")


def test_a_faint_ring_is_reported_as_uncertain():
    gray = cv2.imread(str(ISBI_FIX / "images" / "152.jpg"), cv2.IMREAD_GRAYSCALE)
    por = _fixture_porion("152.jpg")
    top = por + np.array([2.0, 4.0]) / FIX_MM
    strong = find_rings(_plant(_without_rings(gray), top, bright=60), por, FIX_MM)
    faint = find_rings(_plant(_without_rings(gray), top, bright=4), por, FIX_MM)
    assert strong.score > CERTAIN_SCORE and (faint is None or faint.score < strong.score)


def test_a_site_whose_porion_sits_on_the_rods_top_marks_machine_porion():
    """Labels on the rods' top (with a click's scatter) -> the profile marks machine porion and the Detector places
    porion there; the clinicians' anatomical labels -> not machine."""
    from sdk.site import SiteProfile, fit_site

    det = Detector(backend="onnxruntime")
    names = det.schema.names
    k = names.index("porion")
    files = sorted((ISBI_FIX / "images").glob("*.jpg"))
    res = [det(f, spacing=FIX_MM) for f in files]
    pred = np.stack([r.xy for r in res])
    machine = np.array([r.ear_rods.machine_porion if r.ear_rods else (np.nan, np.nan) for r in res])
    assert np.isfinite(machine).all(axis=1).sum() >= 6
    rng = np.random.default_rng(0)
    truth = pred + rng.normal(0, 0.5, pred.shape)
    truth[:, k] = np.where(np.isfinite(machine), machine, pred[:, k]) + np.array([0.0, -1.0]) + rng.normal(
        0, 0.5, (len(files), 2))                                                     # 0.4 mm above the top
    prof = fit_site("rods", det.schema.id, names, pred, truth, [FIX_MM] * len(files), machine=machine)
    assert prof.porion == "machine" and prof.report["porion"] == "machine"
    assert prof.report["machine_porion"]["cv_mre_mm"] < 0.6
    # the site's cross-validated error counts porion placed on the rods: every landmark's own mean, averaged
    per = prof.report["per_landmark_mm"]
    assert per["porion"][1] < 0.6 < per["porion"][0]
    assert prof.report["after_cv"]["mre_mm"] == pytest.approx(np.mean([v[1] for v in per.values()]), abs=2e-3)
    again = SiteProfile.from_dict(prof.to_dict())
    assert again.porion == "machine" and np.allclose(again.machine_offset, prof.machine_offset, atol=1e-5)
    i = int(np.flatnonzero(np.isfinite(machine).all(axis=1))[0])
    placed = Detector(backend="onnxruntime", site=again)(files[i], spacing=FIX_MM)
    assert placed.site_placed[k] == "machine"
    assert np.linalg.norm(placed.xy[k] - truth[i, k]) * FIX_MM < 1.0
    anat = pred.copy()
    anat[:, k] = pred[:, k] + rng.normal(0, 1.0, (len(files), 2))
    assert fit_site("anat", det.schema.id, names, pred, anat, [FIX_MM] * len(files), machine=machine).porion is None


@pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data/isbi2015")
def test_the_isbi_ring_labels_are_met():
    """On the 65 images labelled by eye (full resolution, around the clinicians' porion): >= 90% within 1 mm."""
    from lab.studies.ear_rods_check import run

    out = run(SHARED, "labels")
    within = np.mean([x["error_mm"] is not None and x["error_mm"] <= 1.0 for x in out])
    assert len(out) == 65 and within >= 0.9
