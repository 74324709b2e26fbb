"""The DICOM outputs without a PACS (issue 46/49): the API's report of a result, the service's SR answer, the
Secondary Capture's spacing; and ``--store`` against PACS that fail (refused, silent, broken answers): the results
are written first, each image's store failure is said, time is bounded and a batch stops storing after failures in
a row. These need no Orthanc, so they run everywhere the 'pacs' extra is installed."""
import io
import json
import socket

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import ISBI_FIX, local_http

hd = pytest.importorskip("highdicom")
pytest.importorskip("pynetdicom")

IMG = ISBI_FIX / "images" / "151.jpg"


def test_api_gives_the_report_of_a_result():
    import pydicom

    from sdk import Detector
    from sdk.dicom_sr import measurement_report, read_report, source_dataset
    from sdk.image_io import load_image

    res = Detector(backend="onnxruntime")(IMG)
    data = IMG.read_bytes()
    source, made = source_dataset(data, load_image(data).gray)
    sr = measurement_report(res, source, "m.onnx")
    buf = io.BytesIO()
    sr.save_as(buf, enforce_file_format=True)
    points, _ = read_report(pydicom.dcmread(io.BytesIO(buf.getvalue())))
    assert made and np.allclose([points[n] for n in res.names], res.xy, atol=1e-3)
    assert ("machine_porion" in points) == (res.ear_rods is not None)
    if res.ear_rods is not None:
        assert np.allclose(points["machine_porion"], res.ear_rods.machine_porion, atol=1e-3)
    again = measurement_report(res, source_dataset(data, load_image(data).gray)[0], "m.onnx")
    assert again.SOPInstanceUID == sr.SOPInstanceUID                      # the same result, the same instance


def test_service_answers_a_dicom_sr_when_asked(tmp_path):
    pytest.importorskip("starlette")
    pytest.importorskip("httpx")
    import pydicom
    from starlette.testclient import TestClient

    from cephalo.serve import create_app
    from sdk import Detector
    from sdk.dicom_sr import read_report

    with TestClient(create_app(Detector(backend="onnxruntime", threads=1), 1)) as c:
        r = c.post("/v1/landmarks", content=IMG.read_bytes(), headers={"accept": "application/dicom"})
        assert r.status_code == 200 and r.headers["content-type"] == "application/dicom"
        sr = pydicom.dcmread(io.BytesIO(r.content))
        points, _ = read_report(sr)
        js = c.post("/v1/landmarks", content=IMG.read_bytes()).json()
        assert max(abs(points[lm["name"]][0] - lm["x"]) for lm in js["landmarks"]) < 0.01
        assert r.headers["x-source-sop-instance-uid"]
        g = c.post("/v1/landmarks?dicom=gsps", content=IMG.read_bytes(), headers={"accept": "application/dicom"})
        from sdk.dicom_gsps import read_points

        ps = pydicom.dcmread(io.BytesIO(g.content))
        drawn, _ = read_points(ps)
        assert g.status_code == 200 and ps.Modality == "PR"
        assert max(abs(drawn[i + 1][0] - lm["x"]) for i, lm in enumerate(js["landmarks"])) < 0.01
        assert g.headers["x-source-sop-instance-uid"] == r.headers["x-source-sop-instance-uid"]
        bad = c.post("/v1/landmarks?dicom=png", content=IMG.read_bytes(), headers={"accept": "application/dicom"})
        assert bad.status_code == 400 and "sr or gsps" in bad.json()["error"]


def _main():
    from cephalo.cli import main

    return main


def _batch(tmp_path, n=5):
    src = tmp_path / "in"
    src.mkdir()
    for i, p in enumerate(sorted((ISBI_FIX / "images").glob("*.jpg"))[:n]):
        (src / f"{i:02d}.jpg").write_bytes(p.read_bytes())
    return src


def _answers(status: int, body: bytes):
    """A local HTTP server answering every POST and GET with ``status`` and ``body``: (server, url, requests seen)."""
    srv, base, seen = local_http([status], body)
    return srv, base + "/dicom-web", seen


def test_a_dead_pacs_costs_no_result_and_stops_the_batch_storing(tmp_path):
    """A refused port: every image's JSON and .dcm files are written, the first three images' stores fail within
    the time given, then storing stops for the rest and the run says so, with how to send the files later; the
    libraries' own log lines stay off the output; exit 1."""
    from cephalo.serve import free_port

    src, out = _batch(tmp_path), tmp_path / "out"
    for url in (f"dicom://NOBODY@127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}/dicom-web"):
        r = CliRunner().invoke(_main(), ["predict", str(src), "--out", str(out), "--dicom-sr", "--store", url,
                                         "--store-timeout", "1.5", "--backend", "onnxruntime"])
        assert r.exit_code == 1, r.output
        assert len(list(out.glob("*.json"))) == 5 and len(list(out.glob("*.sr.dcm"))) == 5
        assert r.output.count("NOT STORED") == 5 and r.output.count("not stored in 1.5 s") == 3, r.output
        assert "storing stopped after 3 failures in a row (2 image(s) not tried)" in r.output
        assert f"cephalo store {out} {url}" in r.output and "stored 0 instance(s)" in r.output
        assert "TCP Initialisation" not in r.output and "Traceback" not in r.output


