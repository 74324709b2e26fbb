"""``cephalo serve``: the Detector over HTTP for clinics' software, and a page that shows the tracing.

    POST /v1/landmarks[?spacing=0.1]   body: the image file's bytes, or a multipart/form-data upload whose field
                                       ``file`` holds them (``curl -F file=@x.jpg``, a browser form) -> the CLI's
                                       JSON record
    POST /v1/overlay[?spacing=0.1]     the same body -> the overlay PNG (points, legend, flags)
    (POST /v1/landmarks with ``Accept: application/dicom``: the DICOM Structured Report instead of the JSON;
     with ``?dicom=gsps`` the presentation state that draws the tracing over the image)
    POST /v1/compare[?spacing=0.1]     a multipart/form-data upload with the fields ``before`` and ``after`` (two
                                       cephalograms of one patient) -> ``cephalo compare``'s JSON, its picture as
                                       ``picture_png_base64``; 422 when one is not a cephalogram (named)
    GET  /v1/model                     the model's metadata and measured accuracy (file names, not server paths)
    GET  /health                       {"status": "ok"}
    GET  /                             the page: drop an image, see the tracing, the landmarks and measurements

Answers: 200 with the result (also when some landmarks are only doubtful: their ``flag``); 400 a bad ``spacing``;
413 an upload over the size limit or an image over the pixel limit; 415 bytes that are not a readable image;
422 an image that is not a lateral cephalogram (the record comes with it, ``status`` 'flagged'); 503 when the
queue is full, or as many uploads as may run or wait are being read (with ``Retry-After``); 408 an upload that
stalls (:class:`Limits`). A request with both Content-Length and Transfer-Encoding is answered 400 and its
connection closed (RFC 9112 6.1), as are 408 and 413. A client that leaves mid-upload is logged as 499, not a server
error. Uploads are read into memory only (never written to disk); each request has an id (header ``X-Request-Id``,
and in the log line). Detection runs in a bounded pool of worker threads, one Detector shared.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import email
import email.policy
import io
import json
import logging
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

log = logging.getLogger("cephalo.serve")
PAGE = Path(__file__).resolve().parent / "web" / "index.html"


class Limits:
    """Upload size (bytes), how many requests may wait for a worker beyond those running, and how long an upload
    may stall (seconds without a byte) before it is answered 408. At most as many uploads as may run or wait are
    read at once, so the bodies in memory are bounded whatever clients do."""

    def __init__(self, max_bytes: int = 50 * 2**20, queue: int = 32, stall_s: float = 30.0):
        self.max_bytes, self.queue, self.stall_s = int(max_bytes), int(queue), float(stall_s)


def create_app(det, workers: int = 2, limits: Optional[Limits] = None):
    """The ASGI app around ``det`` (an ``sdk.Detector``): ``workers`` images at a time."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse, Response
    from starlette.routing import Route

    from sdk.errors import CephaloError
    from sdk.spacing import check_spacing

    limits = limits or Limits()
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="cephalo-worker")
    slots = asyncio.Semaphore(max(1, workers) + limits.queue)
    uploads = asyncio.Semaphore(max(1, workers) + limits.queue)     # bodies being read at once

    def error(status: int, message: str, rid: str) -> JSONResponse:
        headers = {"X-Request-Id": rid, **({"Retry-After": str(RETRY_AFTER_S)} if status == 503 else {}),
                   # a body not read to its end leaves the connection's next bytes unknown: it is closed
                   **({"Connection": "close"} if status in (408, 413) else {})}
        return JSONResponse({"error": message, "request_id": rid}, status_code=status, headers=headers)

    async def read_body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limits.max_bytes:
            raise Refused(413, f"upload of {int(declared)} bytes is over the limit of {limits.max_bytes} bytes")
        if uploads.locked():
            raise Refused(503, "busy: too many uploads in progress; retry later")
        async with uploads:
            chunks, size = [], 0
            stream = request.stream().__aiter__()
            while True:
                try:
                    chunk = await asyncio.wait_for(stream.__anext__(), limits.stall_s)
                except StopAsyncIteration:
                    break
                except asyncio.TimeoutError:
                    raise Refused(408, f"the upload stalled: no byte for {limits.stall_s:g} s") from None
                size += len(chunk)
                if size > limits.max_bytes:
                    raise Refused(413, f"upload of {size} bytes is over the limit of {limits.max_bytes} bytes")
                chunks.append(chunk)
            return b"".join(chunks)

    def spacing_of(request: Request) -> Optional[float]:
        raw = request.query_params.get("spacing")
        try:
            return None if raw in (None, "") else check_spacing(float(raw), "spacing")
        except CephaloError:
            raise
        except ValueError:
            raise Refused(400, f"spacing: {raw!r} is not a number of mm per pixel") from None

    async def image_of(request: Request) -> bytes:
        data = await read_body(request)
        ctype = request.headers.get("content-type", "")
        if ctype.lower().startswith("multipart/form-data"):
            try:
                data = form_file(data, ctype)
            except ValueError as e:
                raise Refused(400, f"multipart upload: {e}") from None
        if not data:
            raise Refused(400, "empty body: POST the image file's bytes (or a form field 'file')")
        return data

    async def detect(request: Request, overlay: bool, rid: str):
        spacing = spacing_of(request)
        data = await image_of(request)
        if slots.locked():
            raise Refused(503, "busy: too many images waiting; retry later")
        async with slots:
            loop = asyncio.get_running_loop()
            res = await loop.run_in_executor(pool, lambda: det(data, spacing=spacing))
            record = {**res.to_dict(), "file": None, "request_id": rid}
            if not res.is_cephalogram:
                return JSONResponse({**record, "error": "not a lateral cephalogram this model reads"},
                                    status_code=422, headers={"X-Request-Id": rid})
            if overlay:
                png = await loop.run_in_executor(pool, lambda: _overlay_png(det, data, res))
                return Response(png, media_type="image/png", headers={"X-Request-Id": rid})
            if "application/dicom" in request.headers.get("accept", ""):
                kind = request.query_params.get("dicom", "sr")
                if kind not in DICOM_OBJECTS:
                    raise Refused(400, f"dicom={kind!r}: choose {' or '.join(DICOM_OBJECTS)}")
                try:
                    obj, source_uid = await loop.run_in_executor(pool, lambda: _dicom_object(det, data, res, kind))
                except CephaloError as e:
                    raise Refused(406, str(e)) from None
                return Response(obj, media_type="application/dicom",
                                headers={"X-Request-Id": rid, "X-Source-SOP-Instance-UID": source_uid})
            return JSONResponse(record, headers={"X-Request-Id": rid})

    async def compare_pair(request: Request, rid: str):
        spacing = spacing_of(request)
        data = await read_body(request)
        ctype = request.headers.get("content-type", "")
        if not ctype.lower().startswith("multipart/form-data"):
            raise Refused(400, "POST a multipart form with the fields 'before' and 'after' (the two images)")
        try:
            (name_b, before), (name_a, after) = form_fields(data, ctype, ("before", "after"))
        except ValueError as e:
            raise Refused(400, f"multipart upload: {e}") from None
        if slots.locked():
            raise Refused(503, "busy: too many images waiting; retry later")
        async with slots:
            loop = asyncio.get_running_loop()
            out, png = await loop.run_in_executor(
                pool, lambda: _comparison(det, before, after, (name_b or "before", name_a or "after"), spacing))
            return JSONResponse({**out, "picture_png_base64": base64.b64encode(png).decode("ascii"),
                                 "request_id": rid}, headers={"X-Request-Id": rid})

    async def run_detection(request: Request, overlay: bool):
        return await answer(request, lambda rid: detect(request, overlay, rid))

    async def answer(request: Request, handler):
        rid = uuid.uuid4().hex[:12]
        t0 = time.perf_counter()
        status = 500
        try:
            try:
                response = await handler(rid)
            except Exception as e:
                code = status_of(e)
                if code is None:
                    raise
                if code == CLIENT_GONE:     # nobody to answer; not the server's error
                    status = code
                    return Response(status_code=400)
                response = error(code, str(e).replace("<bytes>", "upload"), rid)
            status = response.status_code
            return response
        finally:
            log.info("%s %s %s %d %.0f ms", rid, request.method, request.url.path, status,
                     (time.perf_counter() - t0) * 1000)

    async def landmarks(request: Request):
        return await run_detection(request, overlay=False)

    async def overlay(request: Request):
        return await run_detection(request, overlay=True)

    async def compare_view(request: Request):
        return await answer(request, lambda rid: compare_pair(request, rid))

    async def model(request: Request):
        info = {k: (Path(v).name if k in _PATH_KEYS and v else v) for k, v in det.info.items()}
        return JSONResponse(json.loads(json.dumps(info, default=str)))

    async def health(request: Request):
        return JSONResponse({"status": "ok"})

    async def page(request: Request):
        return FileResponse(PAGE, media_type="text/html")

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        pool.shutdown(wait=False)

    app = Starlette(routes=[Route("/", page), Route("/health", health), Route("/v1/model", model),
                            Route("/v1/landmarks", landmarks, methods=["POST"]),
                            Route("/v1/overlay", overlay, methods=["POST"]),
                            Route("/v1/compare", compare_view, methods=["POST"])], lifespan=lifespan)
    return framed(app)


