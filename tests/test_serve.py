"""``cephalo serve``: the HTTP API with a real client against a server on localhost, its 4xx answers, and the page
in a real headless browser (Debian's Chromium, driven by Playwright)."""
import shutil
import threading
import time

import cv2
import numpy as np
import pytest

pytest.importorskip("starlette")
uvicorn = pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from conftest import ISBI_FIX  # noqa: E402

IMG = ISBI_FIX / "images" / "151.jpg"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def server():
    from cephalo.serve import Limits, create_app, free_port
    from sdk import Detector

    det = Detector(backend="onnxruntime", threads=1)
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(create_app(det, workers=2, limits=Limits(max_bytes=3 * 2**20)),
                                        host="127.0.0.1", port=port, log_level="warning"))
    th = threading.Thread(target=srv.run, daemon=True)
    th.start()
    for _ in range(200):                      # up to 20 s for the server to listen
        if srv.started:
            break
        time.sleep(0.1)
    assert srv.started
    yield f"http://127.0.0.1:{port}", det
    srv.should_exit = True
    th.join(10)


def test_api_answers_like_the_cli(server):
    url, det = server
    with httpx.Client(base_url=url, timeout=60) as c:
        assert c.get("/health").json() == {"status": "ok"}
        info = c.get("/v1/model").json()
        assert info["schema"] == "isbi19" and info["accuracy"]["isbi2015"]["test1"]
        r = c.post("/v1/landmarks", params={"spacing": "0.4"}, content=IMG.read_bytes())
        assert r.status_code == 200 and r.headers["x-request-id"]
        d = r.json()
        ref = det(IMG, spacing=0.4)
        assert len(d["landmarks"]) == 19 and d["spacing_source"] == "caller" and "SNA" in d["measurements"]
        got = np.array([[p["x"], p["y"]] for p in d["landmarks"]])
        assert np.abs(got - ref.xy).max() < 1e-3            # the JSON's 3 decimals
        png = c.post("/v1/overlay", content=IMG.read_bytes())
        assert png.status_code == 200 and png.headers["content-type"] == "image/png"
        assert cv2.imdecode(np.frombuffer(png.content, np.uint8), cv2.IMREAD_COLOR).shape[0] == 600


def test_bad_uploads_get_their_4xx_and_the_server_stays_up(server):
    url, _ = server
    ok, huge = cv2.imencode(".png", np.zeros((40, 40), np.uint8))
    huge = bytearray(huge.tobytes())
    huge[16:24] = (60000).to_bytes(4, "big") * 2
    noise = cv2.imencode(".png", np.random.default_rng(0).integers(0, 256, (600, 484), dtype=np.uint8))[1]
    cases = [(b"hello, not an image", {}, 415, "not a readable image"),
             (bytes(huge), {}, 413, "60000x60000"),
             (b"\0" * (3 * 2**20 + 1), {}, 413, "over the limit"),
             (b"", {}, 400, "empty body"),
             (IMG.read_bytes(), {"spacing": "abc"}, 400, "not a number"),
             (IMG.read_bytes(), {"spacing": "10"}, 400, "pixels per mm"),
             (noise.tobytes(), {}, 422, "not a lateral cephalogram")]
    with httpx.Client(base_url=url, timeout=60) as c:
        for body, params, code, words in cases:
            r = c.post("/v1/landmarks", params=params, content=body)
            assert r.status_code == code and words in r.json()["error"], (code, r.status_code, r.text[:200])
            assert r.json()["request_id"] == r.headers["x-request-id"]
        assert c.get("/health").status_code == 200
        assert c.post("/v1/landmarks", content=IMG.read_bytes()).status_code == 200


