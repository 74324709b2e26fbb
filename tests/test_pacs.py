"""Results into a real PACS (issue 35): Debian's Orthanc on a free localhost port, its own storage and
configuration; the SR and the tracing stored by STOW-RS (DICOMweb) and C-STORE, read back by QIDO/WADO."""
import json
import shutil
import subprocess
import time
import urllib.request

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import ISBI_FIX, dicom_bytes

hd = pytest.importorskip("highdicom")
pytest.importorskip("pynetdicom")
pytest.importorskip("dicomweb_client")
ORTHANC = shutil.which("Orthanc") or next((p for p in ("/usr/sbin/Orthanc",) if shutil.os.path.exists(p)), None)
DICOMWEB = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
pytestmark = pytest.mark.skipif(ORTHANC is None, reason="Orthanc is not installed (Debian: orthanc, orthanc-dicomweb)")

IMG = ISBI_FIX / "images" / "151.jpg"
SHARED_151 = ISBI_FIX.parents[2].parent / "shared" / "data" / "isbi2015" / "images" / "151.jpg"
# Test1 image 151 at full resolution where the shared data are (CI), else the fixture's downsized copy
IMAGES = [IMG] + ([SHARED_151] if SHARED_151.is_file() else [])


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory):
    from cephalo.serve import free_port

    root = tmp_path_factory.mktemp("orthanc")
    http, dicom = free_port(), free_port()
    cfg = {"Name": "cephalo-test", "StorageDirectory": str(root / "db"), "IndexDirectory": str(root / "db"),
           "HttpPort": http, "DicomPort": dicom, "DicomAet": "ORTHANC", "RemoteAccessAllowed": False,
           "AuthenticationEnabled": False, "DicomAlwaysAllowStore": True, "DicomAlwaysAllowFind": True, "DicomCheckCalledAet": False,
           "Plugins": [DICOMWEB], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"}, "HttpTimeout": 30}
    (root / "orthanc.json").write_text(json.dumps(cfg))
    proc = subprocess.Popen([ORTHANC, str(root / "orthanc.json")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{http}"
    for _ in range(300):                      # up to 30 s to listen
        try:
            with urllib.request.urlopen(url + "/system", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            time.sleep(0.1)
    else:
        proc.terminate()
        pytest.fail("Orthanc did not start")
    yield {"rest": url, "dicomweb": url + "/dicom-web", "dicom": f"dicom://ORTHANC@127.0.0.1:{dicom}"}
    proc.terminate()
    proc.wait(30)


def _get(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


def _instances(orthanc):
    return _get(orthanc["rest"] + "/instances")


def _series_sr(orthanc, study_uid):
    """The SR of a study read back through QIDO-RS and WADO-RS."""
    import pydicom
    from dicomweb_client.api import DICOMwebClient

    client = DICOMwebClient(url=orthanc["dicomweb"])
    found = client.search_for_instances(study_instance_uid=study_uid)
    by_modality = {}
    for inst in found:
        ds = pydicom.Dataset.from_json(inst)
        by_modality.setdefault(str(ds.get("Modality", "")), []).append(ds)
    sr_meta = by_modality["SR"][0]
    sr = client.retrieve_instance(study_uid, sr_meta.SeriesInstanceUID, sr_meta.SOPInstanceUID)
    return sr, by_modality


@pytest.mark.parametrize("img", IMAGES, ids=lambda p: f"{p.parent.parent.name}-{p.name}")
def test_jpeg_result_stored_by_stow_and_read_back(orthanc, tmp_path, img):
    from cephalo.cli import main
    from sdk.dicom_sr import read_report

    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["predict", str(img), "--spacing", "0.4", "--out", str(out), "--dicom-sr",
                                  "--store", orthanc["dicomweb"], "--backend", "onnxruntime"])
    assert r.exit_code == 0, r.output
    rec = json.loads((out / "151.json").read_text())
    for name in ("151.sr.dcm", "151.tracing.dcm", "151.image.dcm"):
        assert (out / name).is_file()
    import pydicom

    local = pydicom.dcmread(out / "151.sr.dcm")
    assert local.PatientID == "" and local.Modality == "SR"
    sr, series = _series_sr(orthanc, local.StudyInstanceUID)
    assert {"SR", "OT", "PR"} <= set(series) and len(series["OT"]) == 2    # the converted image and the tracing
    import pydicom as _pd
    from dicomweb_client.api import DICOMwebClient

    local_ps = _pd.dcmread(out / "151.gsps.dcm")
    pr = series["PR"][0]
    back = DICOMwebClient(url=orthanc["dicomweb"]).retrieve_instance(local.StudyInstanceUID, pr.SeriesInstanceUID,
                                                                    pr.SOPInstanceUID)
    for tag in ("GraphicAnnotationSequence", "GraphicLayerSequence", "ReferencedSeriesSequence", "SOPInstanceUID",
                "PatientName", "ContentLabel"):
        assert back[tag] == local_ps[tag], tag                           # the state survives the round trip
    points, values = read_report(sr)
    want = {lm["name"]: (lm["x"], lm["y"]) for lm in rec["landmarks"]}
    if rec["ear_rods"] is not None:         # the ear rods' top travels as a point of its own
        want["machine_porion"] = (rec["ear_rods"]["machine_porion"]["x"], rec["ear_rods"]["machine_porion"]["y"])
    assert set(points) == set(want)
    assert max(abs(points[n][0] - want[n][0]) + abs(points[n][1] - want[n][1]) for n in want) < 0.01
    for m in ("SNA", "SNB", "ANB"):
        value, unit, cls = values[m]
        assert abs(value - rec["measurements"][m]["value"]) < 0.01 and unit == "deg"
        assert cls == rec["measurements"][m]["isbi_class"]
    hd.sr.Comprehensive3DSR.from_dataset(sr)                                 # highdicom's reader accepts it
    if shutil.which("dciodvfy"):
        check = subprocess.run(["dciodvfy", str(out / "151.sr.dcm")], capture_output=True, text=True)
        assert not [ln for ln in (check.stdout + check.stderr).splitlines() if ln.startswith("Error")]


def test_dicom_input_keeps_its_patient_and_study_by_c_store(orthanc, tmp_path):
    import cv2
    import pydicom

    from cephalo.cli import main

    g = cv2.imread(str(IMG), cv2.IMREAD_GRAYSCALE)
    src = tmp_path / "ceph.dcm"
    from pydicom.uid import generate_uid

    src.write_bytes(dicom_bytes(g.astype(np.uint16) * 16, ImagerPixelSpacing=[0.4, 0.4], PatientID="P-0042",
                                PatientName="DOE^JANE", StudyInstanceUID=generate_uid(),
                                SeriesInstanceUID=generate_uid(), SOPInstanceUID=generate_uid(),
                                SOPClassUID="1.2.840.10008.5.1.4.1.1.1.1", Modality="DX"))
    source = pydicom.dcmread(src)
    r = CliRunner().invoke(main, ["predict", str(src), "--out", str(tmp_path / "o"), "--dicom-sr", "--store",
                                  orthanc["dicom"], "--backend", "onnxruntime"])
    assert r.exit_code == 0, r.output
    assert not (tmp_path / "o" / "ceph.image.dcm").exists()               # the file itself is the source
    sr, series = _series_sr(orthanc, source.StudyInstanceUID)
    assert sr.PatientID == "P-0042" and sr.StudyInstanceUID == source.StudyInstanceUID
    ref = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert ref.ReferencedSOPInstanceUID == source.SOPInstanceUID


def test_many_stores_never_lose_or_duplicate_and_a_killed_run_resumes(orthanc, tmp_path):
    """50 images stored by C-STORE: each one's image, SR and tracing arrive once; a run killed in the middle and
    rerun with --skip-done ends with the same set, without copies."""
    import signal
    import sys

    import cv2

    from cephalo.cli import main

    src = tmp_path / "many"
    src.mkdir()
    g = cv2.imread(str(IMG), cv2.IMREAD_GRAYSCALE)
    for i in range(50):                        # 50 distinct images: the fixture shifted by i pixels
        cv2.imwrite(str(src / f"c{i:02d}.png"), np.roll(g, i, axis=1))
    before = len(_instances(orthanc))
    args = ["predict", str(src), "--out", str(tmp_path / "o"), "--dicom-sr", "--store", orthanc["dicom"],
            "--backend", "onnxruntime", "--spacing", "0.4"]
    proc = subprocess.Popen([sys.executable, "-m", "cephalo", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    for _ in range(1200):                      # kill it once a third has been stored
        if len(_instances(orthanc)) - before >= 70 or proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert len(_instances(orthanc)) - before < 200                        # killed before the end
    r = CliRunner().invoke(main, args + ["--skip-done"])
    assert r.exit_code in (0, 3), r.output
    after = len(_instances(orthanc))
    assert after - before == 200                                   # image, SR, GSPS and tracing of each, once
    r = CliRunner().invoke(main, args)                                    # everything again: replaced, not copied
    assert r.exit_code in (0, 3) and len(_instances(orthanc)) == after


def test_a_run_stores_what_an_earlier_one_could_not(orthanc, tmp_path):
    """``cephalo store DIR URL`` sends the .dcm files a run wrote (for each image together), skips the instances
    the PACS holds already, by DICOMweb and by C-STORE."""
    import cv2
    import pydicom

    from cephalo.cli import main

    out, new = tmp_path / "out", tmp_path / "later.png"
    cv2.imwrite(str(new), np.roll(cv2.imread(str(IMG), cv2.IMREAD_GRAYSCALE), 77, axis=1))    # not stored before
    r = CliRunner().invoke(main, ["predict", str(new), "--spacing", "0.4", "--out", str(out), "--dicom-sr",
                                  "--backend", "onnxruntime"])
    assert r.exit_code in (0, 3), r.output

    uids = {str(pydicom.dcmread(f).SOPInstanceUID) for f in out.glob("*.dcm")}
    before = set(_instances(orthanc))
    r = CliRunner().invoke(main, ["store", str(out), orthanc["dicomweb"]])
    assert r.exit_code == 0 and "stored 4 instance(s) of 1 image(s)" in r.output, r.output
    assert len(set(_instances(orthanc)) - before) <= 4
    held = {_get(orthanc["rest"] + f"/instances/{i}/simplified-tags")["SOPInstanceUID"]
            for i in _instances(orthanc)}
    assert uids <= held
    for url in (orthanc["dicomweb"], orthanc["dicom"]):
        r = CliRunner().invoke(main, ["store", str(out), url])
        assert r.exit_code == 0 and "4 already there" in r.output and "stored 0" in r.output, (url, r.output)
    (out / "junk.dcm").write_bytes(b"not dicom")
    r = CliRunner().invoke(main, ["store", str(out), orthanc["dicomweb"]])
    assert r.exit_code == 1 and "junk.dcm: not a readable DICOM file" in r.output