def test_a_pacs_that_never_answers_is_given_up_in_time(tmp_path):
    """A port that takes the connection and never answers: the store gives up within its time, the results stay."""
    quiet = socket.socket()
    quiet.bind(("127.0.0.1", 0))
    quiet.listen(16)                               # connections queue; nothing is ever read or answered
    try:
        for url in (f"http://127.0.0.1:{quiet.getsockname()[1]}/dicom-web",
                    f"dicom://ANY@127.0.0.1:{quiet.getsockname()[1]}"):
            r = CliRunner().invoke(_main(), ["predict", str(IMG), "--out", str(tmp_path / "o"), "--dicom-sr",
                                             "--store", url, "--store-timeout", "1", "--backend", "onnxruntime"])
            assert r.exit_code == 1 and "not stored in 1 s" in r.output, r.output
            assert (tmp_path / "o" / "151.json").is_file()
    finally:
        quiet.close()


def test_odd_answers_of_a_dicomweb_server(tmp_path):
    """A 200 whose body is not DICOM JSON stored the instances (the status says so); a 400 refuses them, said per
    image, and the batch goes on to the next image."""
    srv, url, posts = _answers(200, b"<html>surprise</html>")
    try:
        r = CliRunner().invoke(_main(), ["predict", str(_batch(tmp_path, 2)), "--out", str(tmp_path / "o"),
                                         "--dicom-sr", "--store", url, "--backend", "onnxruntime"])
        assert r.exit_code == 0 and "stored 8 instance(s) of 2 image(s)" in r.output, r.output
        assert len(posts) == 2 and "Traceback" not in r.output
    finally:
        srv.shutdown()
    body = json.dumps({"00081198": {"vr": "SQ", "Value": [{}, {}]}}).encode()
    srv, url, posts = _answers(409, body)
    try:
        r = CliRunner().invoke(_main(), ["predict", str(tmp_path / "in"), "--out", str(tmp_path / "o2"),
                                         "--dicom-sr", "--store", url, "--backend", "onnxruntime"])
        assert r.exit_code == 1 and r.output.count("refused 2 of 4 instances (HTTP 409)") == 2, r.output
        assert len(list((tmp_path / "o2").glob("*.json"))) == 2 and len(posts) == 2
    finally:
        srv.shutdown()


def test_the_secondary_capture_carries_the_spacing_used(tmp_path):
    """A JPEG's converted image says its Pixel Spacing and how it was calibrated; without a spacing it says none."""
    import pydicom

    r = CliRunner().invoke(_main(), ["predict", str(IMG), "--spacing", "0.4", "--out", str(tmp_path / "a"),
                                     "--dicom-sr", "--backend", "onnxruntime"])
    assert r.exit_code == 0, r.output
    sc = pydicom.dcmread(tmp_path / "a" / "151.image.dcm")
    assert [float(v) for v in sc.PixelSpacing] == [0.4, 0.4] and "PixelSpacingCalibrationType" not in sc
    written = sorted((tmp_path / "a").glob("*.dcm"))
    assert len(written) == 4 and not list((tmp_path / "a").glob("*.part"))
    for f in written:                        # Part 10 files: the preamble and the file meta a PACS expects
        assert f.read_bytes()[128:132] == b"DICM", f.name
    from sdk.dicom_sr import source_dataset
    from sdk.image_io import load_image

    data = IMG.read_bytes()
    ruled, _ = source_dataset(data, load_image(data).gray, spacing=0.4, spacing_source="ruler")
    assert ruled.PixelSpacingCalibrationType == "FIDUCIAL" and "ruler" in ruled.PixelSpacingCalibrationDescription
    r = CliRunner().invoke(_main(), ["predict", str(IMG), "--out", str(tmp_path / "b"), "--dicom-sr",
                                     "--backend", "onnxruntime"])
    assert "PixelSpacing" not in pydicom.dcmread(tmp_path / "b" / "151.image.dcm")
    import shutil
    import subprocess

    if shutil.which("dciodvfy"):
        check = subprocess.run(["dciodvfy", str(tmp_path / "a" / "151.image.dcm")], capture_output=True, text=True)
        assert not [ln for ln in (check.stdout + check.stderr).splitlines() if ln.startswith("Error")], check.stderr


def test_bad_store_urls_are_refused_before_any_image(tmp_path):
    for url in ("ftp://x", "dicom://127.0.0.1:104", "dicom://AE@host:notaport"):
        r = CliRunner().invoke(_main(), ["predict", str(IMG), "--store", url, "--backend", "onnxruntime"])
        assert r.exit_code == 1 and "dicom://AET@host:port" in r.output and "Traceback" not in r.output, r.output