BROWSER = r"""
import sys
from playwright.sync_api import TimeoutError as PageTimeout, sync_playwright
url, image, shot, chromium, not_an_image = sys.argv[1:6]
with sync_playwright() as p:
    browser = p.chromium.launch(executable_path=chromium, headless=True, args=[
        "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run", "--disable-sync"])                 # playwright gives it a fresh profile
    page = browser.new_page()
    page.goto(url + "/")
    page.set_input_files("#file", image)
    page.wait_for_function("document.querySelectorAll('#landmarks tbody tr').length >= 19", timeout=60000)
    print("measurements", page.locator("#measurements tbody tr").count())
    print("rows", page.locator("#landmarks tbody tr").count())
    print("status", page.locator("#status").get_attribute("class"))
    try:                                                     # the tracing is drawn once the image has loaded
        page.wait_for_selector("#view", state="visible", timeout=30000)
    except PageTimeout:                                      # reported below as not visible
        pass
    print("canvas", page.locator("#view").is_visible())
    page.screenshot(path=shot, full_page=True)
    page.set_input_files("#file", not_an_image)             # an error; the page stays usable
    page.wait_for_function("document.getElementById('status').className === 'error'", timeout=30000)
    print("error", page.locator("#status").inner_text())
    page.set_input_files("#before", image)                  # before and after: the same image, nothing changed
    page.set_input_files("#after", image)
    page.click("#compareGo")
    page.wait_for_function("document.querySelectorAll('#changes tbody tr').length >= 5", timeout=120000)
    print("changes", page.locator("#changes tbody tr").count())
    print("moves", page.locator("#moves tbody tr").count())
    print("changed", page.locator("#changes tbody tr.flagged").count())
    print("picture", page.locator("#compareImg").is_visible())
    browser.close()
"""


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium (Debian package 'chromium')")
def test_page_shows_landmarks_and_measurements_in_a_browser(tmp_path):
    """Upload through the page in headless Chromium, as a user would: the service (``cephalo serve``) and the
    browser each run in a process of their own."""
    import subprocess
    import sys

    pytest.importorskip("playwright")
    from cephalo.serve import spawn

    srv, url = spawn("onnxruntime")
    try:
        script = tmp_path / "browser.py"
        script.write_text(BROWSER)
        shot = tmp_path / "page.png"
        r = subprocess.run([sys.executable, str(script), url, str(IMG), str(shot), CHROMIUM, __file__],
                           capture_output=True, text=True, timeout=300, start_new_session=True)
    finally:
        srv.terminate()
        srv.wait(30)
    assert r.returncode == 0, r.stderr[-2000:]
    out = dict(line.split(" ", 1) for line in r.stdout.splitlines())
    assert int(out["measurements"]) >= 7 and out["status"] in ("ok", "check") and out["canvas"] == "True"
    assert "415" in out["error"] and shot.stat().st_size > 10000
    assert int(out["changes"]) >= 7 and int(out["moves"]) == 19 and out["changed"] == "0" and out["picture"] == "True"
    from sdk import Detector

    rods = Detector(backend="onnxruntime")(IMG).ear_rods
    assert int(out["rows"]) == 19 + (rods is not None)          # the machine porion's row when the rods are found


def test_form_uploads_as_clients_send_them(server):
    """curl -F, browser forms and HTTP libraries send multipart/form-data: field 'file' is the image."""
    url, det = server
    with httpx.Client(base_url=url, timeout=60) as c:
        raw = c.post("/v1/landmarks", params={"spacing": "0.4"}, content=IMG.read_bytes()).json()
        form = c.post("/v1/landmarks", params={"spacing": "0.4"},
                      files={"file": ("151.jpg", IMG.read_bytes(), "image/jpeg")}, data={"note": "x"})
        assert form.status_code == 200, form.text[:300]
        assert [p["x"] for p in form.json()["landmarks"]] == [p["x"] for p in raw["landmarks"]]
        other = c.post("/v1/landmarks", files={"upload": ("a.jpg", IMG.read_bytes(), "image/jpeg")})
        assert other.status_code == 400 and "no field 'file'" in other.json()["error"]
        torn = c.post("/v1/landmarks", content=b"--abc\r\nnot a form",
                      headers={"content-type": "multipart/form-data; boundary=zzz"})
        assert torn.status_code == 400 and "multipart" in torn.json()["error"]
        info = c.get("/v1/model").json()
        assert info["model"] == det.model_path.name and "/" not in info["model"]
        assert info["local_stage"] is None or "/" not in info["local_stage"]


