"""The training loop of both stages: AdamW, CosineAnnealingWarmRestarts with a linear warm-up, gradient clipping,
bf16 autocast + channels_last on CPU, an atomic checkpoint every epoch, resume, fine-tuning from another run, and
the best checkpoint by validation MRE.

:class:`Trainer` trains the first stage (whole images -> heatmaps). What differs for another task (the local
stage, :class:`train.local_stage.LocalTrainer`) is in a few methods it overrides: ``_setup_task`` (data and model),
``_loss`` (one batch), ``validate`` / ``_val_record``, ``_task_state`` and ``_check_compatible``; the loop, the
schedule, checkpoints, resume and deadlines are this class's, for both."""
from __future__ import annotations

import json
import logging
import math
import multiprocessing
import os
import signal
import threading
import time
import warnings
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader
from tqdm.auto import tqdm

from sdk.decode import input_to_heatmap
from sdk.errors import ModelError, cause
from sdk.schemas import Schema, get_schema

from .checkpoint import FORMAT, load_checkpoint, save_atomic
from .config import TrainConfig
from .data.augment import AugmentConfig, with_processing
from .data.cache import ImageCache
from .data.dataset import EpochSampler, LandmarkDataset
from .data.readers import Sample
from .evaluate import evaluate
from .losses import combined_loss, pair_loss
from .model import HeatmapNet, build_model, model_from_checkpoint  # noqa: F401  (re-exported)

log = logging.getLogger("cephalo.train")


def split_train_val(samples: Sequence[Sample], val_count: int, seed: int):
    """A fixed random carve of ``val_count`` samples (sorted by id first, so the split depends on ids only)."""
    samples = sorted(samples, key=lambda s: s.id)
    if val_count <= 0:
        return list(samples), []
    if val_count >= len(samples):
        raise ValueError(f"val_count {val_count} leaves no training images out of {len(samples)}")
    order = np.random.default_rng(seed).permutation(len(samples))
    val_idx = set(order[:val_count].tolist())
    return ([s for i, s in enumerate(samples) if i not in val_idx], [s for i, s in enumerate(samples) if i in val_idx])


def autocast_dtype(cfg: TrainConfig, device: torch.device):
    if cfg.amp == "off":
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if cfg.amp == "bf16" or torch.ops.mkldnn._is_mkldnn_bf16_supported():
        # bf16 pays only on cores with native bf16 (AVX-512 BF16 / AMX); elsewhere its emulation is far slower than
        # fp32, so 'auto' keeps fp32 there (lab/TRAINING.md).
        return torch.bfloat16
    return None