def test_the_presentation_state_is_drawn_where_the_landmarks_are(tmp_path):
    """``predict --dicom-sr`` writes a GSPS over the converted image: its points (read back from the file) sit on
    the JSON's 19 landmarks within 1 px of the referenced image; dcmtk's dcmpschk passes it, dcmp2pgm renders the
    image through it, dciodvfy finds no error; a DICOM input keeps its window in the state."""
    import shutil
    import subprocess

    import pydicom

    from sdk.dicom_gsps import LAYERS, read_points

    out = tmp_path / "o"
    r = CliRunner().invoke(_main(), ["predict", str(IMG), "--spacing", "0.4", "--out", str(out), "--dicom-sr",
                                     "--backend", "onnxruntime"])
    assert r.exit_code == 0, r.output
    rec = json.loads((out / "151.json").read_text())
    ps, image = pydicom.dcmread(out / "151.gsps.dcm"), pydicom.dcmread(out / "151.image.dcm")
    assert ps.SOPClassUID == "1.2.840.10008.5.1.4.1.1.11.1" and ps.Modality == "PR"
    assert ps.StudyInstanceUID == image.StudyInstanceUID and str(ps.PatientName) == str(image.PatientName) != ""
    ref = ps.ReferencedSeriesSequence[0].ReferencedImageSequence[0]
    assert ref.ReferencedSOPInstanceUID == image.SOPInstanceUID
    points, layers = read_points(ps)
    assert {"LANDMARKS", "TRACING", "MEASUREMENTS"} <= set(layers) <= set(LAYERS)
    assert sorted(points) == list(range(1, 20))
    for i, lm in enumerate(rec["landmarks"]):
        assert abs(points[i + 1][0] - lm["x"]) < 1 and abs(points[i + 1][1] - lm["y"]) < 1
    texts = [t.UnformattedTextValue for a in ps.GraphicAnnotationSequence if a.GraphicLayer == "MEASUREMENTS"
             for t in a.TextObjectSequence]
    assert any(t.startswith("SNA ") for t in texts) and "labels: consensus" in texts and any("caller" in t for t in texts)
    for tool in ("dcmpschk", "dcmp2pgm", "dciodvfy"):
        assert shutil.which(tool), f"{tool} is not installed (Debian: dcmtk, dicom3tools)"
    check = subprocess.run(["dcmpschk", str(out / "151.gsps.dcm")], capture_output=True, text=True)
    assert check.returncode == 0 and "Test failed" not in check.stdout + check.stderr, check.stdout + check.stderr
    pgm = tmp_path / "rendered.pgm"
    render = subprocess.run(["dcmp2pgm", "-p", str(out / "151.gsps.dcm"), str(out / "151.image.dcm"), str(pgm)],
                            capture_output=True, text=True)
    assert render.returncode == 0 and pgm.stat().st_size > int(image.Rows) * int(image.Columns), render.stderr
    check = subprocess.run(["dciodvfy", str(out / "151.gsps.dcm")], capture_output=True, text=True)
    assert not [ln for ln in (check.stdout + check.stderr).splitlines() if ln.startswith("Error")], check.stderr
    again = CliRunner().invoke(_main(), ["predict", str(IMG), "--spacing", "0.4", "--out", str(tmp_path / "p"),
                                         "--dicom-sr", "--backend", "onnxruntime"])
    assert again.exit_code == 0
    assert pydicom.dcmread(tmp_path / "p" / "151.gsps.dcm").SOPInstanceUID == ps.SOPInstanceUID   # replaces


def test_a_dicom_inputs_window_is_the_states(tmp_path):
    import cv2
    import pydicom
    from conftest import dicom_bytes

    from sdk import Detector
    from sdk.dicom_gsps import presentation_state

    g = cv2.imread(str(IMG), cv2.IMREAD_GRAYSCALE).astype(np.uint16) * 16
    src = tmp_path / "c.dcm"
    src.write_bytes(dicom_bytes(g, ImagerPixelSpacing=[0.4, 0.4], WindowCenter=2000, WindowWidth=3000))
    from sdk.dicom_sr import source_dataset
    from sdk.image_io import load_image

    res = Detector(backend="onnxruntime")(src)
    data = src.read_bytes()
    source, made = source_dataset(data, load_image(data).gray)
    assert not made and "WindowCenter" in pydicom.dcmread(src)
    ps = presentation_state(res, source, "m.onnx")
    voi = ps.SoftcopyVOILUTSequence[0]
    assert float(voi.WindowCenter) == 2000 and float(voi.WindowWidth) == 3000


