"""``cephalo listen``: a DICOM node the clinic's PACS or modality sends cephalograms to ("send to AI"); the results
(SR, GSPS and the tracing) go back into the same study.

    received (C-STORE)  -> spool/incoming/<SOP Instance UID>.dcm, written whole before the C-STORE is answered
    read (the Detector) -> SR + GSPS + tracing, stored at --store (DICOMweb or dicom://AET@host:port)
    done                -> spool/done/<uid>.json (the record and where it was stored); the incoming file removed
    not a cephalogram   -> spool/refused/<uid>.json with the reason; nothing is sent back
    no answer in time   -> stays in incoming/; the queue waits and tries again (a restart finishes it too)
    refused by the PACS -> spool/refused/<uid>.json with the PACS's answer

Nothing received is lost: an instance is acknowledged only once it is on disk, and it leaves ``incoming/`` only
once its results are stored (their UIDs derive from the image and the model, so a result sent again after a kill
replaces itself, never adds a copy). Bounded: at most ``max_associations`` at once, and ``queue`` instances waiting
(beyond that a C-STORE is answered 0xA700, out of resources, and the sender retries). A log line per instance;
``cephalo listen-status SPOOL`` says what the spool holds and whether the listener is alive (C-ECHO also answers).
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Dict, Optional

from sdk.errors import CephaloError

from .run import _write_atomic

log = logging.getLogger("cephalo.listen")

# The storage classes a cephalogram comes in: digital X-ray (for presentation and for processing), computed
# radiography, secondary capture (8/16-bit, multi-frame grayscale), and the digital mammography-like and
# intra-oral classes some cephalostats' consoles use.
IMAGE_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.1": "CR",
    "1.2.840.10008.5.1.4.1.1.1.1": "DX for presentation",
    "1.2.840.10008.5.1.4.1.1.1.1.1": "DX for processing",
    "1.2.840.10008.5.1.4.1.1.1.3": "intra-oral X-ray for presentation",
    "1.2.840.10008.5.1.4.1.1.1.3.1": "intra-oral X-ray for processing",
    "1.2.840.10008.5.1.4.1.1.7": "secondary capture",
    "1.2.840.10008.5.1.4.1.1.7.2": "multi-frame 8-bit secondary capture",
    "1.2.840.10008.5.1.4.1.1.7.3": "multi-frame 16-bit secondary capture",
    "1.2.840.10008.5.1.4.1.1.12.1": "X-ray angiographic",
}
REFUSED_CLASS = 0x0122          # SOP Class not supported
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC000
RETRY_S = 30.0                  # a failed store is tried again after this long
HEARTBEAT_S = 5.0


class Spool:
    """The listener's folders: ``incoming`` (received, not yet done), ``done``, ``refused``; and ``status.json``."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.incoming, self.done, self.refused = (self.root / n for n in ("incoming", "done", "refused"))
        for d in (self.incoming, self.done, self.refused):
            d.mkdir(parents=True, exist_ok=True)

    def waiting(self):
        """The instances received and not yet done, oldest first."""
        files = [p for p in self.incoming.glob("*.dcm")]
        return sorted(files, key=lambda p: (p.stat().st_mtime_ns, p.name))

    def counts(self) -> Dict[str, int]:
        return {"incoming": len(list(self.incoming.glob("*.dcm"))), "done": len(list(self.done.glob("*.json"))),
                "refused": len(list(self.refused.glob("*.json")))}

    def keep(self, uid: str, data: bytes) -> Path:
        """``data`` as ``incoming/<uid>.dcm``, whole or not at all."""
        target = self.incoming / f"{_safe(uid)}.dcm"
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.part")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
        return target

    def finish(self, path: Path, folder: Path, record: Dict) -> None:
        """The instance ``path`` is done: its record into ``folder``, then its incoming file removed."""
        _write_atomic(folder / (path.stem + ".json"), json.dumps(record, indent=1))
        path.unlink(missing_ok=True)


def _safe(uid: str) -> str:
    return "".join(c for c in str(uid) if c.isdigit() or c == ".")[:64] or "unnamed"