class Trainer:
    """Trains ``cfg`` on ``train_samples``; writes ``last.pt``, ``best.pt`` and ``history.jsonl`` into ``run_dir``.

    ``cache``: where decoded, resized images come from (an :class:`ImageCache` under ``cache_dir`` by default, or a
    data pack's). ``checkpoint_every_s``: write ``last.pt``/``best.pt`` at most this often (0 = every epoch); on a
    fast GPU an epoch takes about a second and writing 360 MB each epoch would cost more than the training. The
    best weights are held in memory between writes, and both files are written when ``fit`` returns.
    """

    def __init__(self, cfg: TrainConfig, train_samples: Sequence[Sample], val_samples: Sequence[Sample],
                 run_dir: Path, cache_dir: Optional[Path] = None, device: Optional[str] = None, data_info: str = "",
                 cache=None, checkpoint_every_s: float = 0.0, clock: Callable[[], float] = time.perf_counter):
        self.cfg = cfg
        self.clock = clock      # seconds; every time-based decision reads it (tests pass a fake one)
        self.schema: Schema = self._schema()
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if self.device.type == "cpu":
            torch.set_num_threads(cfg.threads or os.cpu_count() or 1)
        else:
            torch.backends.cudnn.benchmark = True  # fixed input size: pick the fastest kernels once
        torch.manual_seed(cfg.draw_seed)
        self.checkpoint_every_s = float(checkpoint_every_s)
        self._last_save = -math.inf
        self._best_weights: Optional[Dict] = None   # best model weights (CPU copy) not yet written
        self.data_info = data_info
        self.init_info = ""      # where the starting weights came from (--init), kept across resumes
        self.val_samples = list(val_samples)
        self._setup_task(list(train_samples), cache, cache_dir)     # self.train_set, self.model
        self.model = self.model.to(self.device)
        if cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.sched = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(self.opt, T_0=cfg.t0, T_mult=2,
                                                                          eta_min=cfg.lr * 1e-3)
        self.amp_dtype = autocast_dtype(cfg, self.device)
        self.epoch = 0           # epochs completed
        self.best_mre = math.inf
        self.history: List[Dict] = []
        self.sampler = EpochSampler(len(self.train_set), cfg.draw_seed)
        self._loader: Optional[DataLoader] = None
        self._sigchld = None            # SIGCHLD disposition to restore when the loader's workers stop

    # -- the task: what the first stage trains on and how (overridden by other tasks) --------------------------------
    def _schema(self) -> Schema:
        return get_schema(self.cfg.schema)

    def _setup_task(self, train_samples: List[Sample], cache, cache_dir: Optional[Path]) -> None:
        """``self.train_set`` (a dataset with ``set_epoch``) and ``self.model`` for this task."""
        cfg = self.cfg
        for s in train_samples + self.val_samples:
            if s.points.shape != (self.schema.k, 2):
                raise ValueError(f"sample {s.id} has {s.points.shape[0]} points, schema {self.schema.id} has "
                                 f"{self.schema.k}")
        if cache is None and cache_dir is None:
            raise ValueError("give cache_dir or cache")
        self.cache = cache if cache is not None else ImageCache(cache_dir, cfg.preprocessing)
        if self.cache.key != cfg.preprocessing.key:
            raise ValueError(f"the images given were resized by {self.cache.key}; the config needs "
                             f"{cfg.preprocessing.key}")
        self.eval_kw = dict(stride=cfg.heatmap_stride, sigma=cfg.sigma, pre=cfg.preprocessing)
        if cfg.pair_weight > 0 and cfg.pair_deg <= 0:
            raise ValueError(f"pair weight {cfg.pair_weight} needs turned pairs: a pair angle above 0 (--pair-deg)")
        if not 0 < cfg.aug_scale_min <= cfg.aug_scale_max:
            raise ValueError(f"augmentation scale range {cfg.aug_scale_min}..{cfg.aug_scale_max} is not 0 < min <= max")
        aug = (with_processing(AugmentConfig(hflip_p=cfg.hflip_p, scale=(cfg.aug_scale_min, cfg.aug_scale_max),
                                             artifacts_p=cfg.aug_artifacts_p),
                               cfg.aug_processing_p, cfg.aug_gamma_max, px_scale=cfg.input_size / 384)
               if cfg.augment else None)
        self.train_set = LandmarkDataset(train_samples, self.cache, augment=aug, seed=cfg.draw_seed,
                                         pair_deg=cfg.pair_deg, **self.eval_kw)
        self.model = build_model(cfg, self.schema.k)

    def _loss(self, batch) -> Tuple[torch.Tensor, Dict[str, float], int]:
        """(loss, its parts, images) of one training batch; with turned pairs, both views in one pass."""
        cfg = self.cfg
        pairs = "turn" in batch
        keys = ("image", "heatmaps", "points", "visible", "labelled")
        x, target, points, vis, labelled = (torch.cat([batch[k], batch[k + "2"]]) if pairs else batch[k]
                                            for k in keys)
        x, target, vis, labelled = (t.to(self.device, non_blocking=True) for t in (x, target, vis, labelled))
        if cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        txy = torch.as_tensor(input_to_heatmap(points.numpy(), cfg.heatmap_stride),
                              dtype=torch.float32, device=self.device)
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            pred = self.model(x)
        loss, parts = combined_loss(pred, target, txy, vis, cfg.sigma, cfg.focal_weight, cfg.coord_weight,
                                    cfg.softargmax_beta, labelled=None if bool(labelled.all()) else labelled)
        if pairs and cfg.pair_weight > 0:
            n = len(batch["turn"])
            both = vis[:n] * vis[n:] * labelled[:n] * labelled[n:]
            turn = pair_loss(pred[:n], pred[n:], batch["turn"].to(self.device), both, cfg.heatmap_stride,
                             cfg.softargmax_beta)
            loss = loss + cfg.pair_weight * turn
            parts["turn"] = float(turn.detach())
        return loss, parts, len(x)

    def _val_record(self, val: Dict) -> Dict:
        """The history fields of one validation (``val_mre_mm`` and ``val_sdr2`` always)."""
        return dict(val_mre_mm=val["mre_mm"], val_sdr2=val["sdr"]["2mm"], val_mre_input_px=val["mre_input_px"])

    def _task_state(self) -> Dict:
        """What a checkpoint of this task holds beside the weights, optimizer, schedule and history."""
        return {"config": self.cfg.to_dict(), "schema": self.schema.to_dict(), "stage": "first"}

    def _check_compatible(self, ck: Dict, path: Path, init: bool) -> None:
        """Refuse a checkpoint this run cannot resume from (``init``: or start from)."""
        if ck["schema"] != self.schema.to_dict():
            raise ModelError(f"checkpoint {path} is for schema {ck['schema'].get('id')!r}, not {self.schema.id!r}")
        if init:
            src = TrainConfig.from_dict(ck["config"])
            for key in ("backbone", "heatmap_stride", "channels"):
                if getattr(src, key) != getattr(self.cfg, key):
                    raise ModelError(f"checkpoint {path} has {key}={getattr(src, key)!r}; this run has "
                                     f"{key}={getattr(self.cfg, key)!r}")

    def _load(self, path: Path) -> Dict:
        if Path(path).suffix.lower() == ".onnx":     # a shipped model: its weights read back (train.from_onnx)
            from .from_onnx import checkpoint_from_onnx

            return checkpoint_from_onnx(path)
        return load_checkpoint(path)

    def _recalibrate(self, images: int = 32, batch: int = 8) -> int:
        """BatchNorm statistics from ``images`` unaugmented training inputs (after ``--init model.onnx``), read
        ``batch`` at a time (the statistics are accumulated over all of them, so the batch size only bounds memory)."""
        from .from_onnx import recalibrate_batchnorm

        ds = self.train_set
        plain = LandmarkDataset(ds.samples[:images], ds.cache, stride=ds.stride, sigma=ds.sigma, pre=ds.pre)
        batches = (torch.from_numpy(np.stack([plain.input_and_points(j)[0]
                                              for j in range(i, min(i + batch, len(plain)))])).to(self.device)
                   for i in range(0, len(plain), batch))
        return recalibrate_batchnorm(self.model, batches)

    @property
    def loader(self) -> DataLoader:
        """One loader for the whole run; its workers persist across epochs (starting them costs ~0.1 s each)."""
        if self._loader is None:
            cfg = self.cfg
            batches = BatchSampler(self.sampler, cfg.batch_size, drop_last=len(self.train_set) > cfg.batch_size)
            # forkserver, not fork: a process that already runs inference runtimes' thread pools (onnxruntime,
            # OpenVINO: conversion checks, tests) can crash when forked; Windows and macOS spawn anyway
            ctx = ("forkserver" if cfg.workers > 0 and "forkserver" in multiprocessing.get_all_start_methods()
                   else None)
            if cfg.workers > 0 and threading.current_thread() is threading.main_thread():
                self._sigchld = signal.getsignal(signal.SIGCHLD)   # torch replaces it while workers run
            self._loader = DataLoader(self.train_set, batch_sampler=batches, num_workers=cfg.workers,
                                      persistent_workers=cfg.workers > 0, pin_memory=self.device.type == "cuda",
                                      multiprocessing_context=ctx)
        return self._loader

    # -- checkpoints ---------------------------------------------------------------------------------------------
    def state(self, weights_only: bool = False) -> Dict:
        """The checkpoint dict; ``weights_only`` leaves out the optimizer and scheduler (``best.pt``)."""
        st = {"format": FORMAT, "model": self.model.state_dict(), "epoch": self.epoch, **self._task_state(),
              "best_mre_mm": self.best_mre, "history": self.history, "data": self.data_info,
              "init": self.init_info, "torch": str(torch.__version__)}
        if not weights_only:
            st.update(optimizer=self.opt.state_dict(), scheduler=self.sched.state_dict())
        return st

    def _save(self, force: bool = False) -> None:
        now = self.clock()
        if not force and now - self._last_save < self.checkpoint_every_s:
            return
        if self._best_weights is not None:
            best = self.state(weights_only=True)
            best.update(model=self._best_weights["model"], epoch=self._best_weights["epoch"],
                        history=self.history[:self._best_weights["epoch"]])
            save_atomic(best, self.run_dir / "best.pt")
            self._best_weights = None
        save_atomic(self.state(), self.run_dir / "last.pt")
        self._last_save = self.clock()

    def resume(self, path: Path) -> None:
        ck = self._load(path)
        self._check_compatible(ck, path, init=False)
        self.model.load_state_dict(ck["model"])
        self.opt.load_state_dict(ck["optimizer"])
        self.sched.load_state_dict(ck["scheduler"])
        self.epoch = int(ck["epoch"])
        self.best_mre = float(ck.get("best_mre_mm", math.inf))
        self.history = list(ck.get("history", []))
        self.init_info = str(ck.get("init", ""))
        log.info("resumed %s at epoch %d (best val MRE %.3f mm)", path, self.epoch, self.best_mre)

    def init_from(self, path: Path) -> str:
        """Start from another run's weights (fine-tuning: the bundled model on a clinic's own images, or on more
        data). The optimizer and schedule start fresh; the architecture and schema must match. Returns a line
        naming the source, kept in the checkpoints' ``init``."""
        ck = self._load(path)
        self._check_compatible(ck, path, init=True)
        try:
            self.model.load_state_dict(ck["model"])
        except RuntimeError as e:
            raise ModelError(f"checkpoint {path} weights do not fit this model: {cause(e)}") from e
        if ck.get("recalibrate_bn"):
            self._recalibrate()
        val = float(ck.get("best_mre_mm", math.inf))
        path = Path(path)
        name = f"{path.parent.name}/{path.name}" if path.parent.name else path.name   # the run folder says which
        # the source's own origin too, so a chain of fine-tunes stays traceable from the last checkpoint
        earlier = str(ck.get("init") or "")
        self.init_info = (f"initialised from {name} (epoch {ck['epoch']}"
                          + (f", val MRE {val:.3f} mm)" if math.isfinite(val) else ")")
                          + (f"; that one {earlier}" if earlier else ""))
        log.debug(self.init_info)
        return self.init_info

    # -- loop ----------------------------------------------------------------------------------------------------
    def train_epoch(self, progress: bool = True) -> Dict:
        cfg = self.cfg
        self.model.train()
        self.train_set.set_epoch(self.epoch)
        self.sampler.set_epoch(self.epoch)
        loader = self.loader
        n_steps = len(loader) if not cfg.max_steps_per_epoch else min(len(loader), cfg.max_steps_per_epoch)
        sums: Dict[str, float] = {}
        n_img, t0 = 0, self.clock()
        bar = tqdm(total=n_steps, desc=f"epoch {self.epoch + 1}/{cfg.epochs}", disable=not progress, leave=False)
        for step, batch in enumerate(loader):
            if step >= n_steps:
                break
            loss, parts, n_batch = self._loss(batch)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss is {float(loss)} at epoch {self.epoch + 1} step {step}")
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            self._set_lr(self.epoch + step / n_steps, n_steps)
            self.opt.step()
            parts["loss"] = float(loss.detach())
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v * n_batch
            n_img += n_batch
            bar.set_postfix(loss=f"{parts['loss']:.4f}", lr=f"{self.opt.param_groups[0]['lr']:.2e}")
            bar.update(1)
        bar.close()
        dt = self.clock() - t0
        out = {k: v / max(n_img, 1) for k, v in sums.items()}
        out.update(sec_per_img=dt / max(n_img, 1), epoch_sec=dt)
        return out

    def _set_lr(self, t: float, n_steps: int) -> None:
        """LR for training position ``t`` (epochs, fractional): the cosine schedule, times a linear warm-up over
        the first ``cfg.warmup_epochs`` (large batches and stride-2 heatmaps spiked at the full initial LR)."""
        with warnings.catch_warnings():
            # The schedule is set before each optimizer step on purpose (the step must use it).
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step\\(\\)` before")
            self.sched.step(t)
        w = self.cfg.warmup_epochs
        if w > 0 and t < w:
            scale = min(1.0, (t + 1.0 / max(1, n_steps)) / w)
            for g in self.opt.param_groups:
                g["lr"] *= scale

    def validate(self) -> Optional[Dict]:
        if not self.val_samples:
            return None
        return evaluate(self.model, self.val_samples, self.cache, list(self.schema.names),
                        autocast_dtype=self.amp_dtype, batch_size=self.cfg.batch_size, **self.eval_kw)

    def fit_epochs_to_time(self, seconds: float, progress: bool = True, calib_epochs: int = 3) -> int:
        """Set ``cfg.epochs`` so the whole run ends within ``seconds`` from now (for a machine lent for a fixed
        time): trains ``calib_epochs`` epochs, times the last of them, and re-plans the LR schedule for the new
        length. Returns the new epoch count. Only for a fresh run (the schedule of a resumed one is kept)."""
        if self.epoch:
            raise ValueError("fit_epochs_to_time is for a fresh run, not a resumed one")
        start = self.clock()
        self.fit(progress, stop_after=1, final_save=False)      # warm-up: workers, kernel choice, first save
        t1 = self.clock()
        self.fit(progress, stop_after=max(1, calib_epochs - 1), final_save=False)
        per_epoch = (self.clock() - t1) / max(1, calib_epochs - 1)
        left = seconds - (self.clock() - start)
        epochs = max(self.epoch + 1, self.epoch + int(left * 0.97 / per_epoch))
        self.cfg = self.cfg.override(epochs=epochs, restart_period=self.cfg.restart_period or max(1, epochs // 3))
        self.sched = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(self.opt, T_0=self.cfg.t0, T_mult=2,
                                                                          eta_min=self.cfg.lr * 1e-3)
        self.sched.step(self.epoch)
        log.info("%.2f s per epoch: %d epochs fit in %.0f s", per_epoch, epochs, seconds)
        return epochs

    def fit(self, progress: bool = True, stop_after: Optional[int] = None, deadline: Optional[float] = None,
            final_save: bool = True) -> List[Dict]:
        """Train until ``cfg.epochs`` (or ``stop_after`` more epochs, or until an epoch would end after
        ``deadline``, a ``self.clock()`` value: ``time.perf_counter()`` by default); checkpoints as
        ``checkpoint_every_s`` says and at the end."""
        target = self.cfg.epochs if stop_after is None else min(self.cfg.epochs, self.epoch + stop_after)
        started = self.clock()
        first = self.epoch
        try:
            self._fit_loop(progress, target, started, first, deadline)
        except BaseException:  # interrupted (Ctrl-C, SIGINT from a driver): keep what was trained
            if self.epoch > first:
                self._save(force=True)
            raise
        finally:
            if final_save:
                self.close_workers()
        if final_save and self.epoch > first:
            self._save(force=True)
        return self.history

    def close_workers(self) -> None:
        """Stop the loader's persistent worker processes now (they live across epochs within a run) and give the
        process back the SIGCHLD disposition it had: PyTorch's handler stayed armed after training, and a later
        child process's exit then crashed the process (SIGSEGV, seen in the test suite)."""
        it = getattr(self._loader, "_iterator", None) if self._loader is not None else None
        if it is not None and hasattr(it, "_shutdown_workers"):
            it._shutdown_workers()
        self._loader = None
        if self._sigchld is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGCHLD, self._sigchld)     # the disposition the process had before
            self._sigchld = None

    def _fit_loop(self, progress, target, started, first, deadline) -> None:
        while self.epoch < target:
            if deadline is not None and self.epoch > first:
                per_epoch = (self.clock() - started) / (self.epoch - first)
                if self.clock() + per_epoch > deadline:
                    log.warning("stopping at epoch %d: the next epoch would pass the deadline", self.epoch)
                    break
            tr = self.train_epoch(progress)
            val = self.validate()
            self.epoch += 1
            rec = {"epoch": self.epoch, "lr": self.opt.param_groups[0]["lr"], "epoch_sec": tr["epoch_sec"],
                   **{f"train_{k}": v for k, v in tr.items() if k != "epoch_sec"}}
            if val is not None:
                rec.update(self._val_record(val))
            self.history.append(rec)
            improved = val is not None and val["mre_mm"] < self.best_mre
            if improved:
                self.best_mre = val["mre_mm"]
            if improved or val is None:
                self._best_weights = {"epoch": self.epoch, "model": {k: v.detach().to("cpu", copy=True)
                                                                     for k, v in self.model.state_dict().items()}}
            self._save()
            with open(self.run_dir / "history.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(rec) + "\n")
            done = self.epoch - first
            eta = (self.clock() - started) / done * (target - self.epoch)
            msg = (f"epoch {self.epoch}/{self.cfg.epochs} loss {tr['loss']:.4f} ({tr['sec_per_img']:.3f} s/img)"
                   + (f" val MRE {rec['val_mre_mm']:.3f} mm SDR@2mm {rec['val_sdr2']:.1f}%" if val else "")
                   + (" *best*" if improved else "") + f" ETA {eta / 3600:.2f} h")
            if progress:
                tqdm.write(msg)      # above the bar; logging it as well printed every line twice
            else:
                log.info(msg)