def test_points_outside_the_image_are_said_not_drawn():
    """A flagged reading with a landmark beyond the image's edge still gets its state: that point is left out of
    the graphics (which must lie on the image) and the text says which."""
    from dataclasses import replace

    from sdk import Detector
    from sdk.dicom_gsps import presentation_state, read_points
    from sdk.dicom_sr import source_dataset
    from sdk.image_io import load_image

    data = IMG.read_bytes()
    res = Detector(backend="onnxruntime")(IMG)
    xy = res.xy.copy()
    xy[4] = (-30.0, 50.0)
    source, _ = source_dataset(data, load_image(data).gray)
    ps = presentation_state(replace(res, xy=xy), source, "m.onnx")
    points, _ = read_points(ps)
    assert 5 not in points and len(points) == 18
    texts = [t.UnformattedTextValue for a in ps.GraphicAnnotationSequence if a.GraphicLayer == "MEASUREMENTS"
             for t in a.TextObjectSequence]
    assert "not drawn, outside the image: 5" in texts


def test_a_refusal_says_how_many_only_where_the_answer_says_so():
    """A refusal counts the failed instances from a DICOM JSON answer's Failed SOP Sequence; an answer that is not
    one (HTML, a list, nothing) is a refusal of 'the instances', never a made-up count."""
    from cephalo.pacs import StoreError, store

    def refused(status, body):
        srv, url, _ = _answers(status, body)
        try:
            with pytest.raises(StoreError) as e:
                store(url, [_one_dataset()], budget_s=5)
            return str(e.value)
        finally:
            srv.shutdown()

    assert "refused 1 of 1 instances (HTTP 409)" in refused(409, json.dumps({"00081198": {"Value": [{}]}}).encode())
    for body in (b"<html>no</html>", b"[]", b"", b"null"):
        assert "refused the instances (HTTP 400)" in refused(400, body), body



def test_the_report_reads_back_every_measurement_by_value():
    """Every measurement of the result is in its report: value, UCUM unit and ISBI class; without a spacing no
    millimetre value is reported; the points' reliabilities are not taken for measurements."""
    import pydicom

    from sdk import Detector
    from sdk.dicom_sr import measurement_report, read_report, source_dataset
    from sdk.image_io import load_image

    det = Detector(backend="onnxruntime")
    data = IMG.read_bytes()
    source = source_dataset(data, load_image(data).gray)[0]
    units = {"deg": "deg", "mm": "mm", "ratio": "1"}
    for spacing in (0.4, None):
        res = det(IMG, spacing=spacing)
        buf = io.BytesIO()
        measurement_report(res, source, "m.onnx").save_as(buf, enforce_file_format=True)
        points, values = read_report(pydicom.dcmread(io.BytesIO(buf.getvalue())))
        m = res.measurements()
        assert set(values) == set(m) and len(m) >= 10
        assert (spacing is None) == all(v["unit"] != "mm" for v in m.values())
        for name, v in m.items():
            got = values[name]
            assert abs(got[0] - v["value"]) < 1e-3 and got[1] == units[v["unit"]], name
            assert got[2] == v.get("isbi_class"), name
        assert set(res.names) <= set(points)


def _groups(sr):
    """{tracking identifier: {"uid", "finding": (code, meaning), "evals": [((code, meaning), (code, meaning))]}}
    of a report's measurement groups."""
    out = {}

    def code(seq):
        return str(seq[0].CodeValue), str(seq[0].CodeMeaning)

    def walk(items):
        for it in items:
            if getattr(it, "ValueType", "") == "CONTAINER" and "ContentSequence" in it:
                group = {"evals": []}
                for c in it.ContentSequence:
                    name = code(c.ConceptNameCodeSequence)[1] if "ConceptNameCodeSequence" in c else ""
                    if c.ValueType == "TEXT" and name == "Tracking Identifier":
                        group["id"] = str(c.TextValue)
                    elif c.ValueType == "UIDREF" and name == "Tracking Unique Identifier":
                        group["uid"] = str(c.UID)
                    elif c.ValueType == "CODE" and name == "Finding":
                        group["finding"] = code(c.ConceptCodeSequence)
                    elif c.ValueType == "CODE" and name in ("Doubtful landmark", "Repaired landmark"):
                        group["evals"].append((code(c.ConceptNameCodeSequence), code(c.ConceptCodeSequence)))
                if "id" in group:
                    out[group["id"]] = group
                walk(it.ContentSequence)

    walk(sr.ContentSequence)
    return out


