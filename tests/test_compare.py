"""Before and after (issue 50): two cephalograms superimposed and what changed. The same image against a re-framed
copy of itself changes nothing beyond reading error and the registration recovers the known transform; a known
rigid move of the lower face is measured; two different patients give an answer, not a crash; the CLI writes its
three files and refuses a non-cephalogram by name."""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import ISBI_FIX

from sdk import Detector
from sdk.compare import CompareError, compare, turned

MM = 0.4                                  # the fixtures: ISBI images at a quarter of their size
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "isbi2015"


@pytest.fixture(scope="module")
def det():
    return Detector(backend="onnxruntime")


def _gray(name, folder=ISBI_FIX):
    return cv2.imread(str(folder / "images" / name), cv2.IMREAD_GRAYSCALE)


def _reframed(gray, deg, shift, crop, mirror):
    """``gray`` turned by ``deg``, shifted by ``shift`` (x, y px; zeros come in), cropped by ``crop`` (top,
    bottom, left, right px) and mirrored: the copy and the 2x3 matrix from the original's pixels to the copy's."""
    img, m = turned(gray, deg)
    dx, dy = shift
    moved = np.zeros_like(img)
    moved[max(dy, 0):img.shape[0] + min(dy, 0), max(dx, 0):img.shape[1] + min(dx, 0)] = \
        img[max(-dy, 0):img.shape[0] - max(dy, 0), max(-dx, 0):img.shape[1] - max(dx, 0)]
    t, b, left, r = crop
    out = moved[t:moved.shape[0] - b, left:moved.shape[1] - r]
    m = m.copy()
    m[:, 2] += np.array([dx - left, dy - t])
    if mirror:
        out = out[:, ::-1]
        m = np.array([[-1.0, 0, out.shape[1] - 1], [0, 1, 0]]) @ np.vstack([m, [0, 0, 1]])
    return np.ascontiguousarray(out), m


FULL = pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data/isbi2015 (full-resolution images)")


@pytest.mark.parametrize("deg,shift,crop,mirror,full", [
    pytest.param(10.0, (48, -32), (40, 0, 0, 56), False, True, marks=FULL),
    pytest.param(-10.0, (-24, 40), (0, 48, 32, 0), False, True, marks=FULL),
    pytest.param(6.0, (30, 20), (0, 0, 60, 0), True, True, marks=FULL),
    (0.0, (5, 5), (6, 0, 0, 6), True, False)])
def test_the_same_image_reframed_changes_nothing(det, deg, shift, crop, mirror, full):
    """Full-resolution images where there are (the reading error was measured on them); the fixtures' quarter
    size reads a tilted head less steadily."""
    mm = 0.1 if full else MM
    gray = _gray("152.jpg", SHARED if full else ISBI_FIX)
    copy, m = _reframed(gray, deg, shift, crop, mirror)
    before, after = det(gray, mm), det(copy, mm)
    out = compare(before, after, gray, copy, ("152", "152 reframed"))
    for sup, rows in out["displacements"].items():
        assert all(r["within_reading_error"] for r in rows), (sup, [r for r in rows if not r["within_reading_error"]])
    angles = {k: c for k, c in out["changes"].items() if c["unit"] == "deg"}
    assert angles and all(c["within_reading_error"] for c in angles.values()), angles
    assert out["before"]["mirrored"] is False and out["after"]["mirrored"] is mirror
    overall = out["superimpositions"]["overall"]
    assert overall["image"] == "refined"
    if mirror:
        assert abs(overall["rotation_deg"]) == pytest.approx(abs(deg), abs=0.1)
        assert any("mirrored" in n for n in out["notes"])
        return
    # the known transform: a point p of the original lies at m p in the copy; the registration takes the copy's
    # mm back onto the original's
    assert overall["rotation_deg"] == pytest.approx(deg, abs=0.1)
    a = np.radians(overall["rotation_deg"])
    r = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    probe = np.array([[600.0, 800.0], [1200.0, 1680.0], [880.0, 1200.0]])          # original px
    in_copy = probe @ m[:, :2].T + m[:, 2]
    back = (in_copy * mm) @ r.T + np.array(overall["shift_mm"])
    assert np.abs(back - probe * mm).max() < 0.2


def _move_lower_face(gray, seam_y, feather, deg, shift, pivot):
    """``gray`` with everything below ``seam_y`` turned by ``deg`` about ``pivot`` and shifted (px), blended in
    over ``feather`` px: the 2x3 matrix of the move too."""
    m = cv2.getRotationMatrix2D(tuple(float(v) for v in pivot), deg, 1.0)
    m[:, 2] += shift
    moved = cv2.warpAffine(gray, m, (gray.shape[1], gray.shape[0]), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)
    w = np.clip((np.arange(gray.shape[0]) - seam_y) / feather, 0, 1)[:, None]
    return (gray * (1 - w) + moved * w).round().astype(np.uint8), m


@pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data/isbi2015 (full-resolution images)")
def test_a_known_move_of_the_lower_face_is_measured(det):
    gray = _gray("153.jpg", SHARED)
    before = det(gray, 0.1)
    k = {n: i for i, n in enumerate(before.names)}
    b_pt = before.xy[k["supramentale"]]
    seam = b_pt[1] - 60                      # 6 mm above B point: the chin and the lower incisors move
    after_img, m = _move_lower_face(gray, seam, 30, 3.0, (15.0, 20.0), before.xy[k["menton"]])
    after = det(after_img, 0.1)
    out = compare(before, after, gray, after_img, ("153", "153 moved"))
    assert abs(out["superimpositions"]["overall"]["rotation_deg"]) < 0.1      # the cranial base did not move
    rows = {r["name"]: r for r in out["displacements"]["overall"]}
    s, n = before.xy[k["sella"]], before.xy[k["nasion"]]
    u = (n - s) / np.linalg.norm(n - s)
    v = np.array([-u[1], u[0]])
    for name in ("supramentale", "pogonion", "gnathion", "menton"):
        p = before.xy[k[name]]
        assert p[1] > seam + 30
        want = (p @ m[:, :2].T + m[:, 2] - p) * 0.1
        got = np.array([rows[name]["dx_mm"], rows[name]["dy_mm"]])
        assert np.linalg.norm(got - np.array([want @ u, want @ v])) < 0.5, name
        assert not rows[name]["within_reading_error"]
    from sdk.measurements import measure

    pts = {nm: before.xy[i] for i, nm in enumerate(before.names)}
    moved = dict(pts, supramentale=b_pt @ m[:, :2].T + m[:, 2])
    want_snb = measure(moved, before._schema())["SNB"]["value"] - measure(pts, before._schema())["SNB"]["value"]
    assert out["changes"]["SNB"]["change"] == pytest.approx(want_snb, abs=0.5)
    # the mandible's own superimposition takes the move out: its landmarks stay put in it
    mand = {r["name"]: r for r in out["displacements"]["mandible"]}
    assert max(mand[nm]["distance_mm"] for nm in ("pogonion", "gnathion", "menton")) < 0.75


def test_two_different_patients_give_an_answer(det, tmp_path):
    a, b = _gray("151.jpg"), _gray("153.jpg")
    out = compare(det(a, MM), det(b, MM), a, b, ("151", "153"))
    assert set(out["displacements"]) >= {"overall"} and out["changes"]
    assert "one patient" in out["caution"]
    # without a spacing: angles only, and said
    out = compare(det(a), det(b), a, b)
    assert out["units"].startswith("px") and any("angles only" in n for n in out["notes"])
    assert "dx_px" in out["displacements"]["overall"][0]


def test_the_cli_writes_its_files_and_refuses_a_non_cephalogram(tmp_path):
    from cephalo.cli import main

    noise = tmp_path / "noise.png"
    cv2.imwrite(str(noise), np.random.default_rng(0).integers(0, 256, (600, 480)).astype(np.uint8))
    img = ISBI_FIX / "images" / "152.jpg"
    r = CliRunner().invoke(main, ["compare", str(img), str(img), "--out", str(tmp_path / "o"), "--spacing", "0.4"])
    assert r.exit_code == 0, r.output
    assert "changed beyond reading error: no measurement; moved beyond it: no landmark" in r.output
    out = json.loads((tmp_path / "o" / "compare.json").read_text())
    assert all(x["distance_mm"] < 1e-6 for x in out["displacements"]["overall"])
    lines = (tmp_path / "o" / "compare.csv").read_text().splitlines()
    assert lines[0].startswith("kind,superimposition,name") and len(lines) > 19
    assert cv2.imread(str(tmp_path / "o" / "compare.png")) is not None
    r = CliRunner().invoke(main, ["compare", str(img), str(noise), "--out", str(tmp_path / "p")])
    assert r.exit_code == 1 and "noise.png: not read as a cephalogram" in r.output
    with pytest.raises(CompareError, match="not read as a cephalogram"):
        det = Detector(backend="onnxruntime")
        compare(det(_gray("152.jpg")), det(str(noise)))


def test_a_tilted_head_is_read_again_upright_and_averaged(det):
    """steady_reading: a head tilted from its usual frame is read a second time turned upright, and the points
    are the mean of the two readings; a head already upright is read once."""
    from sdk.compare import steady_reading
    from sdk.local_stage import head_turn

    gray = _gray("152.jpg")
    tilted, _ = turned(gray, 8.0)
    once = det(tilted, MM)
    steady, turn = steady_reading(det, tilted, tilted, MM)
    assert abs(turn - head_turn(once.xy, once._schema())) < 1e-9 and abs(turn) > 5
    assert steady.point_flags == once.point_flags and steady.image_size == once.image_size
    moved = np.linalg.norm(steady.xy - once.xy, axis=1) * MM
    assert 0 < np.median(moved) < 0.5
    upright, _ = turned(tilted, -turn)
    again, turn2 = steady_reading(det, upright, upright, MM)
    assert turn2 == 0.0 and np.array_equal(again.xy, det(upright, MM).xy)
