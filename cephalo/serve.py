"""``cephalo serve``: the Detector over HTTP for clinics' software, and a page that shows the tracing.

    POST /v1/landmarks[?spacing=0.1]   body: the image file's bytes, or a multipart/form-data upload whose field
                                       ``file`` holds them (``curl -F file=@x.jpg``, a browser form) -> the CLI's
                                       JSON record
    POST /v1/overlay[?spacing=0.1]     the same body -> the overlay PNG (points, legend, flags)
    (POST /v1/landmarks with ``Accept: application/dicom``: the DICOM Structured Report instead of the JSON)
    GET  /v1/model                     the model's metadata and measured accuracy (file names, not server paths)
    GET  /health                       {"status": "ok"}
    GET  /                             the page: drop an image, see the tracing, the landmarks and measurements

Answers: 200 with the result (also when some landmarks are only doubtful: their ``flag``); 400 a bad ``spacing``;
413 an upload over the size limit or an image over the pixel limit; 415 bytes that are not a readable image;
422 an image that is not a lateral cephalogram (the record comes with it, ``status`` 'flagged'); 503 when the
queue is full. Uploads are read into memory only (never written to disk); each request has an id (header
``X-Request-Id``, and in the log line). Detection runs in a bounded pool of worker threads, one Detector shared.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

log = logging.getLogger("cephalo.serve")
PAGE = Path(__file__).resolve().parent / "web" / "index.html"


class Limits:
    """Upload size (bytes) and how many requests may wait for a worker beyond those running."""

    def __init__(self, max_bytes: int = 50 * 2**20, queue: int = 32):
        self.max_bytes, self.queue = int(max_bytes), int(queue)


def create_app(det, workers: int = 2, limits: Optional[Limits] = None):
    """The ASGI app around ``det`` (an ``sdk.Detector``): ``workers`` images at a time."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse, Response
    from starlette.routing import Route

    from sdk.errors import CephaloError, ImageError, ImageTooLarge
    from sdk.spacing import check_spacing

    limits = limits or Limits()
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="cephalo-worker")
    slots = asyncio.Semaphore(max(1, workers) + limits.queue)

    def error(status: int, message: str, rid: str, **extra) -> JSONResponse:
        return JSONResponse({"error": message, "request_id": rid, **extra}, status_code=status,
                            headers={"X-Request-Id": rid})

    async def read_body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limits.max_bytes:
            raise _TooLarge(int(declared))
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limits.max_bytes:
                raise _TooLarge(size)
            chunks.append(chunk)
        return b"".join(chunks)

    async def run_detection(request: Request, overlay: bool):
        rid = uuid.uuid4().hex[:12]
        t0 = time.perf_counter()
        outcome = {"status": 500}

        def answer(response):
            outcome["status"] = response.status_code
            return response

        try:
            raw = request.query_params.get("spacing")
            try:
                spacing = None if raw in (None, "") else check_spacing(float(raw), "spacing")
            except ValueError:
                return answer(error(400, f"spacing: {raw!r} is not a number of mm per pixel", rid))
            except CephaloError as e:
                return answer(error(400, str(e), rid))
            try:
                data = await read_body(request)
            except _TooLarge as e:
                return answer(error(413, f"upload of {e.size} bytes is over the limit of {limits.max_bytes} bytes",
                                    rid))
            ctype = request.headers.get("content-type", "")
            if ctype.lower().startswith("multipart/form-data"):
                try:
                    data = form_file(data, ctype)
                except ValueError as e:
                    return answer(error(400, f"multipart upload: {e}", rid))
            if not data:
                return answer(error(400, "empty body: POST the image file's bytes (or a form field 'file')", rid))
            if slots.locked():
                return answer(error(503, "busy: too many images waiting; retry later", rid))
            async with slots:
                loop = asyncio.get_running_loop()
                try:
                    res = await loop.run_in_executor(pool, lambda: det(data, spacing=spacing))
                except ImageError as e:
                    code = 413 if isinstance(e, ImageTooLarge) else 415
                    return answer(error(code, str(e).replace("<bytes>", "upload"), rid))
                except CephaloError as e:
                    return answer(error(400, str(e).replace("<bytes>", "upload"), rid))
                record = {**res.to_dict(), "file": None, "request_id": rid}
                if not res.is_cephalogram:
                    return answer(JSONResponse({**record, "error": "not a lateral cephalogram this model reads"},
                                               status_code=422, headers={"X-Request-Id": rid}))
                if overlay:
                    png = await loop.run_in_executor(pool, lambda: _overlay_png(det, data, res))
                    return answer(Response(png, media_type="image/png", headers={"X-Request-Id": rid}))
                if "application/dicom" in request.headers.get("accept", ""):
                    try:
                        sr, source_uid = await loop.run_in_executor(pool, lambda: _dicom_sr(det, data, res))
                    except CephaloError as e:
                        return answer(error(406, str(e), rid))
                    return answer(Response(sr, media_type="application/dicom",
                                           headers={"X-Request-Id": rid, "X-Source-SOP-Instance-UID": source_uid}))
                return answer(JSONResponse(record, headers={"X-Request-Id": rid}))
        finally:
            log.info("%s %s %s %d %.0f ms", rid, request.method, request.url.path, outcome["status"],
                     (time.perf_counter() - t0) * 1000)

    async def landmarks(request: Request):
        return await run_detection(request, overlay=False)

    async def overlay(request: Request):
        return await run_detection(request, overlay=True)

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

    return Starlette(routes=[Route("/", page), Route("/health", health), Route("/v1/model", model),
                             Route("/v1/landmarks", landmarks, methods=["POST"]),
                             Route("/v1/overlay", overlay, methods=["POST"])], lifespan=lifespan)


_PATH_KEYS = ("model", "local_stage")     # where the server keeps its files is not the client's business
FORM_FIELD = "file"


def form_file(body: bytes, content_type: str) -> bytes:
    """The bytes of the field ``file`` of a multipart/form-data body; ValueError naming what is wrong."""
    import email
    import email.policy

    msg = email.message_from_bytes(b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body,
                                   policy=email.policy.HTTP)
    if not msg.is_multipart():
        raise ValueError("the body is not multipart/form-data (a boundary is missing or does not match)")
    names = []
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        names.append(name)
        if name == FORM_FIELD:
            return part.get_payload(decode=True) or b""
    raise ValueError(f"no field {FORM_FIELD!r} (fields: {', '.join(str(n) for n in names) or 'none'})")


class _TooLarge(Exception):
    def __init__(self, size: int):
        super().__init__(size)
        self.size = size


def _dicom_sr(det, data: bytes, res):
    """The result's DICOM SR (bytes) and the SOP Instance UID of the image it references (the upload itself, or
    for a JPEG/PNG the Secondary Capture that ``cephalo predict --dicom-sr`` would write beside it)."""
    import io

    from sdk.dicom_sr import measurement_report, source_dataset
    from sdk.image_io import load_image

    source, _ = source_dataset(data, load_image(data).gray)
    buf = io.BytesIO()
    measurement_report(res, source, Path(det.model_path).name).save_as(buf, enforce_file_format=True)
    return buf.getvalue(), str(source.SOPInstanceUID)


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
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(backend: str = "onnxruntime", port: Optional[int] = None, wait_s: float = 60.0):
    """``cephalo serve`` in a process (and session) of its own on 127.0.0.1, once it answers ``/health``: returns
    (the Popen, its base URL). For load tests and browser tests; the caller terminates it."""
    import subprocess
    import sys
    import urllib.request

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