class Listener:
    """The C-STORE SCP and the worker that reads what it received (one Detector)."""

    def __init__(self, det, spool: Path, store_url: str, ae_title: str = "CEPHALO", port: int = 11112,
                 host: str = "0.0.0.0", max_associations: int = 4, queue: int = 64,
                 analyses: Optional[list] = None, store_timeout: float = 15.0):
        from .pacs import DicomOutputs, Pacs

        self.det, self.spool, self.queue = det, Spool(spool), int(queue)
        self.outputs = DicomOutputs(det, analyses)
        self.pacs = Pacs(store_url, store_timeout, stop_after=10**9)      # a node keeps trying: it never gives up
        self.ae_title, self.port, self.host, self.max_associations = ae_title, int(port), host, int(max_associations)
        self._wake, self._stop = threading.Event(), threading.Event()
        self._server = None
        self.started = time.time()

    # -- receiving ---------------------------------------------------------------------------------------------
    def _on_store(self, event) -> int:
        ds_class = str(event.request.AffectedSOPClassUID)
        uid = str(event.request.AffectedSOPInstanceUID)
        if ds_class not in IMAGE_CLASSES:
            log.info("refused %s: SOP class %s is not an image class a cephalogram comes in", uid, ds_class)
            return REFUSED_CLASS
        if len(list(self.spool.incoming.glob("*.dcm"))) >= self.queue:
            log.warning("refused %s: %d instances wait already (out of resources; the sender retries)", uid,
                        self.queue)
            return OUT_OF_RESOURCES
        try:
            data = _part10(event)
            self.spool.keep(uid, data)
        except Exception as e:   # noqa: BLE001 (a disk error or a malformed data set: refused, said, never a crash)
            log.error("refused %s: cannot be kept (%s: %s)", uid, type(e).__name__, e)
            return CANNOT_UNDERSTAND
        log.info("received %s (%s) from %s", uid, IMAGE_CLASSES[ds_class], event.assoc.requestor.ae_title)
        self._wake.set()
        return 0x0000

    def start(self) -> None:
        """Listen (in the background) and start the worker."""
        from pynetdicom import AE, AllStoragePresentationContexts, evt
        from pynetdicom.sop_class import Verification

        ae = AE(ae_title=self.ae_title)
        ae.maximum_associations = self.max_associations
        ae.supported_contexts = AllStoragePresentationContexts
        ae.add_supported_context(Verification)
        self._server = ae.start_server((self.host, self.port), block=False,
                                       evt_handlers=[(evt.EVT_C_STORE, self._on_store)])
        self._worker = threading.Thread(target=self._work, name="cephalo-listen-worker", daemon=True)
        self._worker.start()
        log.info("listening as %s on %s:%d; spool %s; results to %s (%d waiting from before)", self.ae_title,
                 self.host, self.port, self.spool.root, self.pacs.url, len(self.spool.waiting()))

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._server is not None:
            self._server.shutdown()
        self._worker.join(60)

    # -- working -----------------------------------------------------------------------------------------------
    def _work(self) -> None:
        retry_after: Dict[str, float] = {}
        while not self._stop.is_set():
            self._heartbeat()
            now = time.monotonic()
            todo = [p for p in self.spool.waiting() if retry_after.get(p.name, 0.0) <= now]
            if not todo:
                self._wake.wait(HEARTBEAT_S)
                self._wake.clear()
                continue
            for path in todo:
                if self._stop.is_set():
                    break
                if not self.one(path):          # the PACS does not answer: the queue waits, in its order
                    retry_after[path.name] = time.monotonic() + RETRY_S
                    self._wake.wait(RETRY_S)
                    self._wake.clear()
                    break

    def one(self, path: Path) -> bool:
        """Read, store and finish one received instance; False when its store failed (it stays to be retried)."""
        uid = path.stem
        if (self.spool.done / f"{uid}.json").is_file():          # stored by an earlier run: not sent again
            path.unlink(missing_ok=True)
            log.info("%s: done before; not sent again", uid)
            return True
        try:
            res = self.det(path)
        except Exception as e:   # noqa: BLE001 (an unreadable image is refused with its reason, the node goes on)
            self.spool.finish(path, self.spool.refused, {"uid": uid, "reason": f"{type(e).__name__}: {e}"})
            log.info("%s: not read (%s)", uid, e)
            return True
        if not res.is_cephalogram:
            self.spool.finish(path, self.spool.refused, {"uid": uid, "reason": "; ".join(res.messages()) or
                                                         "not a lateral cephalogram", "record": res.to_dict()})
            log.info("%s: not a lateral cephalogram: nothing sent back (%s)", uid, "; ".join(res.messages()))
            return True
        try:
            _, objects = self.outputs(path, res, None)
        except Exception as e:   # noqa: BLE001 (results that cannot be made: refused with the reason, never retried)
            self.spool.finish(path, self.spool.refused, {"uid": uid, "reason": f"the results cannot be made as DICOM "
                                                         f"({type(e).__name__}: {e})", "record": res.to_dict()})
            log.error("%s: read (%s), its DICOM results cannot be made (%s)", uid, res.status, e)
            return True
        try:
            self.pacs.send(objects)
        except Exception as e:   # noqa: BLE001 (no answer: tried again, the instance stays; refused: said, set aside)
            if getattr(e, "retry", False) or not isinstance(e, CephaloError):
                log.warning("%s: read (%s), not stored (%s); tried again in %.0f s", uid, res.status, e, RETRY_S)
                return False
            self.spool.finish(path, self.spool.refused, {"uid": uid, "reason": f"the PACS refused its results: {e}",
                                                         "record": res.to_dict()})
            log.error("%s: read (%s), its results refused by the PACS (%s)", uid, res.status, e)
            return True
        self.spool.finish(path, self.spool.done, {"uid": uid, "status": res.status, "stored": self.pacs.url,
                                                  "instances": [str(ds.SOPInstanceUID) for ds in objects],
                                                  "record": res.to_dict()})
        log.info("%s: read (%s), %d objects stored at %s", uid, res.status, len(objects), self.pacs.url)
        return True

    def _heartbeat(self) -> None:
        status = {"pid": os.getpid(), "ae_title": self.ae_title, "port": self.port, "store": self.pacs.url,
                  "since": self.started, "alive_at": time.time(), **self.spool.counts()}
        try:
            _write_atomic(self.spool.root / "status.json", json.dumps(status))
        except OSError:         # a heartbeat missed: listen-status says so, the node goes on
            pass


