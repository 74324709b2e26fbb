"""Archives beyond one machine: the folder run on Ray Data.

    cephalo archive SCANS/ -r --out results/ [--address ray://head:10001] [--workers 8] [--threads 2]

One Detector per Ray actor (``--workers`` actors, ``--threads`` inference threads each, so a node with C cores runs
C / threads actors); ``map_batches`` streams image bytes to them, so the workers need no shared file system:
inputs may be local paths or any URL Ray reads (``s3://``, ``gs://``, ``hdfs://`` ...). Results go to JSON Lines
(or Parquet) shards in ``--out``, one row per image keyed by its path, with its status (``ok`` / ``check`` /
``flagged`` / ``failed``), the reason of a failure, and the full record (the JSON a local ``cephalo predict``
writes). A rerun with the same ``--out`` skips the images already read (failed ones are tried again). The points
are those of a local run, bit for bit: the same Detector, reading the same bytes.

Ray is an optional extra (``pip install ".[ray]"``); nothing here is imported by the SDK.
"""
from __future__ import annotations

import json
import logging
import os
import socket
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

from sdk.errors import CephaloError

DONE = ("ok", "check", "flagged")
LIST_SUFFIXES = (".txt", ".lst", ".list")


def _is_url(spec: str) -> bool:
    return "://" in spec and not os.path.exists(spec)


def list_inputs(specs: Sequence[str], recursive: bool = False) -> Tuple[List[str], List[Tuple[str, str]]]:
    """Paths named by ``specs``: local files, folders, glob patterns (as ``cephalo predict``), list files (one
    path or URL per line, ``.txt``/``.lst``/``.list``), and URLs (a URL folder is listed through fsspec when it is
    installed). Returns (paths, (spec, problem) for specs that name nothing)."""
    from .run import IMAGE_SUFFIXES, collect_inputs

    out: List[str] = []
    problems: List[Tuple[str, str]] = []
    local: List[str] = []
    for spec in specs:
        if _is_url(spec):
            out += _list_url(spec, recursive, IMAGE_SUFFIXES, problems)
        elif Path(spec).is_file() and Path(spec).suffix.lower() in LIST_SUFFIXES:
            lines = [ln.strip() for ln in Path(spec).read_text(encoding="utf-8").splitlines()]
            named = [ln for ln in lines if ln and not ln.startswith("#")]
            if not named:
                problems.append((spec, "list file names no image"))
            for ln in named:
                if _is_url(ln) or Path(ln).is_file():
                    out.append(ln if _is_url(ln) else str(Path(ln).resolve()))
                else:
                    problems.append((ln, f"listed in {spec}: no such file"))
        else:
            local.append(spec)
    files, more = collect_inputs(local, recursive)
    seen = set(out)
    out += [str(p.resolve()) for p in files if str(p.resolve()) not in seen]
    return out, problems + more


def _list_url(spec: str, recursive: bool, suffixes, problems) -> List[str]:
    try:
        import fsspec
    except ImportError:
        return [spec]          # a single object: Ray reads it, and says so if it cannot
    fs, root = fsspec.core.url_to_fs(spec)
    proto = spec.split("://", 1)[0]
    if fs.isdir(root):
        found = fs.find(root) if recursive else [p for p in fs.ls(root, detail=False)]
        found = sorted(p for p in found if Path(p).suffix.lower() in suffixes and not fs.isdir(p))
        if not found:
            problems.append((spec, "folder holds no image files"))
        return [f"{proto}://{p}" for p in found]
    if any(c in spec for c in "*?["):
        found = sorted(fs.glob(root))
        if not found:
            problems.append((spec, "pattern matches no file"))
        return [f"{proto}://{p}" for p in found]
    return [spec]


def read_shards(out_dir: Path) -> Dict[str, Dict]:
    """The last row per image path in the JSON Lines or Parquet shards under ``out_dir`` (a torn line of an
    interrupted write is skipped)."""
    rows: Dict[str, Dict] = {}
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return rows
    for f in sorted(out_dir.rglob("*")):
        if f.suffix in (".json", ".jsonl"):
            for line in f.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    r = json.loads(line)
                except ValueError:
                    continue
                if isinstance(r, dict) and "path" in r:
                    rows[r["path"]] = r
        elif f.suffix == ".parquet":
            import pyarrow.parquet as pq

            try:
                for r in pq.read_table(f).to_pylist():
                    rows[r["path"]] = r
            except Exception:        # a torn shard of an interrupted run: its images are read again
                continue
    return rows


