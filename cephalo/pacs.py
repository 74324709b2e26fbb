"""Results into a clinic's PACS: the DICOM objects of :mod:`sdk.dicom_sr` written beside the JSON and stored by
STOW-RS (a DICOMweb URL, ``http(s)://...``) or C-STORE (``dicom://AET@host:port``).

A store never costs the results: they are written first, each image's store failure is its own, one image's store
takes at most ``budget_s`` seconds (every attempt, wait and answer included), and after :data:`STOP_AFTER` failures
in a row the batch stops storing and says so; the written ``.dcm`` files are sent later by ``cephalo store``.
Instances carry UIDs derived from the image and the model, so a retried or rerun store replaces, never duplicates.
"""
from __future__ import annotations

import io
import json
import logging
import time
import uuid
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Tuple
from urllib.parse import urlparse

from sdk.errors import CephaloError, cause

BUDGET_S = 15.0          # one image's store, in all
CONNECT_S = 5.0          # one attempt's connection
BACKOFF_S = 0.5          # first wait between attempts, doubled each time
STOP_AFTER = 3           # failures in a row that stop a batch's storing
CALLING_AET = "CEPHALO"
QUIET = ("pynetdicom", "urllib3", "requests", "highdicom", "pydicom")    # their INFO lines are not the user's


class StoreError(CephaloError):
    """One store failed (refused, unreachable, or out of time); the results themselves are written. ``retry``:
    worth trying again later (no answer in time), not refused."""

    def __init__(self, message: str, retry: bool = False):
        super().__init__(message)
        self.retry = retry


class _Transient(Exception):
    """A failure worth another attempt: no connection, a time-out, a busy server."""


def quiet_libraries(verbose: bool) -> None:
    """The DICOM and HTTP libraries stay off stderr unless ``verbose``: each failure they meet is said once, by
    this module, in the user's terms."""
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.CRITICAL)


def check_url(url: str) -> str:
    """``url`` when it names a PACS this module can store to, else :class:`CephaloError` saying the two forms."""
    parsed = urlparse(url)
    ok = (parsed.scheme in ("http", "https") and parsed.hostname) or (
        parsed.scheme == "dicom" and parsed.username and parsed.hostname and _port(parsed))
    if not ok:
        raise CephaloError(f"--store {url!r}: give a DICOMweb URL (http(s)://host/dicom-web) or "
                           f"dicom://AET@host:port")
    return url


def _port(parsed) -> Optional[int]:
    try:
        return parsed.port
    except ValueError:
        return None


def store(url: str, datasets: Sequence, budget_s: float = BUDGET_S) -> int:
    """Store ``datasets`` (pydicom) at ``url`` within ``budget_s`` seconds in all; the number stored, or
    :class:`StoreError` naming the PACS and why."""
    check_url(url)
    deadline = time.monotonic() + budget_s
    parsed = urlparse(url)
    send = _stow if parsed.scheme in ("http", "https") else _c_store
    wait, attempt = BACKOFF_S, 0
    while True:
        attempt += 1
        try:
            send(url, datasets, deadline)
            return len(datasets)
        except _Transient as e:
            left = deadline - time.monotonic()
            if left <= wait:
                raise StoreError(f"--store {url}: not stored in {budget_s:g} s ({attempt} attempt(s); last: "
                                 f"{cause(e)})", retry=True) from None
            time.sleep(wait)
            wait *= 2


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise _Transient("out of time")
    return left


def _multipart(datasets: Sequence) -> Tuple[bytes, str]:
    """A STOW-RS body: each dataset as a Part 10 file in a multipart/related of application/dicom parts."""
    boundary = uuid.uuid4().hex
    out = io.BytesIO()
    for ds in datasets:
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        out.write(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode())
        out.write(buf.getvalue())
        out.write(b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), boundary


