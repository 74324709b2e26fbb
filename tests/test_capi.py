"""The C API (capi/): built with the system compiler, run from C on a real image and compared with Python, from
several host threads at once, with bad arguments and broken environments, and from a host that already runs
Python (ctypes)."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import ISBI_FIX

ROOT = Path(__file__).resolve().parents[1]
IMG = ISBI_FIX / "images" / "151.jpg"          # a Test image, held out from training

pytestmark = pytest.mark.skipif(shutil.which("cc") is None or shutil.which("c++") is None,
                                reason="no C/C++ compiler")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    sys.path.insert(0, str(ROOT / "capi"))
    from build import build, python_flags  # noqa: E402  (capi/build.py)

    out = tmp_path_factory.mktemp("capi")
    build(out, examples=True)
    subprocess.run(["cc", "-O2", "-std=c11", "-Wall", "-Werror", str(ROOT / "tests" / "capi" / "check.c"),
                    f"-I{ROOT / 'capi'}", f"-L{out}", "-lcephalo", f"-Wl,-rpath,{out}", "-lpthread", "-o",
                    str(out / "check")], check=True)
    pgm = out / "151.pgm"
    cv2.imwrite(str(pgm), cv2.imread(str(IMG), cv2.IMREAD_GRAYSCALE))
    assert python_flags()
    return out, pgm


def _run(args, python=None, **kw):
    env = {**os.environ, "CEPHALO_PYTHON": python or sys.executable}
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, env=env, timeout=600, **kw)


def test_c_example_matches_python(built):
    from sdk import Detector

    out, pgm = built
    r = _run([out / "detect_pgm", pgm, "0.4"], cwd=out)
    assert r.returncode == 0 and r.stderr == "", r.stderr          # nothing printed but its own output
    lines = r.stdout.splitlines()
    pts = np.array([[float(v) for v in ln.split()[1:3]] for ln in lines[1:20]])
    ref = Detector(backend="onnxruntime", threads=2)(cv2.imread(str(IMG), cv2.IMREAD_GRAYSCALE), spacing=0.4)
    assert [ln.split()[0] for ln in lines[1:20]] == list(ref.names)
    assert np.abs(pts - ref.xy).max() <= 1e-6
    mp = next(ln for ln in lines if ln.startswith("machine_porion ")).split()
    if ref.ear_rods is None:
        assert mp[1] == "none"
    else:       # the ear rods' top reaches C as Python has it
        assert np.abs(np.array([float(mp[1]), float(mp[2])]) - ref.ear_rods.machine_porion).max() <= 1e-3
        assert mp[3] == ("certain" if ref.ear_rods.certain else "faint")
    sna = next(ln for ln in lines if ln.startswith("SNA "))
    assert float(sna.split()[1]) == pytest.approx(ref.measurements()["SNA"]["value"], abs=1e-3)
    cpp = _run([out / "detect_cpp", pgm], cwd=out)
    assert cpp.returncode == 0 and "19 landmarks" in cpp.stdout and "ANB" in cpp.stdout, cpp.stderr


def test_threads_on_one_handle_and_on_several(built):
    out, pgm = built
    r = _run([out / "check", "threads", pgm, 4, 10], cwd=out)
    assert r.returncode == 0 and "mismatches 0 failures 0" in r.stdout, r.stdout + r.stderr


def test_bad_arguments_return_codes_with_messages(built):
    out, pgm = built
    r = _run([out / "check", "args", pgm], cwd=out)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) >= 16 and all("OK" in ln for ln in lines), r.stdout
    assert r.stderr == ""


def test_missing_model_and_broken_environments_fail_at_open(built, tmp_path):
    out, _ = built
    r = _run([out / "check", "open", tmp_path / "missing.onnx"], cwd=tmp_path)
    assert "open 3 [" in r.stdout and "does not exist" in r.stdout and r.returncode == 0
    r = _run([out / "check", "open", "x"], python=str(tmp_path / "no" / "python"), cwd=tmp_path)
    assert "open 4 [" in r.stdout and "does not exist" in r.stdout
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "empty")], check=True)
    empty = tmp_path / "empty" / ("Scripts" if os.name == "nt" else "bin") / "python"
    r = _run([out / "check", "open", "x"], python=str(empty), cwd=tmp_path)
    assert "open 4 [" in r.stdout and "cannot import the SDK" in r.stdout and r.returncode == 0, r.stdout + r.stderr


HOST = r'''
import ctypes, sys
import numpy as np, cv2
lib = ctypes.CDLL(sys.argv[1])
lib.cephalo_last_error.restype = ctypes.c_char_p
class Res(ctypes.Structure):
    _fields_ = [("k", ctypes.c_int), ("xy", ctypes.POINTER(ctypes.c_double))]
det = ctypes.c_void_p()
assert lib.cephalo_open(None, b"onnxruntime", 2, ctypes.byref(det)) == 0, lib.cephalo_last_error()
g = cv2.imread(sys.argv[2], cv2.IMREAD_GRAYSCALE)
rgb = np.ascontiguousarray(np.repeat(g[:, :, None], 3, axis=2))
padded = np.zeros((g.shape[0], g.shape[1] * 3 + 16), np.uint8)   # rows longer than the image: a stride
padded[:, :g.shape[1] * 3] = rgb.reshape(g.shape[0], -1)
from sdk import Detector
ref = Detector(backend="onnxruntime", threads=2)(rgb).xy
res = ctypes.POINTER(Res)()
rc = lib.cephalo_detect(det, padded.ctypes.data_as(ctypes.c_void_p), g.shape[1], g.shape[0], padded.strides[0],
                        8, 3, ctypes.c_double(0.0), ctypes.byref(res))
assert rc == 0, lib.cephalo_last_error()
xy = np.ctypeslib.as_array(res.contents.xy, shape=(res.contents.k * 2,)).reshape(-1, 2).copy()
lib.cephalo_result_free(res)
lib.cephalo_close(det)
print("max", float(np.abs(xy - ref).max()))
'''


def test_a_host_that_already_runs_python(built, tmp_path):
    """The library finds the running interpreter (ctypes in a Python process), takes the GIL per call, and reads
    a strided RGB buffer in place."""
    out, _ = built
    script = tmp_path / "host.py"
    script.write_text(HOST)
    r = _run([sys.executable, script, out / "libcephalo.so", IMG], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert float(r.stdout.split()[-1]) <= 1e-6


@pytest.mark.skipif(shutil.which("cmake") is None, reason="no cmake")
def test_cmake_builds_the_library_and_examples(tmp_path):
    b = tmp_path / "b"
    cfg = subprocess.run(["cmake", "-S", str(ROOT / "capi"), "-B", str(b), f"-DPython3_EXECUTABLE={sys.executable}"],
                         capture_output=True, text=True)
    if cfg.returncode != 0 and "Development.Embed" in cfg.stderr:
        pytest.skip("this Python has no embeddable development files for CMake")
    assert cfg.returncode == 0, cfg.stderr
    r = subprocess.run(["cmake", "--build", str(b), "-j2"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (b / "detect_pgm").is_file() and (b / "detect_cpp").is_file()


def test_open_with_options_takes_a_site_and_refuses_unknown_keys(built, tmp_path):
    """cephalo_open_with: Detector options as JSON (a site profile here), from a host that runs Python (ctypes)."""
    from sdk import Detector
    from sdk.schemas import ISBI19
    from sdk.site import SiteProfile

    out, pgm = built
    offsets = np.zeros((ISBI19.k, 2))
    offsets[3] = (-0.03, -0.06)
    site = SiteProfile("clinic", ISBI19.id, ISBI19.names, offsets, 10).save(tmp_path / "clinic.json")
    script = tmp_path / "host.py"
    script.write_text("""