def test_the_report_marks_doubt_repair_and_a_faint_rod_by_code():
    """A doubtful landmark carries its reason, a repaired one says so, machine porion is a point of its own code
    (doubtful when its ring is faint); every group has its own UID, the same on a rerun, another for another
    model, each a 2.25 UID of at most 128 bits."""
    from dataclasses import replace

    import pydicom

    from sdk import Detector
    from sdk.dicom_sr import MACHINE_PORION, measurement_report, source_dataset, uid
    from sdk.ear_rods import CERTAIN_SCORE, EarRods, Ring
    from sdk.image_io import load_image

    res = Detector(backend="onnxruntime")(IMG, spacing=0.4)
    data = IMG.read_bytes()
    source = source_dataset(data, load_image(data).gray)[0]
    k = len(res.names)
    flags = ["" for _ in range(k)]
    flags[2] = "implausible position"
    repaired = [False] * k
    repaired[5] = True
    ring = Ring(100.0, 120.0, 20.0, CERTAIN_SCORE / 2, 22.0)
    faint = replace(res, point_flags=tuple(flags), repaired=tuple(repaired),
                    ear_rods=EarRods((ring,), ring.top, ring.score))

    def groups(r, model="m.onnx"):
        buf = io.BytesIO()
        measurement_report(r, source, model).save_as(buf, enforce_file_format=True)
        return _groups(pydicom.dcmread(io.BytesIO(buf.getvalue())))

    g = groups(faint)
    names = list(res.names)
    assert g[names[2]]["evals"] == [(("doubtful", "Doubtful landmark"),
                                     ("implausible-posi", "implausible position"))]
    assert g[names[5]]["evals"] == [(("repaired", "Repaired landmark"),
                                     ("re-read", "read again where the others put it"))]
    assert all(not g[n]["evals"] for i, n in enumerate(names) if i not in (2, 5))
    assert [g[n]["finding"] for n in names] == [(f"L{i + 1}", n) for i, n in enumerate(names)]
    mp = g[MACHINE_PORION]
    assert mp["finding"] == ("MPo", "machine porion (the ear rods' top)")
    assert mp["evals"] == [(("doubtful", "Doubtful landmark"), ("faint-ear-rod-ri", "faint ear-rod ring"))]  # SH: 16
    certain = replace(faint, ear_rods=EarRods((ring,), ring.top, CERTAIN_SCORE))
    assert groups(certain)[MACHINE_PORION]["evals"] == []
    uids = [x["uid"] for x in g.values()]
    assert len(set(uids)) == len(uids) == k + 2                      # landmarks, machine porion, measurements
    assert all(u.startswith("2.25.") and int(u[5:]) < 2 ** 128 for u in uids)
    assert [x["uid"] for x in groups(faint).values()] == uids
    # derived from the source, the model and the labels alone, so that a rerun replaces what an earlier one stored
    key = f"{source.SOPInstanceUID}|m.onnx|{res.labels}"
    assert g["cephalometric measurements"]["uid"] == uid(key, "measurements")
    assert g[MACHINE_PORION]["uid"] == uid(key, "landmark", MACHINE_PORION)
    assert g[names[0]]["uid"] == uid(key, "landmark", names[0])
    assert set(x["uid"] for x in groups(faint, "other.onnx").values()).isdisjoint(uids)


def test_a_dicom_source_keeps_what_it_has_and_gets_what_a_report_needs():
    """The instance a DICOM input names in its file meta is the one referenced when its data set leaves it out; a
    missing modality is OT; the patient and study attributes a report copies are present (empty) when absent. A
    converted image has an empty patient ID, not none."""
    import pydicom
    from conftest import dicom_bytes

    from sdk.dicom_sr import source_dataset, uid
    from sdk.image_io import load_image

    raw = dicom_bytes(np.zeros((8, 8), np.uint16), SOPInstanceUID="1.2.3.9", SOPClassUID="1.2.840.10008.5.1.4.1.1.7")
    ds = pydicom.dcmread(io.BytesIO(raw))
    for tag in ("SOPInstanceUID", "Modality", "ReferringPhysicianName", "SeriesInstanceUID"):
        if tag in ds:
            delattr(ds, tag)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    data = buf.getvalue()
    src, made = source_dataset(data, np.zeros((8, 8), np.uint8))
    assert not made and src.SOPInstanceUID == "1.2.3.9" and src.Modality == "OT"
    assert src.ReferringPhysicianName == "" and src.PatientID == src.get("PatientID", "")
    digest = __import__("hashlib").sha256(data).hexdigest()
    assert src.SeriesInstanceUID == uid(digest, "source series")
    jpeg = IMG.read_bytes()
    sc, made = source_dataset(jpeg, load_image(jpeg).gray)
    assert made and sc.PatientID == "" and sc.Modality == "OT" and list(sc.PatientOrientation) == ["A", "F"]
    assert sc.SeriesDescription == "cephalogram (converted for its report)"

def _one_dataset():
    import pydicom
    from conftest import dicom_bytes

    return pydicom.dcmread(io.BytesIO(dicom_bytes(np.zeros((8, 8), np.uint16), SOPInstanceUID="1.2.3.4",
                                                  SOPClassUID="1.2.840.10008.5.1.4.1.1.1.1")))


