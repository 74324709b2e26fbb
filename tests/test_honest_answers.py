"""Every input gets an honest answer: bad spacings refused before the model runs, per-image errors in batches and
folder runs, non-cephalograms and doubtful points flagged where the user looks (API, JSON, CSV, stdout, exit
code), turned images read, output names that cannot collide."""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import ISBI_FIX

from sdk import ISBI19, BatchError, CephaloError, Detector, check_spacing
from sdk.quality import assess, shape_model
from sdk.views import view_image, view_points_back

IMGS = sorted((ISBI_FIX / "images").glob("*.jpg"))
HELD_OUT = ISBI_FIX / "images" / "151.jpg"        # a Test1 image: neither stage of the bundled model saw it


@pytest.mark.parametrize("value,expected", [(0.1, 0.1), (np.float32(0.125), 0.125), (np.int64(1), 1.0),
                                            (np.float64(0.08), 0.08), (1, 1.0)])
def test_spacing_accepts_python_and_numpy_numbers(value, expected):
    assert check_spacing(value) == pytest.approx(expected)


@pytest.mark.parametrize("value,match", [(True, "number"), ("0.1", "number"), (None, "number"),
                                         (1e6, "pixels per mm"), (10.0, "pixels per mm"), (1e-300, "plausible"),
                                         (0.0, "plausible"), (-0.1, "plausible"), (float("nan"), "plausible"),
                                         (float("inf"), "plausible")])
def test_spacing_refused_with_a_message_naming_the_option(value, match):
    with pytest.raises(CephaloError, match=match) as e:
        check_spacing(value, "--spacing")
    assert str(e.value).startswith("--spacing")


def test_bad_spacing_refused_before_the_image_is_read(tiny_onnx):
    det = Detector(tiny_onnx["onnx"], backend="onnxruntime", threads=1)
    with pytest.raises(CephaloError, match="spacing="):      # the file does not exist: spacing was checked first
        det("no/such/file.jpg", spacing=1e6)
    with pytest.raises(CephaloError, match="spacing= of image 1"):
        det.batch([IMGS[0], "no/such/file.jpg"], spacing=[0.1, 25.0])
    res = det(IMGS[0], spacing=np.float32(0.4))
    assert res.spacing == pytest.approx(0.4) and np.allclose(res.mm(), res.xy * 0.4)


