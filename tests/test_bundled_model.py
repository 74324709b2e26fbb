"""The bundled default model on fixture images: a broken model or pipeline fails these bounds."""
import json
import subprocess
import sys

import numpy as np
import pytest

from sdk import Detector
from sdk.detector import DEFAULT_MODEL, MODELS_DIR
from sdk.metrics import radial_errors

# The fixture images are ISBI images downsized 4x (0.4 mm/px). The bundled model's Test1 MRE is in
# sdk/models/MODEL_CARD.md; these bounds leave room for the 8-image sample, far below what a broken pipeline
# (wrong letterbox, swapped axes, shuffled landmarks, untrained weights: > 10 mm) gives.
MRE_BOUND_MM = 2.5
MEDIAN_BOUND_MM = 1.5


@pytest.fixture(scope="module")
def det():
    return Detector()


def test_bundled_model_present_and_described(det):
    assert (MODELS_DIR / DEFAULT_MODEL).is_file()
    info = det.info
    assert info["schema"] == "isbi19" and info["precision"] == "int8"
    assert "CC BY-NC" in info["licence"]
    assert info["accuracy"]["isbi2015"]["test1"]["senior"]["mre_mm"] > 0
    assert (MODELS_DIR / "MODEL_CARD.md").is_file()


def test_bundled_model_accuracy_on_fixtures(det, fixture_samples):
    pred = np.stack([det(s.image, spacing=s.spacing).xy for s in fixture_samples])
    err_mm = radial_errors(pred, np.stack([s.points for s in fixture_samples])) * 0.4
    assert err_mm.mean() < MRE_BOUND_MM, err_mm.mean(axis=0)
    assert np.median(err_mm) < MEDIAN_BOUND_MM


def test_bundled_local_stage(det, fixture_samples):
    """The bundled model runs with its local stage; turning it off gives the first stage's points, which the
    local stage moves by millimetres at most (a broken crop or mapping would throw them across the image)."""
    from sdk.local_stage import local_stage_path

    assert det.local is not None and det.info["local_stage"] == str(local_stage_path(MODELS_DIR / DEFAULT_MODEL))
    acc = det.info["local_stage_accuracy"]["isbi2015"]["test1"]["senior"]
    assert acc["mre_mm"] < det.info["accuracy"]["isbi2015"]["test1"]["senior"]["mre_mm"]
    first = Detector(local_stage=False)
    assert first.local is None
    for s in fixture_samples[:4]:
        a, b = first(s.image), det(s.image)
        moved_mm = np.linalg.norm(a.xy - b.xy, axis=1) * 0.4
        assert 0 < moved_mm.mean() < 2.0 and moved_mm.max() < 8.0


def test_bundled_backends_agree(det, fixture_samples):
    # INT8 kernels differ a little between runtimes; both must land on the same sub-pixel peak region.
    a = Detector(backend="onnxruntime", local_stage=False)
    b = Detector(backend="openvino", local_stage=False)
    for s in fixture_samples[:3]:
        assert np.abs(a(s.image).xy - b(s.image).xy).max() < 1.5
    # With the local stage a two-peaked patch heatmap can tip between the runtimes' INT8 kernels (measured:
    # articulare of fixture 001 by 9.5 fixture px = 3.8 mm while its first-stage points differ by 0.2 px; both
    # runtimes' points are 2-3 mm from the label there). So: nearly all landmarks agree to 1 px and the median to
    # 0.3 px; a broken runtime or patch mapping moves most of them.
    a, b = Detector(backend="onnxruntime"), Detector(backend="openvino")
    diffs = np.concatenate([np.linalg.norm(a(s.image).xy - b(s.image).xy, axis=1) for s in fixture_samples[:3]])
    assert np.median(diffs) < 0.3 and (diffs < 1.0).mean() >= 0.9 and diffs.max() < 15, diffs.round(2)


