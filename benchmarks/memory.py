"""What a process pays in memory for the SDK, per backend: peak and steady resident memory (RSS) of one call, a
folder run at two sizes (flat with the number of images?), ``Detector.batch`` and the service with N workers, and
where a single call's memory goes.

    python -m benchmarks.memory --data ../shared/data/isbi2015 [--backends openvino,onnxruntime]
        [--sizes 19,400] [--serve-workers 2] [--out lab/results/memory]

Every figure comes from a process of its own (peak: the kernel's high-water mark, VmHWM, Linux), after one
warm-up run so that the compiled-model caches exist (the first run on a machine is measured too, as 'cold').
Writes ``memory.json`` and ``memory.md``.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Dict, List

import click

from benchmarks.cpu_bench import cpu_name

# One process's work and its memory, printed as JSON: its stages (RSS after each, MB) and its peak.
PROBE = r"""
import json, sys, time
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) / 1024
stages = {"python": status("VmRSS")}
backend, mode, files = sys.argv[1], sys.argv[2], sys.argv[3:]
import numpy, cv2
stages["numpy + OpenCV"] = status("VmRSS")
__import__(backend)
stages["runtime imported"] = status("VmRSS")
from sdk import Detector
det = Detector(backend=backend)
stages["Detector()"] = status("VmRSS")
if mode == "single":
    det._backend.prepare()
    stages["first stage compiled"] = status("VmRSS")
    if det.local is not None:
        det.local._backend.prepare()
        stages["local stage compiled"] = status("VmRSS")
    det(files[0])
    stages["one call"] = status("VmRSS")
elif mode == "batch":
    det.batch(files)
    stages["batch"] = status("VmRSS")
print(json.dumps({"stages": {k: round(v, 1) for k, v in stages.items()}, "steady_mb": round(status("VmRSS"), 1),
                  "peak_mb": round(status("VmHWM"), 1)}))
"""


def _peak_of(cmd: List[str], env=None) -> Dict:
    """Run ``cmd`` in a process of its own and read its peak RSS (a parent per run: RUSAGE_CHILDREN keeps the
    largest child's)."""
    wrapper = ("import resource, subprocess, sys, json, time; t = time.perf_counter(); "
               "rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE).returncode; "
               "print(json.dumps({'rc': rc, 'peak_mb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, "
               "'seconds': time.perf_counter() - t}))")
    out = subprocess.run([sys.executable, "-c", wrapper, *cmd], capture_output=True, text=True, env=env, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    if got["rc"] not in (0, 3):
        raise RuntimeError(f"{' '.join(cmd[:4])} ... exited {got['rc']}")
    return {"peak_mb": round(got["peak_mb"], 1), "seconds": round(got["seconds"], 1)}


def _probe(backend: str, mode: str, files: List[Path], env=None) -> Dict:
    out = subprocess.run([sys.executable, "-c", PROBE, backend, mode, *map(str, files)], capture_output=True,
                         text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _serve(backend: str, workers: int, files: List[Path]) -> Dict:
    """``cephalo serve --workers N``: its peak and steady RSS after ``files`` posted four at a time."""
    from concurrent.futures import ThreadPoolExecutor

    from cephalo.serve import free_port

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "cephalo", "serve", "--port", str(port), "--backend", backend,
                             "--workers", str(workers)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                with urllib.request.urlopen(url + "/health", timeout=2):
                    break
            except OSError:
                time.sleep(0.1)

        def post(f: Path):
            req = urllib.request.Request(url + "/v1/landmarks", data=f.read_bytes(), method="POST")
            with urllib.request.urlopen(req, timeout=120) as r:
                return r.status

        with ThreadPoolExecutor(4) as pool:
            codes = list(pool.map(post, files))
        status = Path(f"/proc/{proc.pid}/status").read_text().splitlines()
        get = {ln.split(":")[0]: float(ln.split()[1]) / 1024 for ln in status if ln.startswith(("VmHWM", "VmRSS"))}
        return {"peak_mb": round(get["VmHWM"], 1), "steady_mb": round(get["VmRSS"], 1), "answers_200": codes.count(200)}
    finally:
        proc.terminate()
        proc.wait(30)


@click.command()
@click.option("--data", "data_dir", type=click.Path(path_type=Path, exists=True), required=True)
@click.option("--backends", default="openvino,onnxruntime", show_default=True)
@click.option("--sizes", default="19,400", show_default=True, help="Folder runs of these many images.")
@click.option("--serve-workers", type=int, default=2, show_default=True)
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("lab/results/memory"))
def main(data_dir, backends, sizes, serve_workers, out_dir):
    images = sorted((data_dir / "images").glob("*.jpg"))
    report = {"cpu": cpu_name()["cpu"], "date": time.strftime("%Y-%m-%d"), "backends": {}}
    work = Path(tempfile.mkdtemp(prefix="cephalo-memory-"))
    try:
        folders = {}
        for n in map(int, sizes.split(",")):
            d = work / f"in{n}"
            d.mkdir()
            for f in images[:n]:
                os.symlink(f.resolve(), d / f.name)
            folders[n] = d
        for backend in backends.split(","):
            cold_env = {**os.environ, "CEPHALO_CACHE": str(work / "cold-cache")}
            row = {"single_cold": _probe(backend, "single", images[:1], cold_env),
                   "single": _probe(backend, "single", images[:1])}
            for n, d in folders.items():
                row[f"folder_{n}"] = _peak_of([sys.executable, "-m", "cephalo", "predict", str(d), "--backend",
                                               backend, "--out", str(work / f"out-{backend}-{n}")])
            row["batch_19"] = _probe(backend, "batch", images[:19])
            row[f"serve_{serve_workers}_workers"] = _serve(backend, serve_workers, images[:20])
            report["backends"][backend] = row
            shutil.rmtree(work / "cold-cache", ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "memory.json").write_text(json.dumps(report, indent=1))
    (out_dir / "memory.md").write_text(_markdown(report, serve_workers))
    click.echo(_markdown(report, serve_workers))


def _markdown(r: Dict, workers: int) -> str:
    lines = [f"# Memory a process pays ({r['cpu']}, {r['date']}; peak RSS, MB)", "",
             "| backend | one call | one call, first run | folder " + " | folder ".join(
                 k.split("_")[1] for k in next(iter(r["backends"].values())) if k.startswith("folder_"))
             + f" | batch of 19 | service, {workers} workers |",
             "|---|---|---|" + "---|" * sum(k.startswith("folder_") for k in next(iter(r["backends"].values())))
             + "---|---|"]
    for b, row in r["backends"].items():
        folders = [row[k]["peak_mb"] for k in row if k.startswith("folder_")]
        lines.append(f"| {b} | {row['single']['peak_mb']:.0f} | {row['single_cold']['peak_mb']:.0f} | "
                     + " | ".join(f"{v:.0f}" for v in folders)
                     + f" | {row['batch_19']['peak_mb']:.0f} | {row[f'serve_{workers}_workers']['peak_mb']:.0f} |")
    lines += ["", "Where one call's memory goes (RSS after each stage, MB):", ""]
    for b, row in r["backends"].items():
        lines.append(f"- {b}: " + ", ".join(f"{k} {v:.0f}" for k, v in row["single"]["stages"].items()))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