def test_batch_keeps_every_image_when_one_fails(tiny_onnx, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_text("not an image")
    det = Detector(tiny_onnx["onnx"], backend="onnxruntime", threads=1)
    with pytest.raises(BatchError, match="1 of 3 images failed.*broken.jpg") as e:
        det.batch([IMGS[0], bad, IMGS[1]], batch_size=2)
    res = e.value.results
    assert [type(r).__name__ for r in res] == ["Landmarks", "ImageError", "Landmarks"]
    assert np.allclose(res[0].xy, det(IMGS[0]).xy, atol=1e-3) and np.allclose(res[2].xy, det(IMGS[1]).xy, atol=1e-3)
    listed = det.batch([IMGS[0], bad, np.zeros((3, 3), np.uint8)], on_error="return")
    assert isinstance(listed[1], CephaloError) and "broken.jpg" in str(listed[1])
    assert isinstance(listed[2], CephaloError) and "#2" in str(listed[2])
    for size in (0, -1, 1.5, True):
        with pytest.raises(CephaloError, match="batch_size"):
            det.batch([IMGS[0]], batch_size=size)


@pytest.mark.parametrize("view", ["mirrored", "inverted", "mirrored+inverted", "rotated90", "rotated180",
                                  "rotated270"])
def test_views_map_points_back_exactly(view):
    """A marked pixel found in the view's image maps back to exactly where it is in the given image."""
    rng = np.random.default_rng(1)
    h, w = 37, 53
    for _ in range(5):
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        img = np.zeros((h, w), np.uint8)
        img[y, x] = 255
        seen = view_image(img, view)
        if view.endswith("inverted"):
            seen = 255 - seen
        yy, xx = np.unravel_index(np.argmax(seen), seen.shape)
        back = view_points_back(np.array([[xx, yy]], float), view, (h, w))
        assert back.tolist() == [[x, y]]


def test_quality_flags_points_off_the_skull_and_outside_the_image(fixture_samples):
    s = fixture_samples[0]
    names = ISBI19.names
    assert shape_model("isbi19", names) is not None
    h, w = 600, 484
    a = assess(s.points, np.full(19, 0.9), (h, w), "isbi19", names)
    assert a.reasons == ("",) * 19 and a.flags == () and a.shape_z.max() < 4
    moved = s.points.copy()
    moved[3] = moved[0] + [60, -150]        # porion ~60 mm up, on the ruler
    moved[18] = [w + 40, 20]                # articulare outside the image
    a = assess(moved, np.full(19, 0.9), (h, w), "isbi19", names)
    reasons, flags = a.reasons, a.flags
    assert reasons[3] == "implausible position" and reasons[18] == "outside the image"
    assert sum(bool(r) for r in reasons) == 2 and "points_outside_image" in flags
    assert "implausible_shape" not in flags
    shuffled = s.points[np.random.default_rng(0).permutation(19)]
    assert "implausible_shape" in assess(shuffled, np.full(19, 0.9), (h, w), "isbi19", names).flags
    low = np.full(19, 0.9)
    low[5] = 0.05
    assert assess(s.points, low, (h, w), "isbi19", names).reasons[5] == "low score"


def test_dicom_with_spacing_zero_says_so(tmp_path):
    pytest.importorskip("pydicom")
    from test_image_io import _dicom

    from sdk.image_io import load_image

    path = _dicom(tmp_path)
    import pydicom

    ds = pydicom.dcmread(str(path))
    ds.ImagerPixelSpacing = [0, 0]
    ds.save_as(str(path))
    li = load_image(path)
    assert li.spacing is None and any("ImagerPixelSpacing" in n and "not a usable spacing" in n for n in li.notes)


def test_output_names_cannot_collide(tmp_path):
    from cephalo.run import output_keys

    files = [tmp_path / "x" / "151.jpg", tmp_path / "y" / "151.jpg", tmp_path / "x" / "a.jpg",
             tmp_path / "x" / "a.png"]
    keys = output_keys(files)
    assert keys[files[0]] == "x/151" and keys[files[1]] == "y/151"
    assert keys[files[2]] == "x/a.jpg" and keys[files[3]] == "x/a.png"
    assert len(set(keys.values())) == 4


# ---------------------------------------------------------------------------------------------- with the bundled
@pytest.fixture(scope="module")
def det():
    return Detector()


def test_non_cephalograms_are_flagged_and_give_no_measurements(det):
    rng = np.random.default_rng(0)
    for img in (np.zeros((600, 484), np.uint8), rng.integers(0, 256, (600, 484), dtype=np.uint8)):
        res = det(img)
        assert res.status == "flagged" and not res.is_cephalogram and res.measurements() == {}
        d = res.to_dict()
        assert d["status"] == "flagged" and "low_confidence" in d["flags"] and d["measurements"] == {}
        assert "not be a lateral cephalogram" in d["messages"][0]


def test_turned_cephalograms_are_read_in_the_given_pixels(det):
    g = cv2.imread(str(HELD_OUT), cv2.IMREAD_GRAYSCALE)
    plain = det(g)
    assert plain.status in ("ok", "check") and plain.view == "as given" and plain.flags == ()
    h, w = g.shape
    x, y = plain.xy[:, 0], plain.xy[:, 1]
    expected = {1: np.stack([y, w - 1 - x], 1), 2: np.stack([w - 1 - x, h - 1 - y], 1),
                3: np.stack([h - 1 - y, x], 1)}
    for k, exp in expected.items():
        res = det(np.ascontiguousarray(np.rot90(g, k)))
        assert res.view == f"rotated{(4 - k) * 90}" and res.image_size == (g.shape if k == 2 else g.shape[::-1])
        assert np.abs(res.xy - exp).max() < 1e-6          # the same reading, turned: exact


def _folder(tmp_path: Path) -> Path:
    d = tmp_path / "in"
    (d / "sub").mkdir(parents=True)
    for name in ("151.jpg", "152.jpg"):
        (d / name).write_bytes((ISBI_FIX / "images" / name).read_bytes())
    (d / "sub" / "153.jpg").write_bytes((ISBI_FIX / "images" / "153.jpg").read_bytes())
    (d / "truncated.jpg").write_bytes((ISBI_FIX / "images" / "301.jpg").read_bytes()[:2000])
    (d / "notes.jpg").write_text("hello, not an image")
    cv2.imwrite(str(d / "noise.png"), np.random.default_rng(0).integers(0, 256, (600, 484), dtype=np.uint8))
    return d


def test_cli_folder_run_goes_on_past_bad_files_and_says_so(tmp_path):
    from cephalo.cli import main

    src, out = _folder(tmp_path), tmp_path / "out"
    r = CliRunner().invoke(main, ["predict", str(src), "-r", "--out", str(out), "--csv",
                                                  "--spacing", "0.4", "--jsonl", str(tmp_path / "all.jsonl")])
    assert r.exit_code == 1, r.output                            # some failed
    assert "Traceback" not in r.stdout + r.stderr
    for name in ("truncated.jpg", "notes.jpg"):
        assert f"{name}: FAILED" in r.stderr
    assert "corrupt or truncated" in r.stderr and "not a readable image" in r.stderr
    assert "6 image(s):" in r.stderr and "1 flagged, 2 failed" in r.stderr
    assert sum(f"{n}: ok" in r.stdout or f"{n}: check" in r.stdout for n in ("151.jpg", "152.jpg", "153.jpg")) == 3
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.json")) == [
        "151.json", "152.json", "noise.json", "sub/153.json"]
    assert "noise.png: FLAGGED" in r.stdout and "151.json" in r.stdout and "151.csv" in r.stdout
    rec = json.loads((out / "noise.json").read_text())
    assert rec["status"] == "flagged" and rec["file"].endswith("noise.png")
    rows = (out / "151.csv").read_text().splitlines()
    assert rows[0].endswith("flag,repaired,first_x,first_y,image_status,image_flags,site_placed")
    assert rows[1].split(",")[12] in ("ok", "check") and 0 <= float(rows[1].split(",")[5]) <= 1   # reliability
    res = json.loads((out / "151.json").read_text())
    lm = res["landmarks"][0]
    assert lm["x_mm"] == pytest.approx(lm["x"] * 0.4, abs=2e-3) and lm["y_mm"] == pytest.approx(lm["y"] * 0.4,
                                                                                               abs=2e-3)
    lines = [json.loads(ln) for ln in (tmp_path / "all.jsonl").read_text().splitlines()]
    assert len(lines) == 6 and {"flagged", "failed"} <= {ln["status"] for ln in lines}

    again = CliRunner().invoke(main, ["predict", str(src), "-r", "--out", str(out), "--skip-done"])
    assert "4 skipped (done before)" in again.stderr and again.exit_code == 1      # the bad files fail again