@pytest.fixture
def scp():
    """A real DICOM C-STORE SCP on localhost (pynetdicom) that keeps what it receives and answers ``status``; it
    requires its own AE title to be called."""
    from pynetdicom import AE, StoragePresentationContexts, evt

    from cephalo.serve import free_port

    got = {"status": 0x0000, "datasets": [], "called": []}

    def on_store(event):
        got["datasets"].append(event.dataset)
        got["called"].append(event.assoc.acceptor.ae_title)
        return got["status"]

    ae = AE(ae_title="ARCHIVE")
    ae.require_called_aet = True
    ae.supported_contexts = StoragePresentationContexts
    port = free_port()
    server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    yield got, f"dicom://ARCHIVE@127.0.0.1:{port}"
    server.shutdown()


def test_c_store_sends_every_instance_and_says_a_refusal(scp):
    """Each instance reaches the called AE title, in its transfer syntax; a warning status (0xB000) is stored; a
    refusal names the instance and its status and is not tried again; the wrong AE title gets no association."""
    from cephalo.pacs import StoreError, store

    got, url = scp
    two = [_one_dataset(), _one_dataset()]
    two[1].SOPInstanceUID = two[1].file_meta.MediaStorageSOPInstanceUID = "1.2.3.5"
    assert store(url, two, budget_s=10) == 2
    assert [str(d.SOPInstanceUID) for d in got["datasets"]] == ["1.2.3.4", "1.2.3.5"] and got["called"] == ["ARCHIVE"] * 2
    for warning in (0xB000, 0xBFFF):
        got["status"] = warning
        assert store(url, two[:1], budget_s=10) == 1
    got["status"] = 0xC000                                          # 'cannot understand': a failure
    with pytest.raises(StoreError, match=r"refused \(status 0xC000\)"):
        store(url, two[:1], budget_s=10)
    got["status"], before = 0xA700, len(got["datasets"])
    with pytest.raises(StoreError, match=r"C-STORE of 1\.2\.3\.4 refused \(status 0xA700\)") as e:
        store(url, two, budget_s=10)
    assert not e.value.retry and len(got["datasets"]) == before + 1          # refused once, not retried
    with pytest.raises(StoreError, match="not stored in 1 s.*no association with OTHER@127.0.0.1") as e:
        store(url.replace("ARCHIVE@", "OTHER@"), two, budget_s=1)
    assert e.value.retry


def test_a_batch_summary_and_its_stop(tmp_path):
    from cephalo.pacs import Pacs, StoreError
    from cephalo.serve import free_port

    pacs = Pacs(f"http://127.0.0.1:{free_port()}/dicom-web", budget_s=1.0, stop_after=2)
    for _ in range(3):
        with pytest.raises(StoreError):
            pacs.send([_one_dataset()])
    assert pacs.stopped and pacs.failures_in_row == 2 and pacs.not_sent == 1
    line = pacs.summary(tmp_path)
    assert line.startswith("stored 0 instance(s) of 0 image(s) at http://127.0.0.1:")
    assert f"cephalo store {tmp_path} {pacs.url}" in line and "(1 image(s) not tried)" in line
    assert "cephalo store" not in pacs.summary(None)
    assert not Pacs(pacs.url).stopped and Pacs(pacs.url).failures_in_row == 0


def test_the_dicom_outputs_of_each_kind_of_input(tmp_path):
    """A DICOM input is its own source (no converted image written; its study and patient kept); a JPEG read
    mirrored gets a converted image facing the other way; the state shows only the analyses asked for; the tracing
    and the state are the model's and the labels' (another site, other instances); every file is whole."""
    import cv2
    import pydicom
    from conftest import dicom_bytes
    from pydicom.uid import generate_uid

    from cephalo.pacs import DicomOutputs
    from sdk import Detector

    det = Detector(backend="onnxruntime")
    g = cv2.imread(str(IMG), cv2.IMREAD_GRAYSCALE)
    src = tmp_path / "ceph.dcm"
    src.write_bytes(dicom_bytes(g.astype(np.uint16) * 16, ImagerPixelSpacing=[0.4, 0.4], PatientID="P-1",
                                PatientName="DOE^JANE", StudyInstanceUID=generate_uid(), SOPInstanceUID=generate_uid(),
                                SeriesInstanceUID=generate_uid(), SOPClassUID="1.2.840.10008.5.1.4.1.1.1.1",
                                Modality="DX"))
    res = det(src)
    (tmp_path / "o").mkdir()
    files, objects = DicomOutputs(det, ["steiner"])(src, res, tmp_path / "o" / "ceph")
    assert [f.name for f in files] == ["ceph.sr.dcm", "ceph.gsps.dcm", "ceph.tracing.dcm"]
    assert not list((tmp_path / "o").glob("*.part")) and len(objects) == 3
    for f, ds in zip(files, objects):
        back = pydicom.dcmread(f)
        assert back.SOPInstanceUID == ds.SOPInstanceUID and back.PatientID == "P-1"
        assert back.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    ps = objects[1]
    texts = [t.UnformattedTextValue for a in ps.GraphicAnnotationSequence if a.GraphicLayer == "MEASUREMENTS"
             for t in a.TextObjectSequence]
    assert any(t.startswith("SNA ") for t in texts) and not any(t.startswith("FMA ") for t in texts)
    from dataclasses import replace

    other_labels = DicomOutputs(det)(src, replace(res, labels="site:b"), None)[1]
    assert {str(d.SOPInstanceUID) for d in other_labels[1:]}.isdisjoint({str(d.SOPInstanceUID) for d in objects[1:]})
    flipped = tmp_path / "flipped.png"
    cv2.imwrite(str(flipped), np.ascontiguousarray(g[:, ::-1]))
    res = det(flipped)
    assert res.view.startswith("mirrored")
    files, objects = DicomOutputs(det)(flipped, res, tmp_path / "o" / "flipped")
    assert files[0].name == "flipped.image.dcm" and list(objects[0].PatientOrientation) == ["P", "F"]
    assert [f.name for f in files[1:]] == ["flipped.sr.dcm", "flipped.gsps.dcm", "flipped.tracing.dcm"]