def framed(app):
    """``app`` behind the one check of a request's framing that the HTTP parser leaves to it: both Content-Length
    and Transfer-Encoding (RFC 9112 6.1: a request smuggling attempt) is answered 400 and the connection closed,
    so nothing sent behind it on that connection is read."""

    async def asgi(scope, receive, send):
        if scope["type"] == "http":
            names = {k.lower() for k, _ in scope.get("headers", ())}
            if b"content-length" in names and b"transfer-encoding" in names:
                body = json.dumps({"error": "both Content-Length and Transfer-Encoding: refused (RFC 9112 6.1)"})
                await send({"type": "http.response.start", "status": 400,
                            "headers": [(b"content-type", b"application/json"), (b"connection", b"close"),
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body.encode()})
                log.info("- %s %s 400 (Content-Length with Transfer-Encoding; closed)", scope.get("method"),
                         scope.get("path"))
                return
        await app(scope, receive, send)

    return asgi


_PATH_KEYS = ("model", "local_stage")     # where the server keeps its files is not the client's business
FORM_FIELD = "file"


def form_file(body: bytes, content_type: str) -> bytes:
    """The bytes of the field ``file`` of a multipart/form-data body; ValueError naming what is wrong."""
    return form_fields(body, content_type, (FORM_FIELD,))[0][1]


def form_fields(body: bytes, content_type: str, wanted) -> list:
    """(file name or None, bytes) of each field of ``wanted`` in a multipart/form-data body; ValueError naming
    what is wrong or missing."""
    msg = email.message_from_bytes(b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body,
                                   policy=email.policy.HTTP)
    if not msg.is_multipart():
        raise ValueError("the body is not multipart/form-data (a boundary is missing or does not match)")
    found = {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        found.setdefault(name, (part.get_filename(), part.get_payload(decode=True) or b""))
    missing = [w for w in wanted if w not in found]
    if missing:
        raise ValueError(f"no field {', '.join(repr(m) for m in missing)} (fields: "
                         f"{', '.join(str(n) for n in found) or 'none'})")
    empty = [w for w in wanted if not found[w][1]]
    if empty:
        raise ValueError(f"field {', '.join(repr(m) for m in empty)} is empty")
    return [found[w] for w in wanted]


class Refused(Exception):
    """A request the service answers with ``status`` and this message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


RETRY_AFTER_S = 1       # a 503's advice: the queue drains at a few images a second
CLIENT_GONE = 499       # the client closed the connection before its upload ended (logged, never a 500)


def status_of(e: BaseException) -> Optional[int]:
    """The HTTP status of an error while answering a request, by one table (the first matching class wins); None:
    not a refusal but a bug (500, with its traceback in the log)."""
    from starlette.requests import ClientDisconnect

    from sdk.errors import CephaloError, ImageError, ImageTooLarge

    if isinstance(e, Refused):
        return e.status
    if isinstance(e, ClientDisconnect):
        return CLIENT_GONE
    from sdk.compare import CompareError

    for cls, status in ((ImageTooLarge, 413), (ImageError, 415), (CompareError, 422), (CephaloError, 400)):
        if isinstance(e, cls):
            return status
    return None


DICOM_OBJECTS = ("sr", "gsps")      # ?dicom= with Accept: application/dicom: the report, or the presentation state


def _dicom_object(det, data: bytes, res, kind: str = "sr"):
    """The result's DICOM SR or GSPS (bytes) and the SOP Instance UID of the image it references (the upload
    itself, or for a JPEG/PNG the Secondary Capture that ``cephalo predict --dicom-sr`` would write beside it)."""

    from sdk.dicom_gsps import presentation_state
    from sdk.dicom_sr import measurement_report, source_dataset
    from sdk.image_io import load_image

    source, _ = source_dataset(data, load_image(data).gray, spacing=res.spacing, spacing_source=res.spacing_source)
    model = Path(det.model_path).name
    obj = measurement_report(res, source, model) if kind == "sr" else presentation_state(res, source, model)
    buf = io.BytesIO()
    obj.save_as(buf, enforce_file_format=True)
    return buf.getvalue(), str(source.SOPInstanceUID)


def _comparison(det, before: bytes, after: bytes, labels, spacing):
    """``cephalo compare`` on two uploads: (the comparison, its picture as PNG bytes)."""
    import cv2

    from sdk.compare import compare, steady_reading
    from sdk.draw import draw_comparison
    from sdk.image_io import load_image

    read = []
    for data in (before, after):
        gray = load_image(data).gray
        read.append((steady_reading(det, data, gray, spacing)[0], gray))
    (rb, gb), (ra, ga) = read
    out = compare(rb, ra, gb, ga, labels)
    ok, buf = cv2.imencode(".png", draw_comparison(out, ra, ga))
    return out, buf.tobytes()


def _overlay_png(det, data: bytes, res) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", det.draw(data, res))
    return buf.tobytes()


def serve(det, host: str = "127.0.0.1", port: int = 8000, workers: int = 2, limits: Optional[Limits] = None) -> None:
    """Run the service until interrupted (uvicorn, one process; the pool gives the parallelism)."""
    import uvicorn

    uvicorn.run(create_app(det, workers, limits), host=host, port=port, log_level="info", access_log=False)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(backend: str = "onnxruntime", port: Optional[int] = None, wait_s: float = 60.0):
    """``cephalo serve`` in a process (and session) of its own on 127.0.0.1, once it answers ``/health``: returns
    (the Popen, its base URL). For load tests and browser tests; the caller terminates it."""

    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "cephalo", "serve", "--port", str(port), "--backend", backend],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"cephalo serve exited with code {proc.returncode} before answering")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.1)
    proc.terminate()
    raise RuntimeError(f"cephalo serve did not answer on {url} within {wait_s:.0f} s")
