"""Results into a clinic's PACS: the DICOM objects of :mod:`sdk.dicom_sr` written beside the JSON and stored by
STOW-RS (a DICOMweb URL, ``http(s)://...``) or C-STORE (``dicom://AET@host:port``), with retries.

Instances carry UIDs derived from the image and the model, so a retried or rerun store replaces, never duplicates.
"""
from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Callable, List, Optional, Sequence
from urllib.parse import urlparse

from sdk.errors import CephaloError

RETRIES = 3              # attempts per store
BACKOFF_S = 0.5          # first wait between attempts, doubled each time
CALLING_AET = "CEPHALO"


def _attempts(what: str, action: Callable[[], None], transient: tuple) -> None:
    wait = BACKOFF_S
    for attempt in range(1, RETRIES + 1):
        try:
            action()
            return
        except transient as e:
            if attempt == RETRIES:
                raise CephaloError(f"{what}: failed after {RETRIES} attempts ({type(e).__name__}: {e})") from e
            time.sleep(wait)
            wait *= 2


def store(url: str, datasets: Sequence) -> None:
    """Store ``datasets`` (pydicom) at ``url``: DICOMweb STOW-RS or DICOM C-STORE; CephaloError when it fails."""
    parsed = urlparse(url)
    if parsed.scheme in ("http", "https"):
        _stow(url, datasets)
    elif parsed.scheme == "dicom":
        _c_store(parsed, datasets)
    else:
        raise CephaloError(f"--store {url!r}: give a DICOMweb URL (http(s)://host/dicom-web) or "
                           f"dicom://AET@host:port")


def _stow(url: str, datasets: Sequence) -> None:
    import requests
    from dicomweb_client.api import DICOMwebClient

    client = DICOMwebClient(url=url)

    def send():
        try:
            client.store_instances(datasets=list(datasets))
        except requests.HTTPError as e:
            code = e.response.status_code if e.response is not None else 0
            if code >= 500 or code in (408, 429):
                raise ConnectionError(f"HTTP {code}") from e
            raise CephaloError(f"--store {url}: the PACS refused the instances (HTTP {code})") from e

    _attempts(f"--store {url}", send, (ConnectionError, requests.ConnectionError, requests.Timeout))


def _c_store(parsed, datasets: Sequence) -> None:
    from pynetdicom import AE

    if not parsed.username or not parsed.hostname or not parsed.port:
        raise CephaloError(f"--store {parsed.geturl()!r}: dicom://AET@host:port expected")
    ae = AE(ae_title=CALLING_AET)
    for ds in datasets:
        ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)

    def send():
        assoc = ae.associate(parsed.hostname, parsed.port, ae_title=parsed.username)
        if not assoc.is_established:
            raise ConnectionError(f"no association with {parsed.username}@{parsed.hostname}:{parsed.port}")
        try:
            for ds in datasets:
                status = assoc.send_c_store(ds)
                code = getattr(status, "Status", None)
                if code is None:
                    raise ConnectionError("no answer to C-STORE")
                if code != 0x0000:
                    raise CephaloError(f"--store {parsed.geturl()}: C-STORE of {ds.SOPInstanceUID} refused "
                                       f"(status 0x{code:04X})")
        finally:
            assoc.release()

    _attempts(f"--store {parsed.geturl()}", send, (ConnectionError, OSError))


class DicomOutputs:
    """For ``cephalo predict``: the report and tracing of each result, written as ``<name>.sr.dcm`` and
    ``<name>.tracing.dcm`` (``<name>.image.dcm`` too when the input was not DICOM) and stored at ``store_url``."""

    def __init__(self, det, store_url: Optional[str] = None, analyses: Optional[Sequence[str]] = None):
        from sdk.dicom_sr import require_pacs

        require_pacs()                          # the extra, checked before any image is read
        self.det, self.store_url, self.analyses = det, store_url, analyses
        self.model = Path(det.model_path).name

    def __call__(self, path: Path, res, base: Optional[Path]) -> List[Path]:
        from sdk.dicom_sr import measurement_report, source_dataset, tracing_image
        from sdk.image_io import load_image

        data = Path(path).read_bytes()
        gray = load_image(data).gray                    # decoded once: the converted source and the tracing
        source, made = source_dataset(data, gray, res.view.startswith("mirrored"))
        sr = measurement_report(res, source, self.model)
        tracing = tracing_image(self.det.draw(gray, res, self.analyses), source, self.model, res.labels)
        objects = ([("image", source)] if made else []) + [("sr", sr), ("tracing", tracing)]
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
        if self.store_url:
            store(self.store_url, [ds for _, ds in objects])
        return written