def _scripted(statuses):
    """A local DICOMweb server answering its POSTs with ``statuses`` in turn (the last one repeated)."""
    srv, base, seen = local_http(statuses)
    return srv, base + "/dicom-web/", seen


def test_a_stow_request_by_value_and_its_retries():
    """STOW-RS: POST <url>/studies (one slash), a multipart/related body of application/dicom Part 10 files (one
    per instance, in order, the boundary the header's), answers as DICOM JSON. 5xx, 408 and 429 are tried again
    after 0.5, 1, 2 ... s while the time given lasts; the error then says how many attempts were made."""
    import pydicom

    from cephalo.pacs import StoreError, store

    a, b = _one_dataset(), _one_dataset()
    b.SOPInstanceUID = "1.2.3.5"
    srv, url, seen = _scripted([503, 429, 408, 200])
    try:
        assert store(url, [a, b], budget_s=10) == 2
    finally:
        srv.shutdown()
    assert len(seen) == 4 and all(s["path"] == "/dicom-web/studies" for s in seen)
    h = seen[0]["headers"]
    assert h["Accept"] == "application/dicom+json"
    ctype, boundary = h["Content-Type"].split("; boundary=")
    assert ctype == 'multipart/related; type="application/dicom"' and len(boundary) == 32
    body = seen[0]["body"]
    assert body.endswith(f"--{boundary}--\r\n".encode())
    parts = body.split(f"--{boundary}".encode())[1:-1]
    assert len(parts) == 2
    uids = []
    for p in parts:
        head, data = p.split(b"\r\n\r\n", 1)
        assert head == b"\r\nContent-Type: application/dicom" and data.endswith(b"\r\n")
        assert data[128:132] == b"DICM"                          # a Part 10 file: preamble and file meta
        uids.append(str(pydicom.dcmread(io.BytesIO(data[:-2])).SOPInstanceUID))
    assert uids == ["1.2.3.4", "1.2.3.5"]
    # always 500: within 2 s, tries at 0, 0.5 and 1.5 s; a fourth would wait 2 s more
    srv, url, seen = _scripted([500])
    try:
        with pytest.raises(StoreError) as e:
            store(url, [a], budget_s=2)
    finally:
        srv.shutdown()
    assert e.value.retry is True and len(seen) == 3
    assert str(e.value) == f"--store {url}: not stored in 2 s (3 attempt(s); last: HTTP 500)"
    # a 4xx refusal is not tried again
    srv, url, seen = _scripted([400, 200])
    try:
        with pytest.raises(StoreError) as e:
            store(url, [a, b], budget_s=5)
    finally:
        srv.shutdown()
    assert e.value.retry is False and len(seen) == 1
    assert str(e.value) == f"--store {url}: the PACS refused the instances (HTTP 400)"
    # https goes by STOW-RS too: a plain-HTTP port answers no TLS, and that is a connection failure, tried again
    srv, url, seen = _scripted([200])
    try:
        with pytest.raises(StoreError) as e:
            store(url.replace("http://", "https://"), [a], budget_s=1)
    finally:
        srv.shutdown()
    assert e.value.retry is True and "last: SSLError" in str(e.value)


def _three_datasets():
    """Three instances: two in study 2.2, one in study 1.1."""
    out = [_one_dataset() for _ in range(3)]
    for ds, study, uid in zip(out, ("2.2", "2.2", "1.1"), ("1.2.3.4", "1.2.3.5", "1.2.3.6")):
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = study, study + ".1", uid
    return out


