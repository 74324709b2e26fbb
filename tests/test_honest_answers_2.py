"""The second battery of bad inputs (issue 36): README's folder example on a first run, decompression bombs, symlink
loops, non-regular files, GIF and JFIF files, JSON Lines after a crash, usage errors."""
import json
import os
import shutil
import sys

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import ISBI_FIX, dicom_bytes

from sdk import ImageError, ImageTooLarge
from sdk.image_io import load_image

IMG = ISBI_FIX / "images" / "151.jpg"


def _scans(tmp_path):
    """README's layout: scans/ with images in sub-folders, one bad file."""
    src = tmp_path / "scans"
    (src / "a").mkdir(parents=True)
    (src / "b").mkdir()
    shutil.copy(IMG, src / "a" / "151.jpg")
    shutil.copy(ISBI_FIX / "images" / "152.jpg", src / "b" / "152.jfif")
    (src / "b" / "bad.png").write_bytes(b"not a png")
    return src


def test_readme_folder_example_on_a_first_run(tmp_path, monkeypatch):
    from cephalo.cli import main

    monkeypatch.chdir(tmp_path)
    _scans(tmp_path)
    r = CliRunner().invoke(main, ["predict", "scans/", "-r", "--out", "results", "--csv", "--jsonl",
                                  "results/all.jsonl", "--backend", "onnxruntime"])
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output       # the bad file fails, the rest is read
    lines = (tmp_path / "results" / "all.jsonl").read_text().splitlines()
    assert sorted(json.loads(x)["status"] for x in lines)[-1] in ("ok", "check") and len(lines) == 3
    assert (tmp_path / "results" / "b" / "152.json").is_file()               # .jfif is read, not skipped


def test_jsonl_has_one_line_per_image_after_a_crash_and_reruns(tmp_path, monkeypatch):
    from cephalo.cli import main

    monkeypatch.chdir(tmp_path)
    _scans(tmp_path)
    args = ["predict", "scans/", "-r", "--out", "results", "--jsonl", "results/all.jsonl", "--backend", "onnxruntime"]
    CliRunner().invoke(main, args)
    jl = tmp_path / "results" / "all.jsonl"
    lines = jl.read_text().splitlines()
    crashed = [x for x in lines if "151" not in x]          # the JSON of 151 was written, its line was not
    jl.write_text("\n".join(crashed) + "\n" + crashed[0][:20])      # and a torn last line
    for _ in range(2):                                       # each rerun retries the failed image
        r = CliRunner().invoke(main, args + ["--skip-done"])
        assert r.exit_code == 1, r.output
    recs = [json.loads(x) for x in jl.read_text().splitlines()]
    files = [x["file"] for x in recs]
    assert len(files) == len(set(files)) == 3 and any("151" in f for f in files)


def test_glob_over_a_symlink_loop_returns(tmp_path):
    from cephalo.run import collect_inputs

    (tmp_path / "loop" / "a").mkdir(parents=True)
    shutil.copy(IMG, tmp_path / "loop" / "a" / "x.jpg")
    try:
        os.symlink("..", tmp_path / "loop" / "a" / "up")
    except (OSError, NotImplementedError):
        pytest.skip("no symbolic links here")
    files, problems = collect_inputs([str(tmp_path / "loop" / "**" / "*.jpg")], recursive=True)
    assert [f.name for f in files] == ["x.jpg"] and not problems
    files, _ = collect_inputs([str(tmp_path / "loop")], recursive=True)
    assert [f.name for f in files] == ["x.jpg"]


@pytest.mark.skipif(sys.platform == "win32", reason="no /dev/zero or FIFOs")
def test_devices_and_fifos_are_refused(tmp_path):
    with pytest.raises(ImageError, match="not a regular file"):
        load_image("/dev/zero")
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    with pytest.raises(ImageError, match="not a regular file"):
        load_image(fifo)


def test_bombs_are_refused_before_decoding():
    gif = (b"GIF89a" + (14000).to_bytes(2, "little") * 2 + b"\x00\x00\x00"
           + b"\x2c" + b"\x00\x00" * 2 + (14000).to_bytes(2, "little") * 2 + b"\x00" + b"\x02\x02\x44\x01\x00\x3b")
    with pytest.raises(ImageTooLarge, match="decompression bomb"):
        load_image(gif)
    import pydicom
    from pydicom.filebase import DicomBytesIO

    ds = pydicom.dcmread(DicomBytesIO(dicom_bytes(np.zeros((40, 40), np.uint16))))
    ds.Rows, ds.Columns = 15000, 15000               # declares 225 MP over a few bytes of pixels
    out = DicomBytesIO()
    ds.save_as(out, enforce_file_format=True)
    with pytest.raises(ImageTooLarge, match="15000x15000"):
        load_image(out.getvalue())


def test_animated_gif_and_multiframe_dicom_say_which_frame():
    import io

    from PIL import Image

    g = cv2.imread(str(IMG), cv2.IMREAD_GRAYSCALE)
    buf = io.BytesIO()
    Image.fromarray(g).save(buf, "GIF", save_all=True, append_images=[Image.fromarray(255 - g)])
    got = load_image(buf.getvalue())
    assert got.gray.shape == g.shape and any("first frame" in n for n in got.notes)
    frames = np.stack([g.astype(np.uint16) * 16, (255 - g).astype(np.uint16) * 16])
    dcm = load_image(dicom_bytes(frames))
    assert any("2 frames" in n for n in dcm.notes) and np.corrcoef(dcm.gray.ravel(), g.ravel())[0, 1] > 0.99


def test_a_png_colour_profile_is_dropped_not_warned_about():
    """libpng prints 'iCCP: ...' warnings on stderr for malformed profiles; the reader drops the chunk."""
    import zlib

    ok, buf = cv2.imencode(".png", cv2.imread(str(IMG), cv2.IMREAD_GRAYSCALE))
    data = buf.tobytes()
    body = b"iCCP" + b"bad\x00\x00" + zlib.compress(b"\x00" * 40)
    chunk = (len(body) - 4).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")
    with_profile = data[:33] + chunk + data[33:]
    assert np.array_equal(load_image(with_profile).gray, load_image(data).gray)


def test_usage_errors_exit_2(tmp_path):
    from cephalo.cli import main

    for args in (["predict", str(IMG), "--spacing", "1e6"], ["predict", str(IMG), "--analysis", "sepia"],
                 ["predict", str(IMG), "--csv"]):
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 2 and "Traceback" not in r.output, (args, r.output)


def test_records_follow_the_published_schema(tmp_path):
    """sdk/record.schema.json documents every field; real records (a good image, a repaired point, a flagged
    non-cephalogram) validate against it."""
    from dataclasses import replace

    jsonschema = pytest.importorskip("jsonschema")
    from sdk import Detector
    from sdk.detector import MODELS_DIR

    schema = json.loads((MODELS_DIR.parent / "record.schema.json").read_text())
    det = Detector(backend="onnxruntime")
    res = det(IMG, spacing=0.4)
    first = res.xy.copy()
    first[0] += 50
    repaired = replace(res, repaired=(True,) + (False,) * (len(res.names) - 1), first_reading=first)
    noise = det(np.random.default_rng(1).integers(0, 256, (500, 400), dtype=np.uint8))
    for r in (res, repaired, noise):
        jsonschema.validate(json.loads(r.to_json()), schema)
    bad = json.loads(res.to_json())
    bad["landmarks"][0]["score"] = 3.0
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)
