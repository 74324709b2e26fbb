"""Shared fixtures: the downsized ISBI images in tests/fixtures/isbi, and a tiny model trained on them."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
ISBI_FIX = FIXTURES / "isbi"
SHARED_ISBI = Path(__file__).resolve().parents[2] / "shared" / "data" / "isbi2015"

os.environ.setdefault("OMP_NUM_THREADS", "2")


def tiny_config(**kw):
    from train.config import TrainConfig

    # The smallest timm HRNet at a small input: seconds per step on 2 cores.
    base = dict(backbone="hrnet_w18_small", input_size=128, epochs=4, batch_size=4, val_count=2, lr=2e-3,
                amp="off", threads=2, restart_period=4)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="session")
def fixture_samples():
    from sdk.schemas import ISBI19
    from train.datasets import load_folder

    return load_folder(ISBI_FIX, ISBI19)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, fixture_samples):
    """A tiny model trained 4 epochs on the fixture images: (run_dir, history)."""
    from train.trainer import Trainer, split_train_val

    cfg = tiny_config()
    run = tmp_path_factory.mktemp("tiny_run")
    tr, va = split_train_val(fixture_samples, cfg.val_count, cfg.seed)
    t = Trainer(cfg, tr, va, run, run / "cache", data_info="fixture")
    hist = t.fit(progress=False)
    return run, hist


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory, tiny_run):
    """The tiny model exported to ONNX (with metadata) and OpenVINO IR: dict of paths."""
    from convert.pipeline import convert

    out = tmp_path_factory.mktemp("tiny_onnx")
    rep = convert(tiny_run[0] / "last.pt", out, openvino=True, calib_data=ISBI_FIX, calib_split=None,
                  check_images=2, progress=False)
    return {k: Path(v["path"]) for k, v in rep["files"].items()} | {"report": rep}


@pytest.fixture(scope="session")
def tiny_local(tmp_path_factory, fixture_samples, tiny_onnx):
    """A tiny local stage trained 2 epochs on the fixture images behind the tiny model, exported fp32 + INT8:
    dict with 'run', 'history', 'fp32', 'int8'."""
    import numpy as np

    from convert.local_stage import convert_local
    from sdk.schemas import ISBI19
    from train.local_stage import LocalConfig, load_local_checkpoint, train_local_stage

    run = tmp_path_factory.mktemp("tiny_local")
    cfg = LocalConfig(input_size=128, patch=32, widths=(8, 16, 24, 32), epochs=2, batch_size=16)
    tr, va = fixture_samples[:6], fixture_samples[6:]
    rng = np.random.default_rng(0)
    first = {s.id: s.points + rng.normal(0, 4, size=s.points.shape) for s in va}
    hist = train_local_stage(tr, va, first, ISBI19.k, cfg, run, threads=2)
    files = convert_local(load_local_checkpoint(run / "best.pt"), ISBI19.to_dict(), run / "tiny.local.onnx", tr[:3])
    return {"run": run, "history": hist, **files}


def dicom_bytes(px, photometric="MONOCHROME2", **tags) -> bytes:
    """A DICOM file's bytes holding ``px`` (uint16 (H, W); (frames, H, W) for several frames; with ``photometric``
    'RGB', uint8 (H, W, 3)) and the given tags (``ImagerPixelSpacing=[0.1, 0.1]``, ``WindowCenter=...``). Skips the
    test without pydicom."""
    import io

    import numpy as np

    pytest.importorskip("pydicom")
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("x.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    if photometric == "RGB":      # 8-bit colour, samples interleaved
        px = np.asarray(px, np.uint8)
        ds.Rows, ds.Columns = px.shape[:2]
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, photometric, 0
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    else:
        px = np.asarray(px, np.uint16)
        if px.ndim == 3:
            ds.NumberOfFrames = px.shape[0]
        ds.Rows, ds.Columns = px.shape[-2:]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    for k, v in tags.items():
        setattr(ds, k, v)
    ds.PixelData = px.tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


_MODEL_FIXTURES = {"tiny_run", "tiny_onnx", "tiny_local"}
_USES_TINY = re.compile(r"\btiny_(run|onnx|local|config)\b")     # the helpers, not a word in a test's name


def pytest_collection_modifyitems(items):
    """Tests that train a model (or use one trained here) are marked ``model``: a mutation run (setup.cfg
    [mutmut]) leaves them out with ``-m 'not model'``, since each of its forked runs would train the tiny model
    again. The bundled model loads in a second: tests that only read images with it stay in."""
    for item in items:
        if _MODEL_FIXTURES & set(getattr(item, "fixturenames", ())) or _USES_TINY.search(_source(item)):
            item.add_marker(pytest.mark.model)


def _source(item) -> str:
    import inspect

    try:
        return inspect.getsource(item.function)
    except (OSError, TypeError, AttributeError):
        return ""


def blank_cells(tmp_path, blanks):
    """A copy of the fixture folder whose senior.csv leaves ``blanks`` ({row: landmark}, rows counted from the
    first image) unlabelled, as a clinic's file with gaps: (the folder, its rows, its header)."""
    import csv
    import shutil

    d = tmp_path / "clinic"
    shutil.copytree(ISBI_FIX, d)
    rows = list(csv.reader(open(d / "senior.csv", newline="")))
    head = rows[0]
    for row, name in blanks.items():
        rows[row][head.index(f"{name}_x")] = rows[row][head.index(f"{name}_y")] = ""
    with open(d / "senior.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    return d, rows, head


def local_http(statuses, body=b"", content_type: str = "application/dicom+json"):
    """A local HTTP server answering its requests with ``statuses`` in turn (the last one repeated) and ``body``
    (bytes, or a list of them in turn as the statuses), recording each request's method, path, headers and body:
    (server, its base URL, the requests seen). ``server.shutdown()`` ends it."""
    import http.server
    import threading

    seen = []
    bodies = body if isinstance(body, list) else [body]

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self):
            data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            seen.append({"method": self.command, "path": self.path, "headers": dict(self.headers), "body": data})
            n = len(seen)
            out = bodies[min(n, len(bodies)) - 1]
            self.send_response(statuses[min(n, len(statuses)) - 1])
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        do_POST = do_GET = _answer

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f"http://127.0.0.1:{srv.server_address[1]}", seen
