"""Inference backends behind one small interface: ``run((N, C, H, W) float32) -> (N, K, h, w) float32``.

onnxruntime runs ``.onnx``; OpenVINO runs ``.xml`` (IR) and ``.onnx``. Both are thread-safe as used here.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import platform
import shutil
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
IR_KEEP = 8               # model files whose static-batch IR copies are kept in the OpenVINO cache


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

    def prepare(self) -> None:
        """Set up now what the first call would (models are compiled or loaded on first use)."""

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
        self._ort, self._opts, self._session_made, self._lock = ort, opts, None, threading.Lock()
        # The metadata as kept beside the optimised graph: the session (the model's memory) is then made on first
        # use, so a folder run's concurrent set-up is the only one that holds the model (:meth:`concurrent`).
        sidecar = _ort_cache_file(path, ort.__version__)
        sidecar = sidecar.with_suffix(".meta.json") if sidecar is not None else None
        text = None
        try:
            text = sidecar.read_text(encoding="utf-8") if sidecar is not None and sidecar.is_file() else None
        except (OSError, UnicodeDecodeError):
            text = None
        if text is None:
            props = self.session.get_modelmeta().custom_metadata_map
            if META_KEY not in props:
                raise missing_metadata_error(str(path))
            text = props[META_KEY]
            if sidecar is not None:
                _write_atomic(sidecar, text)
        self.meta = ModelMeta.from_json(text, str(path))
        self.threads = threads

    def prepare(self) -> None:
        _ = self.session

    @property
    def session(self):
        """The onnxruntime session, made on first use."""
        if self._session_made is None:
            with self._lock:
                if self._session_made is None:
                    self._session_made = self._session(self._ort, self.path, self._opts)
                    self.input_name = self._session_made.get_inputs()[0].name
        return self._session_made

    def run(self, x: np.ndarray) -> np.ndarray:
        session = self.session
        return session.run(None, {self.input_name: x})[0]

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
                    _prune(cached.parent, 16, "*.meta.json")
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
        self._ov, self._core, self._lock = ov, core, threading.Lock()
        # The file's copies at static batch sizes, as IR in the cache (:meth:`_static_ir`): compiled from their
        # paths, a cached blob loads without the model ever being read into memory (~100 MB less per process
        # than compiling a model read from the ONNX file), and their weights are mapped, not copied.
        self._ir_dir = _ir_cache_dir(self._cache, path, ov.__version__)
        self._source = None            # the file as read (only where there is no IR cache, or for a new shape)
        text = self._cached_meta()
        if text is None:
            text = _ov_meta(self._read_source(), path)
            if text is None:
                raise missing_metadata_error(str(path))
            self._keep_meta(text)
        self.meta = ModelMeta.from_json(text, str(path))
        # f32 (default): on CPUs with native bf16 (AVX-512 BF16, AMX) OpenVINO would otherwise run the float parts
        # in bf16, and the points would no longer be those the model was checked and measured with; 'bf16' asks for
        # that explicitly (lab/results/speed/ measures what it changes).
        # workers > 1: as many streams, the threads split between them (OpenVINO's throughput mode)
        hint = {"PERFORMANCE_HINT": "LATENCY"} if workers == 1 else {"PERFORMANCE_HINT": "THROUGHPUT",
                                                                     "NUM_STREAMS": workers}
        self._config = {"INFERENCE_NUM_THREADS": threads, **hint, "INFERENCE_PRECISION_HINT": precision}
        # Static shapes run faster than the file's dynamic batch (the same outputs, bit for bit): compiled for the
        # batch a call brings, on its first use (a folder run's concurrent set-up never compiles the single
        # call's), and past MAX_STATIC_SHAPES sizes the dynamic model.
        self._static: Dict[int, object] = {}
        self._dynamic = None
        self.threads = int(threads)
        self._local = threading.local()  # an InferRequest is not shareable between threads

    @property
    def usual_batch(self) -> int:
        """The batch most calls bring: an image (first stage), or one patch per landmark (local stage)."""
        return self.meta.schema.k if self.meta.extra.get("stage") == "local" else 1

    def _read_source(self):
        """The file as OpenVINO reads it (read once, on first need: metadata not yet kept, a new batch size)."""
        if self._source is None:
            try:
                self._source = self._core.read_model(str(self.path))
            except Exception as e:
                raise ModelError(f"model {self.path}: OpenVINO cannot read it ({cause(e)})") from e
        return self._source

    def _cached_meta(self) -> Optional[str]:
        """The file's metadata as kept beside its IR copies (no model is read for it), or None."""
        try:
            return (self._ir_dir / "meta.json").read_text(encoding="utf-8") if self._ir_dir is not None else None
        except (OSError, UnicodeDecodeError):
            return None

    def _keep_meta(self, text: str) -> None:
        if self._ir_dir is not None:
            _write_atomic(self._ir_dir / "meta.json", text)

    def _at_batch(self, n: int):
        """The file's model with its input batch fixed at ``n``, or None when its input is not dynamic in its batch
        alone."""
        model = self._read_source().clone()
        inp = model.inputs[0]
        shape = inp.get_partial_shape()
        if shape.rank.is_dynamic or not all(d.is_static for d in list(shape)[1:]):
            return None
        model.reshape({inp: [n] + [d.get_length() for d in list(shape)[1:]]})
        return model

    def _static_ir(self, n: int) -> Optional[Path]:
        """The IR of the file at input batch ``n`` in the cache (written once, atomically, by whichever process
        first needs it), or None where the file's input is not dynamic in its batch alone."""
        final = self._ir_dir / f"b{n}" / "model.xml"
        if final.is_file():
            return final
        model = self._at_batch(n)
        if model is None:
            return None
        tmp = self._ir_dir / f".b{n}.{os.getpid()}.{threading.get_ident()}"
        try:
            tmp.mkdir(parents=True, exist_ok=True)
            self._ov.save_model(model, str(tmp / "model.xml"), compress_to_fp16=False)
            os.replace(tmp, final.parent)
        except OSError:
            if not final.is_file():     # no room, no rights: the model compiled from memory, as without a cache
                return None
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return final

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
                    self._dynamic = self._core.compile_model(self._read_source(), "CPU", self._config)
                return self._dynamic
            ir = self._static_ir(n) if self._ir_dir is not None else None
            if ir is not None:
                compiled = self._core.compile_model(str(ir), "CPU", self._config)
            else:       # no cache, or a file not dynamic in its batch alone: compiled as it is
                model = self._at_batch(n)
                compiled = self._core.compile_model(model if model is not None else self._read_source(), "CPU",
                                                    self._config)
            self._static[n] = compiled
            if self._cache is not None:
                _prune(self._cache, OV_KEEP, "*.blob")
            return compiled

    def prepare(self) -> None:
        _ = self.compiled

    @property
    def compiled(self):
        """The compiled model at the usual batch (compiled now if no call has needed it yet)."""
        return self._for_batch(self.usual_batch)

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