class DetectorWorker:
    """A Ray actor: one Detector, called on batches of (path, bytes)."""

    def __init__(self, model: Optional[str], backend: str, threads: int, spacing: Optional[float],
                 analyses: Optional[Sequence[str]], site: Union[Dict, str, None] = None,
                 ruler_mm: Optional[float] = None, magnification: Optional[float] = None,
                 porion: Optional[str] = None):
        from sdk import Detector, SiteProfile

        self.det = Detector(model, backend=backend, threads=threads, ruler_mm=ruler_mm, magnification=magnification,
                            porion=porion,
                            site=SiteProfile.from_dict(site) if isinstance(site, dict) else site)
        self.spacing, self.analyses = spacing, analyses

    def __call__(self, batch: Dict) -> Dict[str, List]:
        out: Dict[str, List] = {"path": [], "status": [], "error": [], "record": [], "worker": [],
                                "worker_peak_mb": []}
        for path, data in zip(batch["path"], batch["bytes"]):
            path = str(path)
            try:
                res = self.det(bytes(data), self.spacing)
                rec = {**res.to_dict(self.analyses), "file": path}
                status, error = res.status, ""
            except MemoryError:
                rec, status, error = None, "failed", f"image {path}: not enough memory"
            except CephaloError as e:
                error = str(e).replace("<bytes>", path)
                rec, status = None, "failed"
            out["path"].append(path)
            out["status"].append(status)
            out["error"].append(error)
            out["record"].append(json.dumps(rec if rec is not None else
                                            {"file": path, "status": status, "error": error}))
        out["worker"] += [_worker_name()] * len(out["path"])
        out["worker_peak_mb"] += [_peak_mb()] * len(out["path"])    # for sizing workers (the benchmark reads it)
        return out


def _worker_name() -> str:

    return f"{socket.gethostname()}:{os.getpid()}"


def _peak_mb() -> float:
    """This process's peak resident memory, MB (Linux; 0 where /proc is absent)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def run_archive(paths: Sequence[str], out_dir: Path, *, address: Optional[str] = None, workers: int = 1,
                threads: int = 1, model: Optional[str] = None, backend: str = "auto", fmt: str = "jsonl",
                batch_size: int = 4, spacing: Optional[float] = None, analyses: Optional[Sequence[str]] = None,
                skip_done: bool = True, site: Union[Dict, str, None] = None, ruler_mm: Optional[float] = None,
                magnification: Optional[float] = None, porion: Optional[str] = None) -> Dict[str, int]:
    """Read ``paths`` on a Ray cluster (``address``; None starts a local one) into shards in ``out_dir``; returns
    the count per status of this run's images (plus ``skipped``: done by an earlier run)."""
    import ray

    if fmt not in ("jsonl", "parquet"):
        raise CephaloError(f"format {fmt!r}: choose jsonl or parquet")
    for name, v in (("workers", workers), ("threads", threads), ("batch_size", batch_size)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise CephaloError(f"{name} must be a positive integer, got {v!r}")
    if model is not None and not Path(model).is_file() and not _is_url(str(model)):
        raise CephaloError(f"model file {model} does not exist")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    earlier = read_shards(out_dir) if skip_done else {}
    todo = [p for p in paths if earlier.get(p, {}).get("status") not in DONE]
    counts = {s: 0 for s in (*DONE, "failed")}
    counts["skipped"] = len(paths) - len(todo)
    if not todo:
        return counts
    if not ray.is_initialized():
        # a local cluster gets a CPU slot for reading and writing besides the actors' (or the pipeline stalls)
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False,
                 **({} if address else {"num_cpus": max(os.cpu_count() or 1, workers * threads + 1)}))
    free = ray.cluster_resources().get("CPU", 0) - workers * threads
    if free < 1:
        raise CephaloError(f"the Ray cluster has {ray.cluster_resources().get('CPU', 0):g} CPUs: {workers} workers x "
                           f"{threads} threads leave none for reading the images; use fewer workers or threads")

    logging.getLogger("ray.data").setLevel(logging.WARNING)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    run_dir = out_dir / f"run-{len(list(out_dir.glob('run-*'))) + 1:03d}"
    ds = ray.data.read_binary_files(todo, include_paths=True)
    ds = ds.map_batches(DetectorWorker, fn_constructor_kwargs=dict(model=None if model is None else str(model),
                                                                   backend=backend, threads=threads,
                                                                   spacing=spacing, analyses=analyses,
                                                                   site=site, ruler_mm=ruler_mm,
                                                                   magnification=magnification, porion=porion),
                        compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=threads, batch_size=batch_size,
                        batch_format="numpy")
    if fmt == "jsonl":
        ds.write_json(str(run_dir))
    else:
        ds.write_parquet(str(run_dir))
    for r in read_shards(run_dir).values():
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    return counts