def test_compare_takes_two_uploads(server):
    """POST /v1/compare: the fields 'before' and 'after'; the answer is cephalo compare's JSON with its picture; a
    missing field is a 400 naming it, a non-cephalogram a 422 naming it."""
    import base64

    url, det = server
    other = ISBI_FIX / "images" / "152.jpg"
    noise = cv2.imencode(".png", np.random.default_rng(0).integers(0, 256, (600, 480)).astype(np.uint8))[1]
    with httpx.Client(base_url=url, timeout=120) as c:
        r = c.post("/v1/compare", params={"spacing": "0.4"},
                   files={"before": ("151.jpg", IMG.read_bytes(), "image/jpeg"),
                          "after": ("152.jpg", other.read_bytes(), "image/jpeg")})
        assert r.status_code == 200, r.text[:300]
        d = r.json()
        assert d["before"]["label"] == "151.jpg" and d["after"]["label"] == "152.jpg" and d["units"] == "mm"
        assert len(d["displacements"]["overall"]) == 19 and "SNA" in d["changes"]
        pic = cv2.imdecode(np.frombuffer(base64.b64decode(d["picture_png_base64"]), np.uint8), cv2.IMREAD_COLOR)
        assert pic.shape[0] == 600 and pic.shape[1] > 480
        half = c.post("/v1/compare", files={"before": ("151.jpg", IMG.read_bytes(), "image/jpeg")})
        assert half.status_code == 400 and "'after'" in half.json()["error"]
        bad = c.post("/v1/compare", files={"before": ("151.jpg", IMG.read_bytes(), "image/jpeg"),
                                           "after": ("noise.png", noise.tobytes(), "image/png")})
        assert bad.status_code == 422 and "noise.png: not read as a cephalogram" in bad.json()["error"]
        raw = c.post("/v1/compare", content=IMG.read_bytes())
        assert raw.status_code == 400 and "'before' and 'after'" in raw.json()["error"]


def test_decompression_bombs_are_refused_from_their_headers(server):
    """A tiny GIF or WebP declaring a huge canvas gets 413 from its header; the server answers the next image."""
    url, _ = server
    gif = (b"GIF89a" + (14000).to_bytes(2, "little") * 2 + b"\x00\x00\x00"
           + b"\x2c" + b"\x00\x00" * 2 + (14000).to_bytes(2, "little") * 2 + b"\x00" + b"\x02\x02\x44\x01\x00\x3b")
    vp8x = b"VP8X" + (10).to_bytes(4, "little") + b"\x00" * 4 + (19999).to_bytes(3, "little") * 2
    webp = b"RIFF" + (len(vp8x) + 4).to_bytes(4, "little") + b"WEBP" + vp8x
    with httpx.Client(base_url=url, timeout=60) as c:
        for body, words in ((gif, "decompression bomb"), (webp, "exceeds the limit")):
            r = c.post("/v1/landmarks", content=body)
            assert r.status_code == 413 and words in r.json()["error"], r.text[:300]
        assert c.post("/v1/landmarks", content=IMG.read_bytes()).status_code == 200


def test_fuzzed_requests_never_get_a_5xx(server):
    """Random bytes, truncated and mangled multipart bodies, wrong headers: bounded in count, on localhost."""
    url, _ = server
    rng = np.random.default_rng(0)
    good = IMG.read_bytes()
    bodies = [rng.integers(0, 256, int(n), dtype=np.uint8).tobytes() for n in rng.integers(1, 5000, 12)]
    bodies += [good[:int(n)] for n in rng.integers(10, len(good), 8)]
    form = b"--b\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n" + good + b"\r\n--b--\r\n"
    forms = [form[:int(n)] for n in rng.integers(5, len(form), 8)]
    headers = [{}, {"content-type": "multipart/form-data"}, {"content-type": "multipart/form-data; boundary=b"},
               {"content-type": "application/json"}, {"content-type": "image/png; charset=\x7f"}]
    with httpx.Client(base_url=url, timeout=60) as c:
        for i, body in enumerate(bodies + forms):
            h = headers[i % len(headers)] if i < len(bodies) else headers[2]
            r = c.post("/v1/landmarks", content=body, headers=h)
            assert r.status_code < 500, (i, r.status_code, r.text[:200])
        assert c.get("/health").status_code == 200
        assert c.post("/v1/landmarks", content=good).status_code == 200