def _ir_cache_dir(cache: Optional[Path], path: Path, version: str) -> Optional[Path]:
    """Where the IR copies of ``path`` live in the OpenVINO cache (keyed by the file and OpenVINO's version; the
    oldest files' copies pruned), or None without a cache."""
    if cache is None:
        return None
    try:
        st = Path(path).stat()
        key = hashlib.sha1(f"{Path(path).resolve()}|{st.st_size}|{st.st_mtime_ns}|{version}".encode()).hexdigest()
        root = cache / "ir"
        root.mkdir(parents=True, exist_ok=True)
        target = root / key[:24]
        if not target.is_dir():
            _prune(root, IR_KEEP - 1, "*")
            target.mkdir(exist_ok=True)
        return target
    except OSError:
        return None


def _write_atomic(path: Path, text: str) -> None:
    """``text`` into ``path`` whole or not at all (another process may read it at any time); quiet on failure:
    a cache that cannot be written is a cache missed."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)


def _prune(folder: Path, keep: int, pattern: str = "*.onnx") -> None:
    """Keep the ``keep`` most recently written cache files (models change; their old graphs are not reused, and
    OpenVINO never removes a blob itself: ~30 MB each for the bundled model, one per shape and set-up)."""
    try:
        files = sorted(folder.glob(pattern), key=lambda f: f.stat().st_mtime, reverse=True)
        for f in files[keep:]:
            if f.is_dir():
                shutil.rmtree(f, ignore_errors=True)
            else:
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
