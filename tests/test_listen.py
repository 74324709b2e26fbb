"""``cephalo listen`` (issue 47): a real Orthanc routes images to the listener (its modalities and REST store
call), the listener reads them and stores the SR, presentation state and tracing back into the same study; a kill
midway and a restart leave exactly one set of results an image; other SOP classes and non-cephalograms are refused
with their reason."""
import json
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

import cv2
import numpy as np
import pytest
from conftest import ISBI_FIX, dicom_bytes

pytest.importorskip("highdicom")
pytest.importorskip("pynetdicom")
ORTHANC = shutil.which("Orthanc") or ("/usr/sbin/Orthanc" if shutil.os.path.exists("/usr/sbin/Orthanc") else None)
DICOMWEB = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
pytestmark = pytest.mark.skipif(ORTHANC is None, reason="Orthanc is not installed (Debian: orthanc, orthanc-dicomweb)")
IMG = ISBI_FIX / "images" / "151.jpg"


def _wait(what, check, limit_s=120.0):
    """Poll ``check`` until true (a limit for a hung run, not a measure of speed)."""
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.2)
    pytest.fail(f"waited {limit_s:.0f} s for {what}")


def _rest(url, data=None, method=None):
    req = urllib.request.Request(url, data=data, method=method or ("POST" if data is not None else "GET"))
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read() or b"null")


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    """Orthanc, knowing the listener as modality 'cephalo'; the listener's port and spool to start it with."""
    from cephalo.serve import free_port

    root = tmp_path_factory.mktemp("orthanc-listen")
    http, dicom, listener = free_port(), free_port(), free_port()
    cfg = {"Name": "cephalo-listen-test", "StorageDirectory": str(root / "db"), "IndexDirectory": str(root / "db"),
           "HttpPort": http, "DicomPort": dicom, "DicomAet": "ORTHANC", "RemoteAccessAllowed": False,
           "AuthenticationEnabled": False, "DicomAlwaysAllowStore": True, "DicomCheckCalledAet": False,
           "DicomModalities": {"cephalo": ["CEPHALO", "127.0.0.1", listener]},
           "Plugins": [DICOMWEB], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"}}
    (root / "orthanc.json").write_text(json.dumps(cfg))
    proc = subprocess.Popen([ORTHANC, str(root / "orthanc.json")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    rest = f"http://127.0.0.1:{http}"

    def up():
        try:
            return _rest(rest + "/system") is not None
        except OSError:
            return False

    _wait("Orthanc", up, 30)
    yield {"rest": rest, "dicomweb": rest + "/dicom-web", "dicom": f"dicom://ORTHANC@127.0.0.1:{dicom}",
           "port": listener, "root": root}
    proc.terminate()
    proc.wait(30)


def _start(node, spool):
    proc = subprocess.Popen([sys.executable, "-m", "cephalo", "listen", "--port", str(node["port"]), "--store",
                             node["dicomweb"], "--spool", str(spool), "--backend", "onnxruntime"],
                            stdout=subprocess.DEVNULL, stderr=open(spool.parent / "listen.log", "ab"),
                            start_new_session=True)

    def echoes():
        from pynetdicom import AE
        from pynetdicom.sop_class import Verification

        ae = AE()
        ae.add_requested_context(Verification)
        assoc = ae.associate("127.0.0.1", node["port"], ae_title="CEPHALO")
        if not assoc.is_established:
            return False
        ok = getattr(assoc.send_c_echo(), "Status", None) == 0
        assoc.release()
        return ok

    _wait("the listener to answer C-ECHO", lambda: proc.poll() is None and echoes(), 90)
    return proc


def _cephalograms(n, seed):
    from pydicom.uid import generate_uid

    g = cv2.imread(str(IMG), cv2.IMREAD_GRAYSCALE)
    out = []
    for i in range(n):
        out.append(dicom_bytes(np.roll(g, seed % 7 + i, axis=1).astype(np.uint16) * 16, ImagerPixelSpacing=[0.4, 0.4],
                               PatientID=f"P-{seed}-{i}", PatientName="DOE^JANE", StudyInstanceUID=generate_uid(),
                               SeriesInstanceUID=generate_uid(), SOPInstanceUID=generate_uid(),
                               SOPClassUID="1.2.840.10008.5.1.4.1.1.1.1", Modality="DX"))
    return out


def _route(node, files):
    """Store each file into Orthanc, then have Orthanc send it to the listener: (study UID, instance id) each."""
    import io

    import pydicom

    out = []
    for data in files:
        ident = _rest(node["rest"] + "/instances", data)["ID"]
        _rest(node["rest"] + "/modalities/cephalo/store", json.dumps([ident]).encode())
        out.append(str(pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).StudyInstanceUID))
    return out


def _modalities(node, study_uid):
    found = _rest(node["rest"] + "/tools/find", json.dumps({"Level": "Instance", "Expand": True,
                                                              "Query": {"StudyInstanceUID": study_uid}}).encode())
    series = {}
    for inst in found:
        s = _rest(node["rest"] + f"/series/{inst['ParentSeries']}")
        series.setdefault(s["MainDicomTags"].get("Modality", ""), []).append(inst["ID"])
    return series


def test_an_image_sent_to_the_listener_comes_back_with_its_results(node, tmp_path):
    from cephalo.listen import status_of

    spool = tmp_path / "spool"
    spool.mkdir()
    proc = _start(node, spool)
    try:
        [study] = _route(node, _cephalograms(1, 0))
        _wait("the results", lambda: status_of(spool)["done"] == 1)
        got = _modalities(node, study)
        assert len(got.get("SR", [])) == 1 and len(got.get("PR", [])) == 1 and len(got.get("DX", [])) == 1, got
        st = subprocess.run([sys.executable, "-m", "cephalo", "listen-status", str(spool)], capture_output=True,
                            text=True)
        assert st.returncode == 0 and json.loads(st.stdout)["alive"] and json.loads(st.stdout)["done"] == 1
        log = (tmp_path / "listen.log").read_text()
        assert "received" in log and "objects stored at" in log
    finally:
        proc.terminate()
        proc.wait(60)
    st = subprocess.run([sys.executable, "-m", "cephalo", "listen-status", str(spool)], capture_output=True, text=True)
    assert st.returncode == 1 and not json.loads(st.stdout)["alive"]


def test_a_kill_midway_and_a_restart_leave_one_set_an_image(node, tmp_path):
    from cephalo.listen import status_of

    spool = tmp_path / "spool"
    spool.mkdir()
    proc = _start(node, spool)
    studies = _route(node, _cephalograms(6, 100))                   # all received (acknowledged once on disk)
    _wait("a first result", lambda: status_of(spool)["done"] >= 1)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert status_of(spool)["incoming"] >= 1                        # killed with work left
    proc = _start(node, spool)
    try:
        _wait("every result", lambda: status_of(spool)["done"] == 6 and status_of(spool)["incoming"] == 0)
        for study in studies:
            got = _modalities(node, study)
            assert len(got.get("SR", [])) == 1 and len(got.get("PR", [])) == 1, (study, got)
        _route(node, _cephalograms(1, 100))                         # the same image sent again: not stored again
        _wait("the repeat", lambda: status_of(spool)["incoming"] == 0)
        assert len(_modalities(node, studies[0]).get("SR", [])) == 1
    finally:
        proc.terminate()
        proc.wait(60)


def test_other_classes_and_non_cephalograms_are_refused_with_their_reason(node, tmp_path):
    import io

    import pydicom
    from pydicom.uid import generate_uid
    from pynetdicom import AE

    from cephalo.listen import REFUSED_CLASS, status_of

    spool = tmp_path / "spool"
    spool.mkdir()
    proc = _start(node, spool)
    try:
        noise = np.random.default_rng(0).integers(0, 4096, (600, 484)).astype(np.uint16)
        blank = dicom_bytes(noise, StudyInstanceUID=generate_uid(), SeriesInstanceUID=generate_uid(),
                            SOPInstanceUID=generate_uid(), SOPClassUID="1.2.840.10008.5.1.4.1.1.1.1", Modality="DX")
        [study] = _route(node, [blank])
        _wait("the refusal", lambda: status_of(spool)["refused"] == 1)
        assert "SR" not in _modalities(node, study)
        reason = json.loads(next((spool / "refused").glob("*.json")).read_text())["reason"]
        assert reason
        sr = pydicom.dcmread(io.BytesIO(_cephalograms(1, 7)[0]))
        sr.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.34"             # a Comprehensive 3D SR: not an image
        sr.file_meta.MediaStorageSOPClassUID = sr.SOPClassUID
        ae = AE()
        ae.add_requested_context(sr.SOPClassUID, sr.file_meta.TransferSyntaxUID)
        assoc = ae.associate("127.0.0.1", node["port"], ae_title="CEPHALO")
        status = assoc.send_c_store(sr)
        assoc.release()
        assert status.Status == REFUSED_CLASS
    finally:
        proc.terminate()
        proc.wait(60)

