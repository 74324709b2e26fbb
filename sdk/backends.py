"""Inference backends behind one small interface: ``run((N, C, H, W) float32) -> (N, K, h, w) float32``.

onnxruntime runs ``.onnx``; OpenVINO runs ``.xml`` (IR) and ``.onnx``. Both are thread-safe as used here.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import platform
import threading
from pathlib import Path
from typing import Dict, Optional

import numpy as np

from .errors import BackendError, ModelError, cause
from .metadata import META_KEY, ModelMeta, missing_metadata_error

BACKENDS = ("auto", "openvino", "onnxruntime")
PRECISIONS = ("f32", "bf16")
MAX_STATIC_SHAPES = 3     # batch sizes compiled static per model (an image, its patches, a repair's few)
OV_KEEP = 24              # compiled blobs kept in the OpenVINO cache: a Detector's set-ups several times over


def available_backends():
    return [b for b, mod in (("openvino", "openvino"), ("onnxruntime", "onnxruntime"))
            if importlib.util.find_spec(mod) is not None]


def default_threads() -> int:
    return max(1, os.cpu_count() or 1)


class Backend:
    name = ""
    meta: ModelMeta
    threads: int
    path: Path

    def run(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    precision = "f32"

    def concurrent(self, workers: int) -> "Backend":
        """The same model set up for ``workers`` callers at once sharing this backend's threads (a folder run):
        each call gets fewer threads, so that calls overlap instead of queueing or oversubscribing the cores."""
        return type(self)(self.path, self.threads, workers, self.precision)


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, path: Path, threads: int, workers: int = 1, precision: str = "f32"):
        import onnxruntime as ort

        if precision != "f32":
            raise BackendError(f"precision {precision!r} needs the OpenVINO backend; onnxruntime runs f32")

        self.path = path
        if path.suffix.lower() != ".onnx":
            raise BackendError(f"onnxruntime runs .onnx files, not {path.name}; use backend='openvino' for IR")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, threads // workers)
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3     # errors only: the SDK prints nothing on a host's stderr
        # No spin-waiting between runs: a Detector runs two sessions in turn (first stage, local stage), and one's
        # spinning threads take the other's cores (figures: lab/RESULTS.md).
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = self._session(ort, path, opts)
        props = self.session.get_modelmeta().custom_metadata_map
        if META_KEY not in props:
            raise missing_metadata_error(str(path))
        self.meta = ModelMeta.from_json(props[META_KEY], str(path))
        self.input_name = self.session.get_inputs()[0].name
        self.threads = threads

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: x})[0]

    @staticmethod
    def _session(ort, path: Path, opts):
        """An InferenceSession of ``path``. Optimising the graph took 0.4 s of a 0.8 s ``cephalo predict``: the
        optimised graph is kept in ``$CEPHALO_CACHE/onnxruntime`` (keyed by the file, onnxruntime's version and
        this CPU's flags, since the optimisations are hardware-specific) and loaded in 0.07 s the next time."""
        cached = _ort_cache_file(path, ort.__version__)
        if cached is not None and cached.is_file():
            quick = ort.SessionOptions()
            for a in ("intra_op_num_threads", "inter_op_num_threads", "log_severity_level"):
                setattr(quick, a, getattr(opts, a))
            quick.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            quick.add_session_config_entry("session.intra_op.allow_spinning", "0")
            try:
                return ort.InferenceSession(str(cached), sess_options=quick, providers=["CPUExecutionProvider"])
            except Exception:       # a damaged or foreign cache file: build it again
                cached.unlink(missing_ok=True)
        tmp = None
        if cached is not None:
            tmp = cached.with_name(f"{cached.stem}.{os.getpid()}.{threading.get_ident()}.tmp")
            opts.optimized_model_filepath = str(tmp)
        try:
            session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as e:
            raise ModelError(f"model {path}: onnxruntime cannot load it ({cause(e)})") from e
        finally:
            if tmp is not None and tmp.is_file():
                try:
                    os.replace(tmp, cached)
                    _prune(cached.parent, keep=16)
                except OSError:
                    tmp.unlink(missing_ok=True)
        return session


class OpenVinoBackend(Backend):
    name = "openvino"

    def __init__(self, path: Path, threads: int, workers: int = 1, precision: str = "f32"):
        import openvino as ov

        if precision not in PRECISIONS:
            raise BackendError(f"precision {precision!r} is not one of {PRECISIONS}")
        self.precision = precision

        self.path = path
        core = ov.Core()
        self._cache = compiled_model_cache()
        if self._cache is not None:   # the bundled model's compiled blob loads in ~0.5 s instead of ~3 s of compiling
            core.set_property({"CACHE_DIR": str(self._cache)})
        try:
            model = core.read_model(str(path))
        except Exception as e:
            raise ModelError(f"model {path}: OpenVINO cannot read it ({cause(e)})") from e
        text = _ov_meta(model, path)
        if text is None:
            raise missing_metadata_error(str(path))
        self.meta = ModelMeta.from_json(text, str(path))
        # f32 (default): on CPUs with native bf16 (AVX-512 BF16, AMX) OpenVINO would otherwise run the float parts
        # in bf16, and the points would no longer be those the model was checked and measured with; 'bf16' asks for
        # that explicitly (lab/results/speed/ measures what it changes).
        # workers > 1: as many streams, the threads split between them (OpenVINO's throughput mode)
        hint = {"PERFORMANCE_HINT": "LATENCY"} if workers == 1 else {"PERFORMANCE_HINT": "THROUGHPUT",
                                                                     "NUM_STREAMS": workers}
        self._core, self._model, self._lock = core, model, threading.Lock()
        self._config = {"INFERENCE_NUM_THREADS": threads, **hint, "INFERENCE_PRECISION_HINT": precision}
        # Static shapes run faster than the file's dynamic batch (the same outputs, bit for bit): compiled for the
        # batch a call brings, the usual one at once (an image; a local stage's one patch per landmark), others on
        # first use, and past MAX_STATIC_SHAPES sizes the dynamic model.
        usual = self.meta.schema.k if self.meta.extra.get("stage") == "local" else 1
        self._static: Dict[int, object] = {}
        self._dynamic = None
        self.compiled = self._for_batch(usual)
        self.threads = int(self.compiled.get_property("INFERENCE_NUM_THREADS"))
        self._local = threading.local()  # an InferRequest is not shareable between threads

    def _for_batch(self, n: int):
        """The compiled model for input batch ``n``."""
        got = self._static.get(n)
        if got is not None:
            return got
        with self._lock:
            if n in self._static:
                return self._static[n]
            if len(self._static) >= MAX_STATIC_SHAPES:
                if self._dynamic is None:
                    self._dynamic = self._core.compile_model(self._model, "CPU", self._config)
                return self._dynamic
            model = self._model.clone()
            inp = model.inputs[0]
            shape = inp.get_partial_shape()
            if shape.rank.is_dynamic or not all(d.is_static for d in list(shape)[1:]):
                compiled = self._core.compile_model(self._model, "CPU", self._config)   # not batch-only dynamic
            else:
                model.reshape({inp: [n] + [d.get_length() for d in list(shape)[1:]]})
                compiled = self._core.compile_model(model, "CPU", self._config)
            self._static[n] = compiled
            if self._cache is not None:
                _prune(self._cache, OV_KEEP, "*.blob")
            return compiled

    def run(self, x: np.ndarray) -> np.ndarray:
        compiled = self._for_batch(int(x.shape[0]))
        reqs = getattr(self._local, "reqs", None)
        if reqs is None:
            reqs = self._local.reqs = {}
        req = reqs.get(id(compiled))
        if req is None:
            req = reqs[id(compiled)] = compiled.create_infer_request()
        # Shared buffers, then one copy out: OpenVINO's default copies every output on its own first, which for
        # the local stage's (K, K, h, w) heatmaps is a large share of its time.
        res = req.infer({0: np.ascontiguousarray(x)}, share_inputs=True, share_outputs=True)
        return np.array(res[compiled.output(0)], copy=True)


def _prune(folder: Path, keep: int, pattern: str = "*.onnx") -> None:
    """Keep the ``keep`` most recently written cache files (models change; their old graphs are not reused, and
    OpenVINO never removes a blob itself: ~30 MB each for the bundled model, one per shape and set-up)."""
    try:
        files = sorted(folder.glob(pattern), key=lambda f: f.stat().st_mtime, reverse=True)
        for f in files[keep:]:
            f.unlink(missing_ok=True)
    except OSError:
        pass


def _ort_cache_file(path: Path, version: str) -> Optional[Path]:
    """Where the optimised graph of ``path`` is kept, or None without a cache folder."""
    root = compiled_model_cache("onnxruntime")
    if root is None:
        return None
    try:
        st = path.stat()
        flags = (next((ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags")), "")
                 if Path("/proc/cpuinfo").exists() else platform.processor())
    except OSError:
        return None
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{version}|{platform.machine()}|{flags}"
    return root / (hashlib.sha1(key.encode()).hexdigest()[:24] + ".onnx")


def compiled_model_cache(runtime: str = "openvino") -> Optional[Path]:
    """Where a runtime keeps compiled models between processes: ``$CEPHALO_CACHE/<runtime>`` (default
    ``~/.cache/cephalo/<runtime>``); None (no caching) when it cannot be created or ``CEPHALO_CACHE`` is empty."""
    root = os.environ.get("CEPHALO_CACHE")
    if root == "":
        return None
    path = Path(root) if root else Path.home() / ".cache" / "cephalo"
    try:
        (path / runtime).mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return path / runtime


def _ov_meta(model, path: Path) -> Optional[str]:
    if model.has_rt_info([META_KEY]):
        return str(model.get_rt_info([META_KEY]).astype(str))
    # An ONNX file read by OpenVINO keeps its metadata_props under 'framework'.
    if model.has_rt_info(["framework", META_KEY]):
        return str(model.get_rt_info(["framework", META_KEY]).astype(str))
    if path.suffix.lower() == ".onnx" and importlib.util.find_spec("onnxruntime") is not None:
        import onnxruntime as ort

        props = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map
        return props.get(META_KEY)
    return None


def open_backend(path: Path, backend: str = "auto", threads: Optional[int] = None, precision: str = "f32") -> Backend:
    """Open ``path`` with the named backend; ``auto`` prefers OpenVINO when installed (faster INT8 on x86)."""
    if backend not in BACKENDS:
        raise BackendError(f"backend {backend!r} is not one of {BACKENDS}")
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise BackendError(f"threads must be a positive integer, got {threads!r}")
    threads = threads or default_threads()
    have = available_backends()
    if backend == "auto":
        if not have:
            raise BackendError("no inference backend installed: pip install onnxruntime or openvino")
        backend = "openvino" if "openvino" in have else "onnxruntime"
        if backend == "onnxruntime" and path.suffix.lower() == ".xml":
            raise BackendError(f"model {path} is OpenVINO IR but OpenVINO is not installed: pip install openvino")
    elif backend not in have:
        raise BackendError(f"backend {backend!r} is not installed: pip install {backend}")
    cls = OpenVinoBackend if backend == "openvino" else OnnxRuntimeBackend
    return cls(path, threads, 1, precision)
