"""Training throughput of one recipe on the machine at hand: images/s of a full training step (forward, the
project's loss, backward, clipping, AdamW) by batch size, and of the data loader by worker count.

    python scripts/gpu_throughput.py --pack isbi_train_384.npz [--backbone w32] [--batches 8,16,32] [--workers 6,14]

Tells whether a run is bound by the model or by the loader, and what batch size buys, before a lent GPU's
minutes are spent on training.
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from sdk.schemas import get_schema
from train.config import PRESETS
from train.data.augment import AugmentConfig
from train.data.dataset import LandmarkDataset
from train.data.pack import read_pack
from train.losses import combined_loss
from train.trainer import autocast_dtype, build_model


def step_rate(cfg, k: int, batch: int, device: torch.device, steps: int, compile_model: bool = False) -> dict:
    torch.manual_seed(0)
    model = build_model(cfg, k).to(device).to(memory_format=torch.channels_last)
    fwd = torch.compile(model) if compile_model else model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    amp = autocast_dtype(cfg, device)
    s = cfg.input_size
    x = torch.randn(batch, cfg.channels, s, s, device=device).contiguous(memory_format=torch.channels_last)
    h = s // cfg.heatmap_stride
    target = torch.rand(batch, k, h, h, device=device) * 0.1
    txy = torch.rand(batch, k, 2, device=device) * h
    vis = torch.ones(batch, k, device=device)

    def one():
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            pred = fwd(x)
        loss, _ = combined_loss(pred, target, txy, vis, cfg.sigma, cfg.focal_weight, cfg.coord_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()

    t0 = time.perf_counter()
    for _ in range(3):
        one()
    if device.type == "cuda":
        torch.cuda.synchronize()
    warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(steps):
        one()
    if device.type == "cuda":
        torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) / steps
    return {"batch": batch, "compiled": compile_model, "ms_per_step": dt * 1000, "img_per_s": batch / dt,
            "warmup_s": warm}


def loader_rate(pack: str, cfg, workers: int, batch: int, n_batches: int) -> dict:
    schema = get_schema(cfg.schema)
    samples, cache, _ = read_pack(pack, schema.k)
    ds = LandmarkDataset(samples, cache, augment=AugmentConfig(), stride=cfg.heatmap_stride, sigma=cfg.sigma,
                         mean=cfg.mean, std=cfg.std, pad_value=cfg.pad_value, channels=cfg.channels)
    dl = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers, drop_last=True,
                                     persistent_workers=workers > 0)
    it, n = iter(dl), 0
    next(it)
    t0 = time.perf_counter()
    while n < n_batches:
        try:
            next(it)
        except StopIteration:
            it = iter(dl)
            continue
        n += 1
    dt = time.perf_counter() - t0
    return {"workers": workers, "img_per_s": n * batch / dt}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pack", required=True)
    ap.add_argument("--preset", default="high_accuracy")
    ap.add_argument("--backbone", default=None)
    ap.add_argument("--input-size", type=int, default=None)
    ap.add_argument("--heatmap-stride", type=int, default=None)
    ap.add_argument("--batches", default="8,16,32")
    ap.add_argument("--workers", default="6,14")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--compile", action="store_true", help="also time torch.compile at the largest batch")
    ap.add_argument("--json-out", default=None)
    a = ap.parse_args()
    cfg = PRESETS[a.preset].override(backbone=a.backbone, input_size=a.input_size, heatmap_stride=a.heatmap_stride)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    k = get_schema(cfg.schema).k
    res = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
           "config": {"backbone": cfg.backbone, "input_size": cfg.input_size, "stride": cfg.heatmap_stride},
           "steps": [], "loader": []}
    for w in [int(v) for v in a.workers.split(",") if v]:
        r = loader_rate(a.pack, cfg, w, 8, 40)
        res["loader"].append(r)
        print(f"loader {w:2d} workers: {r['img_per_s']:.0f} img/s", flush=True)
    batches = [int(v) for v in a.batches.split(",") if v]
    for b in batches:
        r = step_rate(cfg, k, b, device, a.steps)
        res["steps"].append(r)
        print(f"step batch {b:3d}: {r['ms_per_step']:.1f} ms, {r['img_per_s']:.0f} img/s (warm-up {r['warmup_s']:.1f} s)",
              flush=True)
    if a.compile:
        r = step_rate(cfg, k, batches[-1], device, a.steps, compile_model=True)
        res["steps"].append(r)
        print(f"compiled batch {batches[-1]}: {r['ms_per_step']:.1f} ms, {r['img_per_s']:.0f} img/s "
              f"(compile + warm-up {r['warmup_s']:.0f} s)", flush=True)
    if a.json_out:
        with open(a.json_out, "w", encoding="utf-8") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