def _raw(url: str, request: bytes, wait_s: float = 3.0) -> bytes:
    """Send ``request`` as it is on one connection; everything the server answers until it closes (or ``wait_s``
    of silence, marked)."""
    import socket

    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as s:
        s.sendall(request)
        s.settimeout(wait_s)
        data = b""
        try:
            while chunk := s.recv(65536):
                data += chunk
        except socket.timeout:
            data += b"<still open>"
    return data


def test_a_smuggled_request_is_never_answered(server):
    """Content-Length with Transfer-Encoding: 400 and the connection closed, so the GET behind it goes unread."""
    url, _ = server
    got = _raw(url, b"POST /v1/landmarks HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"0\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert got.startswith(b"HTTP/1.1 400") and b"connection: close" in got.lower(), got
    assert got.count(b"HTTP/1.1") == 1 and b"<still open>" not in got and b'"status":"ok"' not in got
    plain = _raw(url, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert plain.startswith(b"HTTP/1.1 200")                  # the server is up


async def _drive(app, messages, wait_s: float = 10.0):
    """One POST /v1/landmarks through the ASGI ``app``, its body as the separate ``messages`` given (bytes, a
    float: seconds to wait, an Event: wait for it, or None: the client goes away); (status, body) of the answer."""
    import asyncio

    queue = list(messages)
    sent = []

    async def receive():
        while queue:
            m = queue.pop(0)
            if m is None:
                return {"type": "http.disconnect"}
            if isinstance(m, float):
                await asyncio.sleep(m)
                continue
            if isinstance(m, asyncio.Event):
                await m.wait()
                continue
            return {"type": "http.request", "body": m, "more_body": bool(queue)}
        await asyncio.sleep(3600)                   # a stalled client: no more bytes, ever

    async def send(m):
        sent.append(m)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/v1/landmarks", "raw_path": b"/v1/landmarks", "query_string": b"", "root_path": "",
             "headers": [(b"host", b"x"), (b"transfer-encoding", b"chunked")], "client": ("127.0.0.1", 1),
             "server": ("127.0.0.1", 80)}
    await asyncio.wait_for(app(scope, receive, send), wait_s)
    start = next((m for m in sent if m["type"] == "http.response.start"), None)
    return (start["status"] if start else None), b"".join(m.get("body", b"") for m in sent
                                                         if m["type"] == "http.response.body")


def test_uploads_in_separate_chunks_are_counted_whole_and_bounded(caplog):
    """Chunks that each fit but together do not: 413 (a limit on the latest chunk alone would pass them). A body
    that stalls: 408. A client that goes away mid-upload: logged as 499, no traceback. More uploads at once than
    may run or wait: 503 with Retry-After, so bodies in flight stay bounded."""
    import asyncio
    import logging

    from cephalo.serve import Limits, create_app
    from sdk import Detector

    det = Detector(backend="onnxruntime", threads=1)
    app = create_app(det, 1, Limits(max_bytes=100_000, queue=1))
    status, body = asyncio.run(_drive(app, [b"x" * 40_000, 0.01, b"x" * 40_000, 0.01, b"x" * 40_000]))
    assert status == 413 and b"120000 bytes" in body
    stalls = create_app(det, 1, Limits(max_bytes=100_000, queue=1, stall_s=0.2))
    status, body = asyncio.run(_drive(stalls, [b"x" * 1000, 30.0, b"x"]))      # 30 s without a byte
    assert status == 408 and b"stalled" in body
    whole = IMG.read_bytes()
    status, body = asyncio.run(_drive(app, [whole[:5000], 0.01, whole[5000:]]))
    assert status == 200 and b'"landmarks"' in body
    with caplog.at_level(logging.INFO, logger="cephalo.serve"):
        status, _ = asyncio.run(_drive(app, [b"x" * 1000, None]))
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert any(" 499 " in r.getMessage() for r in caplog.records)

    async def many():                                 # 2 may be read at once (1 worker + 1 waiting)
        go = asyncio.Event()
        held = [asyncio.create_task(_drive(app, [b"x" * 1000, go, b"x"])) for _ in range(2)]
        for _ in range(200):                         # loop steps (not time) for both to start reading
            await asyncio.sleep(0)
        third = await _drive(app, [b"x" * 1000])
        go.set()
        return third, await asyncio.gather(*held)

    third, held = asyncio.run(many())
    assert third[0] == 503 and all(s == 415 for s, _ in held)                # the held ones were read in full
