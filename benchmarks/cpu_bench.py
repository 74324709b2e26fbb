"""Every way to run the model, side by side on one machine: latency, throughput, size, memory, load time, accuracy.

    python -m benchmarks.cpu_bench --checkpoint best.pt --models-dir converted/ --images DIR [--quick]
    python -m benchmarks.cpu_bench --pipeline [--model FILE] --images DIR [--eval-data ISBI]   (the shipped pair)
    cephalo-bench ...   (same options; installed with the package)

``--pipeline``: the Detector as users run it (both stages) against its own first-stage network, per runtime: the
network alone p50, the local stage's network alone p50, Detector p50 and their ratio (calls interleaved in one
process), a folder read one call at a time against ``Detector.batch`` (alternating rounds), a whole ``cephalo
predict`` process (cold start, after one run has filled the runtime's caches), peak memory and accuracy; the CPU's
name and the flags that decide INT8 speed.

Each row runs in its own process (so load time and peak memory are its own) on the same images and thread count.
"SDK" latency is ``sdk.Detector`` end to end (decode file, preprocess, model, decode heatmaps); "model" latency is
the raw model call on a prepared input. Ratios are against PyTorch eager FP32 in the same run. Results go to
``<out>/bench.json``, ``bench.md`` and ``bench.png``.
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

import click
import numpy as np

ROWS = {
    "torch_fp32": ("PyTorch eager FP32", None, None),
    "torch_dynamic_int8": ("PyTorch dynamic quant (brief)", None, None),
    "ort_fp32": ("onnxruntime FP32", "{stem}.onnx", "onnxruntime"),
    "ort_int8_qdq": ("onnxruntime INT8 QDQ", "{stem}_int8_ort.onnx", "onnxruntime"),
    "ort_int8_nncf": ("onnxruntime INT8 (NNCF, QDQ ONNX)", "{stem}_int8.onnx", "onnxruntime"),
    "ov_fp32": ("OpenVINO FP32", "{stem}.xml", "openvino"),
    "ov_int8": ("OpenVINO INT8 (NNCF)", "{stem}_int8.xml", "openvino"),
    "ov_int8_onnx": ("OpenVINO INT8 (NNCF, QDQ ONNX)", "{stem}_int8.onnx", "openvino"),
}


def _peak_rss_mb() -> float:
    try:    # this process's own peak (VmHWM starts afresh at exec; ru_maxrss may carry the parent's)
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    try:
        import resource

        r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return r / 1024.0 if sys.platform != "darwin" else r / 2**20
    except ImportError:  # Windows
        import psutil

        return psutil.Process().memory_info().peak_wset / 2**20


def _times(fn, warmup: int, runs: int) -> List[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def _pct(v: List[float], q: float) -> float:
    return float(np.percentile(v, q))


def run_row(key: str, cfg: Dict) -> Dict:
    """One row, in a fresh process: load, latency (SDK + raw), batch throughput, memory, accuracy."""
    import numpy as np


    threads, images, warmup, runs = cfg["threads"], [Path(p) for p in cfg["images"]], cfg["warmup"], cfg["runs"]
    label, pattern, backend = ROWS[key]
    row: Dict = {"key": key, "label": label, "threads": threads}
    t0 = time.perf_counter()
    if pattern is None:  # PyTorch rows: the SDK's pre/post-processing around the eager model
        import torch

        torch.set_num_threads(threads)
        from convert.export import checkpoint_meta
        from sdk.decode import decode_to_image
        from train.checkpoint import load_checkpoint
        from train.trainer import model_from_checkpoint

        ck = load_checkpoint(Path(cfg["checkpoint"]))
        model = model_from_checkpoint(ck).float().eval()
        if key == "torch_dynamic_int8":
            from convert.quantize import dynamic_quantize_torch

            model = dynamic_quantize_torch(model)
        meta = checkpoint_meta(ck)
        # Weights only (the checkpoint file also holds optimiser state, which deployment would not ship).
        row["file_mb"] = round(sum(v.numel() * v.element_size() for v in ck["model"].values()) / 2**20, 2)

        def raw(x):
            with torch.inference_mode():
                return model(torch.from_numpy(x)).numpy()

        def sdk_call(p):
            x, lb, _ = meta.preprocessing.prepare(p)
            return decode_to_image(raw(x[None])[0], lb, meta.heatmap_stride, meta.sigma, meta.decoder)[0]
    else:
        from sdk import Detector

        path = Path(cfg["models_dir"]) / pattern.format(stem=cfg["stem"])
        if not path.is_file():
            return {**row, "skipped": f"{path.name} not found"}
        det = Detector(path, backend=backend, threads=threads)
        meta = det.meta
        row["file_mb"] = round((path.stat().st_size + (path.with_suffix(".bin").stat().st_size
                                                       if path.suffix == ".xml" else 0)) / 2**20, 2)
        raw = det.run_network

        def sdk_call(p):
            return det(p).xy
    x1 = meta.preprocessing.prepare(images[0])[0][None]
    raw(x1)
    row["load_s"] = round(time.perf_counter() - t0, 2)
    lat_raw = _times(lambda: raw(x1), warmup, runs)
    it = iter(images * (1 + (warmup + runs) // len(images)))
    lat_sdk = _times(lambda: sdk_call(next(it)), warmup, runs)
    xb = np.repeat(x1, cfg["batch"], axis=0)
    lat_b = _times(lambda: raw(xb), 1, max(2, runs // 4))
    row.update(sdk_p50_ms=_pct(lat_sdk, 50), sdk_p95_ms=_pct(lat_sdk, 95), model_p50_ms=_pct(lat_raw, 50),
               model_p95_ms=_pct(lat_raw, 95), batch=cfg["batch"],
               throughput_img_s=cfg["batch"] * 1000.0 / statistics.median(lat_b), peak_rss_mb=round(_peak_rss_mb(), 1))
    if cfg.get("eval"):
        from sdk.metrics import radial_errors, summarize
        from sdk.schemas import ISBI19
        from train.datasets import load_folder

        samples = load_folder(Path(cfg["eval"]["data"]), ISBI19, split=[cfg["eval"]["split"]])[:cfg["eval"]["n"]]
        pred = np.stack([sdk_call(s.image) for s in samples])
        m = summarize(radial_errors(pred, np.stack([s.points for s in samples])), np.array([s.spacing for s in samples]))
        row.update(mre_mm=m["mre_mm"], sdr2_pct=m["sdr"]["2mm"], eval_images=len(samples))
    return row


CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16")


def cpu_name() -> Dict:
    """The CPU's model name and the instruction-set flags INT8/BF16 inference speed depends on."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and name in ("", platform.machine(), "x86_64"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:     # macOS, Windows: the name platform gives
        pass
    return {"cpu": name, "flags": [f for f in CPU_FLAGS if f in flags], "logical_cpus": os.cpu_count()}