def _part10(event) -> bytes:
    """The received data set as a DICOM Part 10 file (its file meta from the C-STORE's context)."""
    import io

    from pydicom.dataset import FileMetaDataset

    ds = event.dataset
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = event.request.AffectedSOPClassUID
    meta.MediaStorageSOPInstanceUID = event.request.AffectedSOPInstanceUID
    meta.TransferSyntaxUID = event.context.transfer_syntax
    ds.file_meta = meta
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def status_of(spool: Path) -> Dict:
    """What ``cephalo listen-status`` says: the spool's counts, and whether its listener is alive (its process
    runs and its heartbeat is recent)."""
    if not Path(spool).is_dir():
        return {"spool": str(spool), "incoming": 0, "done": 0, "refused": 0, "alive": False,
                "error": "no such spool folder (yet)"}
    s = Spool(spool)
    out = {"spool": str(s.root), **s.counts(), "alive": False}
    try:
        st = json.loads((s.root / "status.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return out
    out.update({k: st.get(k) for k in ("pid", "ae_title", "port", "store")})
    fresh = time.time() - float(st.get("alive_at", 0)) < 3 * HEARTBEAT_S
    out["alive"] = bool(fresh and _running(int(st.get("pid", 0))))
    return out


def _running(pid: int) -> bool:
    if pid <= 0:
        return False
    if os.name == "nt":     # Windows' os.kill ends the process whatever the signal: the heartbeat alone says
        return True
    try:
        os.kill(pid, 0)
        return True
    except PermissionError:
        return True
    except OSError:
        return False