def test_cli_without_out_writes_json_lines_naming_each_file(tmp_path):
    from cephalo.cli import main

    good = ISBI_FIX / "images" / "151.jpg"
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff")
    r = CliRunner().invoke(main, ["predict", str(good), str(bad), str(tmp_path / "missing.png")])
    recs = [json.loads(ln) for ln in r.stdout.splitlines()]
    assert [Path(x["file"]).name for x in recs] == ["151.jpg", "bad.jpg"]
    assert recs[0]["status"] in ("ok", "check") and recs[1]["status"] == "failed" and recs[1]["error"]
    assert "missing.png: FAILED: no such file" in r.stderr and r.exit_code == 1


@pytest.mark.parametrize("args", [["--overlay"], ["--csv"], ["--skip-done"]])
def test_cli_output_options_need_out_before_any_work(args):
    from cephalo.cli import main

    r = CliRunner().invoke(main, ["predict", "no-such.jpg", *args])
    assert r.exit_code == 2 and "need --out" in r.stderr


def test_cli_refuses_implausible_spacing_and_huge_headers(tmp_path):
    from cephalo.cli import main

    r = CliRunner().invoke(main, ["predict", str(HELD_OUT), "--spacing", "10"])
    assert r.exit_code == 2 and "--spacing" in r.stderr and "pixels per mm" in r.stderr and r.stdout == ""
    ok, buf = cv2.imencode(".png", np.zeros((40, 40), np.uint8))
    b = bytearray(buf.tobytes())
    b[16:24] = (60000).to_bytes(4, "big") * 2
    (tmp_path / "huge.png").write_bytes(bytes(b))
    r = CliRunner().invoke(main, ["predict", str(tmp_path / "huge.png")])
    assert r.exit_code == 1 and "60000x60000" in r.stderr and "Traceback" not in r.stderr