import ctypes, json, sys
import numpy as np, cv2
lib = ctypes.CDLL(sys.argv[1])
lib.cephalo_last_error.restype = ctypes.c_char_p
lib.cephalo_result_json.restype = ctypes.c_char_p
det = ctypes.c_void_p()
bad = lib.cephalo_open_with(None, b"onnxruntime", 1, b'{"colour": "blue"}', ctypes.byref(det))
print("bad", bad, lib.cephalo_last_error().decode())
print("notjson", lib.cephalo_open_with(None, b"onnxruntime", 1, b'{site', ctypes.byref(det)))
opts = json.dumps({"site": sys.argv[3]}).encode()
assert lib.cephalo_open_with(None, b"onnxruntime", 1, opts, ctypes.byref(det)) == 0, lib.cephalo_last_error()
g = np.ascontiguousarray(cv2.imread(sys.argv[2], cv2.IMREAD_GRAYSCALE))
res = ctypes.c_void_p()
assert lib.cephalo_detect(det, g.ctypes.data_as(ctypes.c_void_p), g.shape[1], g.shape[0], g.strides[0], 8, 1,
                          ctypes.c_double(0.0), ctypes.byref(res)) == 0
print("json", lib.cephalo_result_json(res).decode())
""")
    r = _run([sys.executable, script, out / "libcephalo.so", pgm, site])
    assert r.returncode == 0, r.stderr[-2000:]
    lines = dict(ln.split(" ", 1) for ln in r.stdout.splitlines())
    assert lines["bad"].startswith("1 ") and "colour" in lines["bad"] and lines["notjson"] == "1"
    rec = __import__("json").loads(lines["json"])
    ref = Detector(backend="onnxruntime", site=site)(cv2.imread(str(pgm), cv2.IMREAD_GRAYSCALE))
    assert rec["labels"] == "site:clinic" and abs(rec["landmarks"][3]["x"] - ref.xy[3, 0]) < 1e-3