def pipeline_row(backend: str, cfg: Dict) -> Dict:
    """One runtime, in a fresh process: the Detector (both stages) against its networks alone."""
    from sdk import Detector
    from sdk.decode import decode_to_image
    from sdk.local_stage import local_inputs

    images, warmup, runs, threads = [Path(p) for p in cfg["images"]], cfg["warmup"], cfg["runs"], cfg["threads"]
    t0 = time.perf_counter()
    det = Detector(cfg["model"], backend=backend, threads=threads)
    x, lb, loaded = det.preprocess(images[0])
    hm = det.run_network(x[None])
    row: Dict = {"key": f"pipeline_{backend}", "label": f"Detector, {det.info['backend']}", "threads": threads,
                 "local_stage": det.local is not None, "load_s": round(time.perf_counter() - t0, 2),
                 "model_path": str(det.model_path), "input_hw": list(det.meta.input_hw),
                 "file_mb": round(sum(Path(f).stat().st_size for f in
                                      [det.model_path] + ([det.local.path] if det.local else [])) / 2**20, 2)}
    calls = {"network": lambda: det.run_network(x[None])}
    if det.local is not None:
        m = det.meta
        xy = decode_to_image(hm[0], lb, m.heatmap_stride, m.sigma, m.decoder)[0]
        xp = local_inputs(det.local.fine(loaded.gray, lb, loaded.reduction), xy, det.local.params)[0]
        calls["local network"] = lambda: det.local.run_network(xp)
    it = iter(images * (1 + (warmup + runs) // len(images)))
    calls["detector"] = lambda: det(next(it))
    times = {k: [] for k in calls}
    for r in range(warmup + runs):      # interleaved: a slow spell of the machine falls on all alike
        for k, fn in calls.items():
            t = time.perf_counter()
            fn()
            if r >= warmup:
                times[k].append((time.perf_counter() - t) * 1000)
    p50 = {k: statistics.median(v) for k, v in times.items()}
    row.update(model_p50_ms=p50["network"], local_model_p50_ms=p50.get("local network"),
               sdk_p50_ms=p50["detector"], sdk_p95_ms=_pct(times["detector"], 95),
               ratio=p50["detector"] / p50["network"])
    # a folder read one call at a time against Detector.batch, in alternating rounds (the issue's "folder
    # throughput" is their ratio; 1/p50 would leave out the slow calls a folder run also pays for)
    folder = images * max(1, 24 // len(images))
    det.batch(folder[:4])
    rates: Dict[str, List[float]] = {"one at a time": [], "batch": []}
    for _ in range(cfg.get("folder_rounds", 3)):
        for k, fn in (("one at a time", lambda: [det(f) for f in folder]), ("batch", lambda: det.batch(folder))):
            t = time.perf_counter()
            fn()
            rates[k].append(len(folder) / (time.perf_counter() - t))
    row["sequential_img_s"] = statistics.median(rates["one at a time"])
    row["throughput_img_s"] = statistics.median(rates["batch"])
    row["throughput_over_sequential"] = row["throughput_img_s"] / row["sequential_img_s"]
    row["peak_rss_mb"] = round(_peak_rss_mb(), 1)
    if cfg.get("eval"):
        from sdk.metrics import radial_errors, summarize
        from sdk.schemas import ISBI19
        from train.datasets import load_folder

        e = cfg["eval"]
        samples = load_folder(Path(e["data"]), ISBI19, split=[e["split"]], annotators=("senior", "junior"))[:e["n"]]
        pred = np.stack([det(s.image).xy for s in samples])
        mm = summarize(radial_errors(pred, np.stack([s.points for s in samples])),
                       np.array([s.spacing for s in samples]))
        row.update(mre_mm=mm["mre_mm"], sdr2_pct=mm["sdr"]["2mm"], eval_images=len(samples),
                   eval_labels="mean of senior and junior")
    return row


def benchmark_app(model: Path, input_hw, hint: str, seconds: int = 10) -> Dict:
    """OpenVINO's own ``benchmark_app`` on the network alone, static shape (1, 1, H, W), its default precision hint
    for this CPU and all its cores (the tool refuses a thread count beside a hint): what a user comparing runtimes
    would measure. {median_latency_ms, throughput_fps}."""

    exe = shutil.which("benchmark_app") or str(Path(sys.executable).with_name("benchmark_app"))
    cmd = [exe, "-m", str(model), "-hint", hint, "-t", str(seconds), "-d", "CPU",
           "-shape", f"[1,1,{input_hw[0]},{input_hw[1]}]"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    out: Dict = {"hint": hint, "seconds": seconds}
    lines = res.stdout.splitlines()
    for i, line in enumerate(lines):
        if line.strip().endswith("Latency:") and i + 1 < len(lines) and "Median:" in lines[i + 1]:
            out["median_latency_ms"] = float(lines[i + 1].split("Median:")[1].split()[0])
        if "Throughput:" in line:
            out["throughput_fps"] = float(line.split("Throughput:")[1].split()[0])
    if "throughput_fps" not in out:
        raise RuntimeError(f"benchmark_app gave no throughput: {res.stdout[-400:]} {res.stderr[-400:]}")
    return out


def cold_start_s(backend: str, model: Optional[str], image: Path, runs: int = 3) -> float:
    """Median wall time of a whole ``cephalo predict IMAGE`` process, after one run that fills the caches."""

    cmd = [sys.executable, "-m", "cephalo", "predict", str(image), "--backend", backend]
    cmd += ["--model", model] if model else []
    out = []
    for i in range(runs + 1):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if i:
            out.append(time.perf_counter() - t)
    return statistics.median(out)


def _pipeline_child(backend, cfg, q):
    try:
        q.put(pipeline_row(backend, cfg))
    except Exception as e:
        q.put({"key": f"pipeline_{backend}", "label": f"Detector, {backend}", "error": f"{type(e).__name__}: {e}"})


def bench_pipeline(model: Optional[Path], images: List[Path], out: Path, threads: int, backends: List[str],
                   quick: bool, eval_data: Optional[Path], eval_split: str, eval_n: int) -> Dict:
    out.mkdir(parents=True, exist_ok=True)
    cfg = {"model": str(model) if model else None, "threads": threads, "images": [str(p) for p in images],
           "warmup": 2 if quick else 5, "runs": 8 if quick else 30,
           "eval": {"data": str(eval_data), "split": eval_split, "n": eval_n} if eval_data else None}
    rows = []
    for b in backends:
        rows.append(_in_own_process(_pipeline_child, b, cfg))
        if "error" not in rows[-1]:
            rows[-1]["cold_start_s"] = cold_start_s(b, cfg["model"], images[0], 1 if quick else 3)
        click.echo(f"  {b}: " + json.dumps({k: (round(v, 3) if isinstance(v, float) else v)
                                            for k, v in rows[-1].items() if k not in ("key", "label")}))
    result = {"machine": {**cpu_name(), "platform": platform.platform(), "python": platform.python_version()},
              "threads": threads, "images": len(images), "quick": quick, "rows": rows,
              "date": time.strftime("%Y-%m-%d %H:%M")}
    ov = next((r for r in rows if r["key"] == "pipeline_openvino" and "error" not in r), None)
    if ov is not None:      # the reference a user compares with: OpenVINO's own tool, its best settings
        try:
            result["benchmark_app"] = {h: benchmark_app(Path(ov["model_path"]), ov["input_hw"], h,
                                                        4 if quick else 10) for h in ("latency", "throughput")}
        except (OSError, RuntimeError) as e:
            result["benchmark_app"] = {"error": f"{type(e).__name__}: {e}"}
    (out / "pipeline.json").write_text(json.dumps(result, indent=2))
    (out / "pipeline.md").write_text(pipeline_markdown(result))
    return result


def pipeline_markdown(res: Dict) -> str:
    m = res["machine"]
    lines = [f"CPU: {m['cpu']} ({', '.join(m['flags']) or 'no AVX2'}), {m['logical_cpus']} logical CPUs, "
             f"{res['threads']} threads; {res['images']} images; {res['date']}", "",
             "| runtime | network p50 ms | local network p50 ms | Detector p50 ms | ratio | Detector p95 ms | "
             "one at a time img/s | batch img/s | ratio | cold start s | peak RSS MB | files MB | MRE mm | SDR@2mm |",
             "|" + "---|" * 14]
    for r in res["rows"]:
        if "error" in r:
            lines.append(f"| {r['label']} | {r['error']} |" + " |" * 12)
            continue
        f = lambda k, fmt, r=r: (fmt.format(r[k]) if r.get(k) is not None else "")
        lines.append(f"| {r['label']} | {f('model_p50_ms', '{:.1f}')} | {f('local_model_p50_ms', '{:.1f}')} | "
                     f"{f('sdk_p50_ms', '{:.1f}')} | {f('ratio', '{:.2f}')} | {f('sdk_p95_ms', '{:.1f}')} | "
                     f"{f('sequential_img_s', '{:.1f}')} | {f('throughput_img_s', '{:.1f}')} | "
                     f"{f('throughput_over_sequential', '{:.2f}')} | "
                     f"{f('cold_start_s', '{:.2f}')} | {f('peak_rss_mb', '{:.0f}')} | {f('file_mb', '{:.1f}')} | "
                     f"{f('mre_mm', '{:.3f}')} | {f('sdr2_pct', '{:.1f}%')} |")
    ba = res.get("benchmark_app")
    if ba and "error" not in ba:
        lines += ["", f"OpenVINO's benchmark_app on the first-stage network alone (static shape, its default precision "
                      f"hint for this CPU, all {res['machine']['logical_cpus']} logical CPUs): latency median "
                      f"{ba['latency'].get('median_latency_ms', float('nan')):.1f} ms; throughput hint "
                      f"{ba['throughput']['throughput_fps']:.1f} images/s."]
    elif ba:
        lines += ["", f"benchmark_app: {ba['error']}"]
    return "\n".join(lines) + "\n"


def conv_macs(checkpoint: Path) -> float:
    """Multiply-accumulates of one forward pass (convolutions and linear layers), in GMAC."""
    import torch

    from train.checkpoint import load_checkpoint
    from train.trainer import model_from_checkpoint

    ck = load_checkpoint(checkpoint)
    model = model_from_checkpoint(ck).float().eval()
    size = ck["config"]["input_size"]
    total = [0]

    def hook(m, inp, out):
        if isinstance(m, torch.nn.Conv2d):
            total[0] += out.numel() * m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]

    hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        model(torch.zeros(1, ck["config"]["channels"], size, size))
    for h in hs:
        h.remove()
    return total[0] / 1e9


def int8_peak_gops(threads: int) -> float:
    """Measured INT8 conv throughput of this machine (OpenVINO, NNCF-quantized 3x3 conv stack), GOPS (2 ops/MAC)."""
    import nncf
    import openvino as ov
    import torch

    net = torch.nn.Sequential(*[torch.nn.Conv2d(128, 128, 3, padding=1) for _ in range(4)]).eval()
    x = torch.randn(1, 128, 96, 96)

    core = ov.Core()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "peak.onnx"
        torch.onnx.export(net, (x,), str(path), opset_version=17, dynamo=False)
        q = nncf.quantize(core.read_model(str(path)), nncf.Dataset([x.numpy()]), subset_size=1)
    comp = core.compile_model(q, "CPU", {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"})
    req = comp.create_infer_request()
    xs = x.numpy()
    ms = statistics.median(_times(lambda: req.infer({0: xs}), 3, 15))
    macs = 4 * 128 * 128 * 9 * 96 * 96
    return 2 * macs / (ms / 1000) / 1e9


def _in_own_process(target, key, cfg) -> Dict:
    """``target(key, cfg, queue)`` in a fresh process (its load time and peak memory are its own); its row."""
    ctx = mp.get_context("spawn")  # the same on Windows, macOS and Linux
    q = ctx.Queue()
    p = ctx.Process(target=target, args=(key, cfg, q))
    p.start()
    row = q.get()
    p.join()
    return row


def _child(key, cfg, q):
    try:
        q.put(run_row(key, cfg))
    except Exception as e:  # a row's failure is reported in the table, not fatal to the others
        q.put({"key": key, "label": ROWS[key][0], "error": f"{type(e).__name__}: {e}"})


def bench(checkpoint: Path, models_dir: Path, images: List[Path], out: Path, threads: int, backends: List[str],
          quick: bool, stem: str, eval_data: Optional[Path], eval_split: str, eval_n: int, batch: int) -> Dict:
    out.mkdir(parents=True, exist_ok=True)
    cfg = {"checkpoint": str(checkpoint), "models_dir": str(models_dir), "stem": stem, "threads": threads,
           "images": [str(p) for p in images], "warmup": 2 if quick else 5, "runs": 8 if quick else 30,
           "batch": batch, "eval": {"data": str(eval_data), "split": eval_split, "n": eval_n} if eval_data else None}
    rows = []
    for key in backends:
        rows.append(_in_own_process(_child, key, cfg))
        click.echo(f"  {key}: " + json.dumps({k: (round(v, 2) if isinstance(v, float) else v) for k, v in rows[-1].items()
                                              if k not in ("key", "label")}))
    gmac = conv_macs(checkpoint)
    peak = int8_peak_gops(threads)
    base = next((r for r in rows if r["key"] == "torch_fp32" and "sdk_p50_ms" in r), None)
    for r in rows:
        if "model_p50_ms" in r:
            r["achieved_gops"] = 2 * gmac / (r["model_p50_ms"] / 1000)
            r["pct_of_int8_peak"] = 100 * r["achieved_gops"] / peak
            if base:
                r["speedup_vs_torch_fp32"] = base["sdk_p50_ms"] / r["sdk_p50_ms"]
    result = {"machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                          "cpu_count": os.cpu_count(), "python": platform.python_version()},
              "threads": threads, "images": len(images), "model_gmac": gmac, "int8_peak_gops": peak,
              "quick": quick, "rows": rows, "date": time.strftime("%Y-%m-%d %H:%M")}
    (out / "bench.json").write_text(json.dumps(result, indent=2))
    (out / "bench.md").write_text(markdown(result))
    plot(result, out / "bench.png")
    return result


def markdown(res: Dict) -> str:
    lines = [f"Machine: {res['machine']['processor']}, {res['machine']['cpu_count']} cores, {res['threads']} threads; "
             f"model {res['model_gmac']:.2f} GMAC; measured INT8 peak {res['int8_peak_gops']:.0f} GOPS; {res['date']}",
             "", "| backend | SDK p50 ms | SDK p95 ms | model p50 ms | img/s (batch) | speed-up vs torch | file MB | "
             "peak RSS MB | load s | % INT8 peak | MRE mm | SDR@2mm |", "|" + "---|" * 12]
    for r in res["rows"]:
        if "sdk_p50_ms" not in r:
            lines.append(f"| {r['label']} | {r.get('skipped') or r.get('error')} |" + " |" * 10)
            continue
        f = lambda k, fmt, r=r: (fmt.format(r[k]) if k in r else "")
        lines.append(f"| {r['label']} | {f('sdk_p50_ms', '{:.1f}')} | {f('sdk_p95_ms', '{:.1f}')} | "
                     f"{f('model_p50_ms', '{:.1f}')} | {f('throughput_img_s', '{:.1f}')} | "
                     f"{f('speedup_vs_torch_fp32', '{:.2f}x')} | {f('file_mb', '{:.1f}')} | {f('peak_rss_mb', '{:.0f}')} | "
                     f"{f('load_s', '{:.2f}')} | {f('pct_of_int8_peak', '{:.0f}%')} | {f('mre_mm', '{:.3f}')} | "
                     f"{f('sdr2_pct', '{:.1f}%')} |")
    return "\n".join(lines) + "\n"


def plot(res: Dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in res["rows"] if "sdk_p50_ms" in r]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in rows:
        y = r.get("mre_mm", 0.0)
        ax.scatter(r["sdk_p50_ms"], y, s=40)
        ax.annotate(r["label"], (r["sdk_p50_ms"], y), fontsize=8, xytext=(4, 4), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("Detector end-to-end p50 latency, ms (log)")
    ax.set_ylabel("MRE, mm" + ("" if any("mre_mm" in r for r in rows) else " (not measured)"))
    ax.set_title(f"{res['machine']['processor']}, {res['threads']} threads")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


@click.command("bench")
@click.option("--pipeline", is_flag=True,
              help="Time the Detector as shipped (both stages) against its networks alone, per runtime; no "
                   "checkpoint needed.")
@click.option("--model", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=None,
              help="With --pipeline: the first-stage file (default: the bundled one).")
@click.option("--checkpoint", type=click.Path(path_type=Path, exists=True), default=None)
@click.option("--models-dir", type=click.Path(path_type=Path), default=None, help="Output of 'cephalo convert'.")
@click.option("--stem", default="model", help="File stem used by 'cephalo convert --name'.")
@click.option("--images", "images_dir", type=click.Path(path_type=Path, exists=True), required=True,
              help="Folder of images to time on (a data folder with images/ works).")
@click.option("--out", type=click.Path(path_type=Path), default=Path("results/bench"), show_default=True)
@click.option("--threads", type=int, default=os.cpu_count(), show_default=True)
@click.option("--backends", default=None,
              help=f"Rows to run, comma-separated (default: all of {','.join(ROWS)}; with --pipeline: "
                   f"openvino,onnxruntime).")
@click.option("--batch", type=int, default=4, show_default=True)
@click.option("--quick", is_flag=True, help="Fewer runs, for a fast look.")
@click.option("--eval-data", type=click.Path(path_type=Path), default=None, help="ISBI folder for MRE/SDR.")
@click.option("--eval-split", default="test1")
@click.option("--eval-n", type=int, default=None,
              help="At most this many evaluation images per row (default 150; 10 with --quick).")
def main(pipeline, model, checkpoint, models_dir, stem, images_dir, out, threads, backends, batch, quick, eval_data,
         eval_split, eval_n):
    """Benchmark every backend side by side; writes bench.json, bench.md and bench.png (--pipeline: pipeline.json
    and pipeline.md)."""
    from train.datasets import image_files

    if pipeline:
        keys = [k for k in (backends or "openvino,onnxruntime").split(",") if k]
        images = image_files(images_dir, split=None, limit=4 if quick else 16)
        res = bench_pipeline(model, images, out, threads, keys, quick, eval_data, eval_split,
                             eval_n if eval_n is not None else (10 if quick else 150))
        click.echo(pipeline_markdown(res))
        click.echo(f"written: {out / 'pipeline.json'}, {out / 'pipeline.md'}")
        return
    if checkpoint is None or models_dir is None:
        raise click.UsageError("--checkpoint and --models-dir are needed (or --pipeline for the shipped Detector)")
    keys = [k for k in (backends or ",".join(ROWS)).split(",") if k]
    unknown = [k for k in keys if k not in ROWS]
    if unknown:
        raise click.BadParameter(f"unknown rows {unknown}; choose from {list(ROWS)}", param_hint="--backends")
    images = image_files(images_dir, split=None, limit=4 if quick else 16)
    res = bench(checkpoint, models_dir, images, out, threads, keys, quick, stem, eval_data, eval_split,
                eval_n if eval_n is not None else (10 if quick else 150), batch)
    click.echo(markdown(res))
    click.echo(f"written: {out / 'bench.json'}, {out / 'bench.md'}, {out / 'bench.png'}")


if __name__ == "__main__":
    main()