def test_main_job_cli(tmp_path):
    from conftest import FIXTURES

    img = FIXTURES.parent.parent / "examples" / "data" / "isbi_152.jpg"
    out = subprocess.run([sys.executable, "-m", "cephalo", "predict", str(img), "--spacing", "0.1", "--out",
                          str(tmp_path), "--csv", "--overlay"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    d = json.loads((tmp_path / "isbi_152.json").read_text())
    assert len(d["landmarks"]) == 19 and d["spacing_source"] == "caller"
    assert (tmp_path / "isbi_152_landmarks.png").stat().st_size > 10000
    rows = (tmp_path / "isbi_152.csv").read_text().splitlines()
    assert len(rows) == 20 + (d["ear_rods"] is not None) and rows[-1].startswith(",machine_porion,") == (len(rows) == 21)


def test_fast_decode_matches_full_decode(det):
    from conftest import FIXTURES

    img = FIXTURES.parent.parent / "examples" / "data" / "isbi_152.jpg"   # 1935x2400: decoded at 1/2
    fast = Detector(fast_decode=True)
    loaded = fast.preprocess(img)[2]
    assert loaded.reduction == 2 and loaded.full_hw == (2400, 1935)
    a, b = det(img), fast(img)
    assert a.image_size == b.image_size
    shift = np.linalg.norm(a.xy - b.xy, axis=1)
    # original pixels (0.1 mm): the same landmarks. The local stage reads the reduced decode's texture a little
    # differently: here soft-tissue pogonion tips to a second peak 5 mm away (1.1 px mean shift on Test1 JPEGs
    # at quality 95, MRE +0.007 mm); the first stage alone moves every point < 4 px.
    assert np.median(shift) < 2.0 and shift.mean() < 5.0
    first = np.linalg.norm(Detector(local_stage=False)(img).xy - Detector(fast_decode=True, local_stage=False)(img).xy, axis=1)
    assert first.max() < 15.0


def test_facing_left_and_negative_images_are_read(det, fixture_samples):
    from sdk import LOW_CONFIDENCE
    from sdk.image_io import load_image

    s = fixture_samples[5]
    g = load_image(s.image).gray
    w = g.shape[1]
    plain = det(g)
    assert plain.view == "as given" and plain.confidence >= LOW_CONFIDENCE
    mirrored = det(g[:, ::-1].copy())
    assert mirrored.view == "mirrored" and mirrored.flags == () and mirrored.measurements()   # a facing-left skull
    back = mirrored.xy.copy()
    back[:, 0] = w - 1 - back[:, 0]                    # the mirrored image's points, mirrored back
    assert np.linalg.norm(back - plain.xy, axis=1).mean() < 2.0      # fixture pixels (0.4 mm)
    assert det(255 - g).view == "inverted"
    strict = Detector(auto_view=False)(g[:, ::-1].copy())
    assert strict.view == "as given" and strict.confidence < LOW_CONFIDENCE
    assert "low_confidence" in strict.flags and strict.status == "flagged" and strict.measurements() == {}
    assert "low confidence" in strict.to_dict()["messages"][0] and plain.flags == () and plain.status != "flagged"
    assert [r.view for r in det.batch([g, g[:, ::-1].copy()])] == ["as given", "mirrored"]


def test_16bit_image_with_a_burned_in_label_reads_like_its_8bit_self(det, fixture_samples):
    # 12-bit data in a 16-bit container with a label block at 65535: a plain min-max window squeezed the anatomy
    # into 16 grey levels and the model missed by ~11 mm (benchmarks/robustness.py's 16-bit variants)
    from sdk.image_io import load_image

    s = fixture_samples[2]
    g = load_image(s.image).gray
    g16 = g.astype(np.uint16) * 16
    g16[2:8, 2:40] = 65535
    plain, wide = det(g), det(g16)
    assert wide.view == "as given" and wide.confidence > 0.8
    assert np.linalg.norm(wide.xy - plain.xy, axis=1).mean() < 0.5     # fixture pixels (0.4 mm)


def test_bundled_points_pinned_on_held_out_images():
    """The shipped pair's points on four Test images (held out from training), pinned: a half-pixel slip in the
    letterbox or the decoder, swapped axes or a changed model moves them all. INT8 kernels differ a little
    between CPUs, so the median shift must be tiny and all but two points per image within half a pixel."""
    from conftest import FIXTURES, ISBI_FIX

    pinned = json.loads((FIXTURES / "bundled_points.json").read_text())["points"]
    det = Detector(backend="onnxruntime", threads=2)
    for name, want in pinned.items():
        res = det(ISBI_FIX / "images" / f"{name}.jpg")
        shift = np.linalg.norm(res.xy - np.array(want["xy"]), axis=1)       # fixture pixels (0.4 mm)
        assert np.median(shift) < 0.05 and (shift < 0.5).sum() >= 17, (name, np.round(shift, 3))
        assert res.view == want["view"]
