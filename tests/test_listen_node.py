"""``cephalo listen`` without a PACS (issue 47): its queue bound, and what it does with a PACS that refuses or does
not answer. These run everywhere the 'pacs' extra is installed; the end-to-end tests with Orthanc are in
test_listen.py."""
import json

import numpy as np
import pytest
from conftest import ISBI_FIX

pytest.importorskip("highdicom")
pytest.importorskip("pynetdicom")
IMG = ISBI_FIX / "images" / "151.jpg"


def _cephalograms(n, seed):
    import cv2
    from conftest import dicom_bytes
    from pydicom.uid import generate_uid

    g = cv2.imread(str(IMG), cv2.IMREAD_GRAYSCALE)
    return [dicom_bytes(np.roll(g, seed % 7 + i, axis=1).astype(np.uint16) * 16, ImagerPixelSpacing=[0.4, 0.4],
                        PatientID=f"P-{seed}-{i}", PatientName="DOE^JANE", StudyInstanceUID=generate_uid(),
                        SeriesInstanceUID=generate_uid(), SOPInstanceUID=generate_uid(),
                        SOPClassUID="1.2.840.10008.5.1.4.1.1.1.1", Modality="DX") for i in range(n)]


def test_a_full_queue_answers_out_of_resources(tmp_path):
    """Beyond ``queue`` waiting instances a C-STORE is answered 0xA700 (the sender retries later) and nothing is
    kept; an image class is kept whole in the spool before it is acknowledged."""
    from types import SimpleNamespace

    import pydicom

    from cephalo.listen import OUT_OF_RESOURCES, Listener
    from sdk import Detector

    node = Listener(Detector(backend="onnxruntime"), tmp_path / "spool", "http://127.0.0.1:9/dicom-web", queue=1)
    data = _cephalograms(2, 3)
    events = []
    for raw in data:
        import io

        ds = pydicom.dcmread(io.BytesIO(raw))
        events.append(SimpleNamespace(
            request=SimpleNamespace(AffectedSOPClassUID=ds.SOPClassUID, AffectedSOPInstanceUID=ds.SOPInstanceUID),
            dataset=ds, context=SimpleNamespace(transfer_syntax=ds.file_meta.TransferSyntaxUID),
            assoc=SimpleNamespace(requestor=SimpleNamespace(ae_title="MODALITY"))))
    assert node._on_store(events[0]) == 0x0000
    kept = list((tmp_path / "spool" / "incoming").glob("*.dcm"))
    assert len(kept) == 1 and pydicom.dcmread(kept[0]).SOPInstanceUID == events[0].dataset.SOPInstanceUID
    assert node._on_store(events[1]) == OUT_OF_RESOURCES
    assert len(list((tmp_path / "spool" / "incoming").glob("*.dcm"))) == 1


def test_a_pacs_that_refuses_or_does_not_answer(tmp_path):
    """A refusal sets the instance aside with the PACS's answer (never retried for ever); no answer keeps it
    waiting in the spool for the next try."""
    import pydicom
    from conftest import local_http

    from cephalo.listen import Listener
    from cephalo.serve import free_port
    from sdk import Detector

    srv, base, _ = local_http([400])
    det = Detector(backend="onnxruntime")
    try:
        node = Listener(det, tmp_path / "a", base + "/dicom-web")
        path = node.spool.keep("1.2.3", _cephalograms(1, 0)[0])
        assert node.one(path) and not path.exists()
        reason = json.loads((tmp_path / "a" / "refused" / "1.2.3.json").read_text())["reason"]
        assert "refused" in reason and "HTTP 400" in reason
    finally:
        srv.shutdown()
    node = Listener(det, tmp_path / "b", f"http://127.0.0.1:{free_port()}/dicom-web", store_timeout=1.0)
    path = node.spool.keep("1.2.4", _cephalograms(1, 0)[0])
    assert not node.one(path) and path.exists() and pydicom.dcmread(path).Modality == "DX"