def _stow(url: str, datasets: Sequence, deadline: float) -> None:
    """One STOW-RS attempt. A 200 stored everything (PS3.18 10.5.3), whatever its body says or fails to say."""
    import requests

    body, boundary = _multipart(datasets)
    left = _left(deadline)
    try:
        r = requests.post(url.rstrip("/") + "/studies", data=body, timeout=(min(CONNECT_S, left), left),
                          headers={"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
                                   "Accept": "application/dicom+json"})
    except (requests.ConnectionError, requests.Timeout) as e:
        raise _Transient(f"{type(e).__name__}") from None
    except requests.RequestException as e:
        raise StoreError(f"--store {url}: {type(e).__name__}: {cause(e)}") from None
    if r.status_code == 200:
        return
    if r.status_code >= 500 or r.status_code in (408, 429):
        raise _Transient(f"HTTP {r.status_code}")
    failed = _failed_count(r)
    raise StoreError(f"--store {url}: the PACS refused " + (f"{failed} of {len(datasets)} instances" if failed else
                                                            "the instances") + f" (HTTP {r.status_code})")


def _failed_count(response) -> int:
    """How many instances a STOW-RS answer lists as failed (0 when its body does not say)."""
    try:
        body = json.loads(response.content or b"null")
        return len(body.get("00081198", {}).get("Value", [])) if isinstance(body, dict) else 0
    except (ValueError, AttributeError):
        return 0


def _association(parsed, contexts: Iterable[Tuple[str, str]], deadline: float):
    from pynetdicom import AE

    ae = AE(ae_title=CALLING_AET)
    left = _left(deadline)
    ae.connection_timeout = min(CONNECT_S, left)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = left
    for abstract, syntax in contexts:
        ae.add_requested_context(abstract, syntax)
    assoc = ae.associate(parsed.hostname, parsed.port, ae_title=parsed.username)
    if not assoc.is_established:
        raise _Transient(f"no association with {parsed.username}@{parsed.hostname}:{parsed.port}")
    return assoc


def _c_store(url: str, datasets: Sequence, deadline: float) -> None:
    parsed = urlparse(url)
    assoc = _association(parsed, {(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID) for ds in datasets}, deadline)
    try:
        for ds in datasets:
            _left(deadline)
            status = assoc.send_c_store(ds)
            code = getattr(status, "Status", None)
            if code is None:
                raise _Transient("no answer to C-STORE")
            if code != 0x0000 and not 0xB000 <= code <= 0xBFFF:        # B: stored, with a warning
                raise StoreError(f"--store {url}: C-STORE of {ds.SOPInstanceUID} refused (status 0x{code:04X})")
    finally:
        assoc.release()


class Pacs:
    """A batch's PACS: stores each image's objects (:func:`store`), counts what was stored, and stops storing
    after :data:`STOP_AFTER` failures in a row (a PACS that is down is not asked 500 times)."""

    def __init__(self, url: str, budget_s: float = BUDGET_S, stop_after: int = STOP_AFTER):
        self.url, self.budget_s, self.stop_after = check_url(url), budget_s, stop_after
        self.stored = self.images = self.failures_in_row = self.not_sent = 0

    @property
    def stopped(self) -> bool:
        return self.failures_in_row >= self.stop_after

    def send(self, datasets: Sequence) -> None:
        """Store one image's objects, or :class:`StoreError` (also when storing has stopped)."""
        if self.stopped:
            self.not_sent += 1
            raise StoreError(f"not stored: storing stopped after {self.stop_after} failures in a row")
        try:
            self.stored += store(self.url, datasets, self.budget_s)
        except StoreError:
            self.failures_in_row += 1
            raise
        self.images += 1
        self.failures_in_row = 0

    def summary(self, out_dir: Optional[Path]) -> str:
        """One line: how many instances were stored where, and what was not, with how to send it later."""
        line = f"stored {self.stored} instance(s) of {self.images} image(s) at {self.url}"
        if self.stopped:
            later = (f"; send the written .dcm files later: cephalo store {out_dir} {self.url}" if out_dir
                     else "")
            line += (f"; storing stopped after {self.stop_after} failures in a row ({self.not_sent} image(s) not "
                     f"tried){later}")
        return line