def test_what_a_dicomweb_pacs_already_holds():
    """QIDO-RS, one GET <url>/studies/<study>/instances per study (DICOM JSON asked for): the instances of ours it
    lists are there; a study it does not know (204, 404) holds none of them; a PACS that cannot be asked (5xx,
    unreachable, out of time) is sent everything."""
    from cephalo.pacs import already_there
    from cephalo.serve import free_port

    listed = json.dumps([{"00080018": {"vr": "UI", "Value": ["1.2.3.6"]}},
                         {"00080018": {"vr": "UI", "Value": ["9.9.9"]}}, {"00100010": {}}]).encode()
    ours = _three_datasets()
    theirs = json.dumps([{"00080018": {"vr": "UI", "Value": ["1.2.3.4"]}}]).encode()
    for statuses, bodies, expected in (([200, 200], [listed, b"null"], {"1.2.3.6"}),
                                       ([204, 200], [b"", theirs], {"1.2.3.4"}),
                                       ([404, 200], [b"", theirs], {"1.2.3.4"}),
                                       ([200, 500], [listed], set())):
        srv, base, seen = local_http(statuses, bodies)
        try:
            assert already_there(base + "/dicom-web/", ours, budget_s=5) == expected, statuses
        finally:
            srv.shutdown()
        assert [s["method"] for s in seen] == ["GET", "GET"]
        assert sorted(s["path"] for s in seen) == ["/dicom-web/studies/1.1/instances",
                                                   "/dicom-web/studies/2.2/instances"]
        assert all(s["headers"]["Accept"] == "application/dicom+json" for s in seen)
    assert already_there(f"http://127.0.0.1:{free_port()}/dicom-web", ours, budget_s=2) == set()
    srv, base, seen = local_http([200], listed)
    try:
        assert already_there(base, ours, budget_s=0) == set() and not seen         # no time: not asked
    finally:
        srv.shutdown()


def test_what_a_dicom_pacs_already_holds():
    """C-FIND at the IMAGE level, one query per instance (its study, series and SOP Instance UIDs): those the PACS
    answers with a match are there; a failed query (even after matches), or no association, leaves everything to be
    sent."""
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind

    from cephalo.pacs import already_there
    from cephalo.serve import free_port

    held, queries, failing = {"1.2.3.5"}, [], []

    def on_find(event):
        q = event.identifier
        queries.append((q.QueryRetrieveLevel, q.StudyInstanceUID, q.SeriesInstanceUID, q.SOPInstanceUID))
        if failing and q.SOPInstanceUID == "1.2.3.6":       # after a match: the answer as a whole is lost
            yield 0xA700, None
            return
        if q.SOPInstanceUID in held:
            yield 0xFF00, q

    ae = AE(ae_title="ARCHIVE")
    ae.require_called_aet = True
    ae.add_supported_context(StudyRootQueryRetrieveInformationModelFind)
    port = free_port()
    server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_FIND, on_find)])
    try:
        url, ours = f"dicom://ARCHIVE@127.0.0.1:{port}", _three_datasets()
        assert already_there(url, ours, budget_s=10) == {"1.2.3.5"}
        assert queries == [("IMAGE", "2.2", "2.2.1", "1.2.3.4"), ("IMAGE", "2.2", "2.2.1", "1.2.3.5"),
                           ("IMAGE", "1.1", "1.1.1", "1.2.3.6")]
        failing.append(True)
        assert already_there(url, ours, budget_s=10) == set()
        assert already_there(url.replace("ARCHIVE@", "OTHER@"), ours, budget_s=2) == set()
    finally:
        server.shutdown()



def test_the_written_dicom_files_are_found_under_a_folder_in_order(tmp_path):
    from cephalo.pacs import dicom_files

    for rel in ("b/2.sr.dcm", "a.gsps.dcm", "b/c/1.dcm", "notes.json", "x.dcm.part"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    (tmp_path / "folder.dcm").mkdir()
    assert [p.relative_to(tmp_path).as_posix() for p in dicom_files(tmp_path)] == ["a.gsps.dcm", "b/2.sr.dcm",
                                                                                   "b/c/1.dcm"]


def test_a_ruler_calibrated_result_says_so_in_its_converted_image(tmp_path):
    """The converted image carries the result's spacing and how it was found (the ruler: FIDUCIAL)."""
    from dataclasses import replace

    from cephalo.pacs import DicomOutputs
    from sdk import Detector

    det = Detector(backend="onnxruntime")
    res = replace(det(IMG), spacing=0.4, spacing_source="ruler")
    _, objects = DicomOutputs(det)(IMG, res, None)
    image = objects[0]
    assert [float(v) for v in image.PixelSpacing] == [0.4, 0.4] and image.PixelSpacingCalibrationType == "FIDUCIAL"
    caller = DicomOutputs(det)(IMG, replace(res, spacing_source="caller"), None)[1][0]
    assert "PixelSpacingCalibrationType" not in caller



def test_the_dicom_libraries_speak_only_when_asked():
    import logging

    from cephalo.pacs import QUIET, quiet_libraries

    root = logging.getLogger().level
    try:
        quiet_libraries(False)
        assert all(logging.getLogger(n).level == logging.CRITICAL for n in QUIET)
        quiet_libraries(True)
        assert all(logging.getLogger(n).level == logging.DEBUG for n in QUIET)
        assert logging.getLogger().level == root                  # the application's own logging is left alone
    finally:
        quiet_libraries(False)
