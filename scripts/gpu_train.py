"""Train recipe variants side by side on one lent GPU within a fixed time, keep the best by validation MRE.

For a machine lent for minutes (no data folder there, files back only in small pieces): the data travel as a pack
(``cephalo pack``), each variant is one ``cephalo train --time-budget`` process sharing the GPU, and the winner's
best weights come back as a half-precision checkpoint split into parts of at most 16 MB (joined again by
``python scripts/gpu_train.py --join OUT/best_fp16.pt.part*``).

    python scripts/gpu_train.py --pack isbi_train_384.npz --out OUTDIR --seconds 500 \\
        --variant a: --variant "b:--heatmap-stride 2 --sigma 2.0"

The variant text after ``name:`` is extra ``cephalo train`` options. The choice uses validation images carved from
the training set only.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

PART = 16_000_000  # bytes; the lending tool returns files of at most 16 MiB


def _interrupt(p: subprocess.Popen) -> None:
    # SIGINT lets a run write its checkpoints on the way out (KeyboardInterrupt -> the trainer's handler);
    # Windows has no SIGINT for a child process, only terminate.
    if os.name == "nt":
        p.terminate()
    else:
        p.send_signal(signal.SIGINT)


def run_variants(args) -> dict:
    runs = Path(args.runs)
    runs.mkdir(parents=True, exist_ok=True)
    procs = {}
    for v in args.variant:
        name, _, extra = v.partition(":")
        cmd = [sys.executable, "-m", "cephalo", "train", "--data", args.pack, "--out", str(runs / name),
               "--preset", args.preset, "--time-budget", str(args.seconds), "--checkpoint-every", "60",
               "--workers", str(args.workers), "--no-progress", *shlex.split(extra)]
        print("start", name, " ".join(cmd[2:]), flush=True)
        log = open(runs / f"{name}.log", "w", encoding="utf-8")
        procs[name] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log)
    hard_stop = time.monotonic() + args.seconds + args.grace
    failed = []
    while any(p.poll() is None for p, _ in procs.values()):
        time.sleep(2)
        for name, (p, _) in procs.items():
            if p.poll() not in (None, 0) and name not in failed:
                failed.append(name)
                print(f"{name} failed (exit {p.returncode}):\n" + (runs / f"{name}.log").read_text()[-3000:],
                      flush=True)
        if failed and args.fail_fast:
            for p, _ in procs.values():
                if p.poll() is None:
                    _interrupt(p)
        if time.monotonic() > hard_stop:
            for p, _ in procs.values():
                if p.poll() is None:
                    _interrupt(p)
            hard_stop = time.monotonic() + 60
    for _, log in procs.values():
        log.close()
    results = {}
    for name in procs:
        hist = runs / name / "history.jsonl"
        recs = [json.loads(line) for line in hist.read_text().splitlines()] if hist.is_file() else []
        vals = [r for r in recs if "val_mre_mm" in r]
        best = min(vals, key=lambda r: r["val_mre_mm"]) if vals else None
        results[name] = {"epochs": len(recs), "best": best, "exit": procs[name][0].returncode}
        print(f"{name}: {len(recs)} epochs, best " +
              (f"val MRE {best['val_mre_mm']:.3f} mm at epoch {best['epoch']}" if best else "none"), flush=True)
        for r in recs[:: max(1, len(recs) // 25)] + recs[-1:]:
            print(f"  {name} ep {r['epoch']:4d} loss {r['train_loss']:.4f} lr {r['lr']:.2e} "
                  f"val {r.get('val_mre_mm', float('nan')):.3f} mm sdr2 {r.get('val_sdr2', float('nan')):.1f}")
    return results


def soup(paths) -> dict:
    """The uniform average of checkpoints fine-tuned from one start (a "model soup": often steadier on data unlike
    the training images than any one of them). Float tensors, BatchNorm statistics included, are averaged; integer
    buffers (BatchNorm counters) are the first's. The first checkpoint's other fields are kept."""
    import torch

    cks = [torch.load(p, map_location="cpu", weights_only=True) for p in paths]
    out = dict(cks[0])
    out["model"] = {k: (torch.stack([c["model"][k].float() for c in cks]).mean(0).to(v.dtype)
                        if v.is_floating_point() else v) for k, v in cks[0]["model"].items()}
    return out


def export_winner(results: dict, runs: Path, out: Path, use_soup: bool = False) -> None:
    import torch

    ok = {n: r for n, r in results.items() if r["best"] is not None and (runs / n / "best.pt").is_file()}
    if not ok:
        raise SystemExit("no variant produced a best.pt")
    if use_soup:
        name = "soup of " + ",".join(sorted(ok))
        ck = soup([runs / n / "best.pt" for n in sorted(ok)])
        # not validated as one model here (judge it after conversion): no member's figures claimed for it
        ck["best_mre_mm"], ck["history"] = float("nan"), []
    else:
        name = min(ok, key=lambda n: ok[n]["best"]["val_mre_mm"])
        ck = torch.load(runs / name / "best.pt", map_location="cpu", weights_only=True)
    # Half precision halves the file (relative rounding 5e-4, far below what INT8 later does); integer
    # buffers (BatchNorm counters) stay as they are.
    ck["model"] = {k: (v.half() if v.is_floating_point() else v) for k, v in ck["model"].items()}
    ck["variant"] = name
    out.mkdir(parents=True, exist_ok=True)
    tmp = runs / "best_fp16.pt"
    torch.save(ck, tmp)
    data = tmp.read_bytes()
    for i in range(0, len(data), PART):
        (out / f"best_fp16.pt.part{i // PART}").write_bytes(data[i:i + PART])
    (out / "results.json").write_text(json.dumps({"winner": name, **results}, indent=1))
    for n in results:
        h = runs / n / "history.jsonl"
        if h.is_file():
            (out / f"history_{n}.jsonl").write_bytes(h.read_bytes())
    print(f"winner {name}: epoch {ck['epoch']}, val MRE {ck['best_mre_mm']:.3f} mm; {len(data) / 1e6:.1f} MB "
          f"in {(len(data) + PART - 1) // PART} parts", flush=True)


def train_variants(pack: Path, out: Path, runs: Path, variants, seconds: float = 480, grace: float = 30,
                   preset: str = "high_accuracy", workers: int = 6, fail_fast: bool = False,
                   use_soup: bool = False) -> dict:
    """The command's run as one call: ``variants`` ('name:extra cephalo train options') side by side, the winner
    by validation MRE exported to ``out``."""
    args = argparse.Namespace(pack=str(pack), runs=str(runs), seconds=seconds, grace=grace, preset=preset,
                              workers=workers, variant=list(variants), fail_fast=fail_fast)
    results = run_variants(args)
    export_winner(results, Path(runs), Path(out), use_soup)
    return results


def join(parts, dest: Path) -> None:
    parts = sorted(parts, key=lambda p: int(str(p).rsplit("part", 1)[1]))
    with open(dest, "wb") as f:
        for p in parts:
            f.write(Path(p).read_bytes())
    print(f"{dest}: {dest.stat().st_size / 1e6:.1f} MB from {len(parts)} parts")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pack")
    ap.add_argument("--out", default="gpu_out")
    ap.add_argument("--runs", default="gpu_runs")
    ap.add_argument("--seconds", type=float, default=480)
    ap.add_argument("--grace", type=float, default=30, help="seconds past the budget before runs are interrupted")
    ap.add_argument("--preset", default="high_accuracy")
    ap.add_argument("--workers", type=int, default=6)
    ap.add_argument("--variant", action="append", default=[])
    ap.add_argument("--fail-fast", action="store_true", help="stop all variants when one fails")
    ap.add_argument("--soup", action="store_true",
                    help="export the average of all variants' best weights (variants fine-tuned from one start)")
    ap.add_argument("--join", nargs="+", help="join best_fp16.pt.part* files (to --out as a file)")
    a = ap.parse_args()
    if a.join:
        join(a.join, Path(a.out))
        return
    if not a.pack or not a.variant:
        ap.error("--pack and at least one --variant are needed")
    train_variants(a.pack, a.out, a.runs, a.variant, a.seconds, a.grace, a.preset, a.workers, a.fail_fast, a.soup)


if __name__ == "__main__":
    main()