class DicomOutputs:
    """For ``cephalo predict``: the report, presentation state and tracing of each result, written as
    ``<name>.sr.dcm``, ``<name>.gsps.dcm`` and ``<name>.tracing.dcm`` (``<name>.image.dcm`` too when the input was
    not DICOM, the image the others refer to), and the objects to store."""

    def __init__(self, det, analyses: Optional[Sequence[str]] = None):
        from sdk.dicom_sr import require_pacs

        require_pacs()                          # the extra, checked before any image is read
        self.det, self.analyses = det, analyses
        self.model = Path(det.model_path).name

    def __call__(self, path: Path, res, base: Optional[Path]) -> Tuple[List[Path], list]:
        """(the files written beside ``base``, the pydicom datasets made)."""
        from sdk.dicom_gsps import presentation_state
        from sdk.dicom_sr import measurement_report, source_dataset, tracing_image
        from sdk.image_io import load_image

        data = Path(path).read_bytes()
        gray = load_image(data).gray                    # decoded once: the converted source and the tracing
        source, made = source_dataset(data, gray, res.view.startswith("mirrored"), spacing=res.spacing,
                                      spacing_source=res.spacing_source)
        sr = measurement_report(res, source, self.model)
        tracing = tracing_image(self.det.draw(gray, res, self.analyses), source, self.model, res.labels)
        gsps = presentation_state(res, source, self.model, self.analyses)
        objects = ([("image", source)] if made else []) + [("sr", sr), ("gsps", gsps), ("tracing", tracing)]
        written = []
        if base is not None:
            for suffix, ds in objects:
                target = base.with_name(f"{base.name}.{suffix}.dcm")
                buf = io.BytesIO()
                ds.save_as(buf, enforce_file_format=True)
                tmp = target.with_name(target.name + ".part")
                tmp.write_bytes(buf.getvalue())
                tmp.replace(target)
                written.append(target)
        return written, [ds for _, ds in objects]


def dicom_files(folder: Path) -> List[Path]:
    """The DICOM files under ``folder`` (``*.dcm``, sub-folders too), sorted."""
    return sorted(p for p in Path(folder).rglob("*.dcm") if p.is_file())


def already_there(url: str, datasets: Sequence, budget_s: float = BUDGET_S) -> set:
    """The SOP Instance UIDs of ``datasets`` that the PACS at ``url`` already holds: asked by QIDO-RS (DICOMweb)
    or C-FIND at the image level (DICOM). An empty set when the PACS does not answer the question."""
    parsed = urlparse(check_url(url))
    deadline = time.monotonic() + budget_s
    try:
        if parsed.scheme in ("http", "https"):
            return _qido_there(url, datasets, deadline)
        return _find_there(parsed, datasets, deadline)
    except Exception:   # noqa: BLE001 (a PACS that cannot be asked is sent everything: the same UIDs replace)
        return set()


def _qido_there(url: str, datasets: Sequence, deadline: float) -> set:
    import requests

    there = set()
    for study in sorted({str(ds.StudyInstanceUID) for ds in datasets}):
        left = _left(deadline)
        try:
            r = requests.get(f"{url.rstrip('/')}/studies/{study}/instances", timeout=(min(CONNECT_S, left), left),
                             headers={"Accept": "application/dicom+json"})
        except requests.RequestException as e:
            raise _Transient(type(e).__name__) from None
        if r.status_code == 204 or r.status_code == 404:
            continue
        if r.status_code != 200:
            raise _Transient(f"HTTP {r.status_code}")
        for inst in r.json() or []:
            there.update(inst.get("00080018", {}).get("Value", []))
    return there & {str(ds.SOPInstanceUID) for ds in datasets}


def _find_there(parsed, datasets: Sequence, deadline: float) -> set:
    from pydicom.dataset import Dataset
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind

    there = set()
    assoc = _association(parsed, [(StudyRootQueryRetrieveInformationModelFind, "1.2.840.10008.1.2.1")], deadline)
    try:
        for ds in datasets:
            q = Dataset()
            q.QueryRetrieveLevel = "IMAGE"
            q.StudyInstanceUID, q.SeriesInstanceUID = ds.StudyInstanceUID, ds.SeriesInstanceUID
            q.SOPInstanceUID = ds.SOPInstanceUID
            for status, ident in assoc.send_c_find(q, StudyRootQueryRetrieveInformationModelFind):
                code = getattr(status, "Status", None)
                if code is None:
                    raise _Transient("no answer to C-FIND")
                if code in (0xFF00, 0xFF01) and ident is not None:
                    there.add(str(ds.SOPInstanceUID))
                elif code not in (0x0000, 0xFF00, 0xFF01):
                    raise _Transient(f"C-FIND status 0x{code:04X}")
    finally:
        assoc.release()
    return there
