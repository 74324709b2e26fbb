"""The training workflows as Python calls: the first stage (fresh, resumed, fine-tuned or fitted to a time
budget), the local stage, data packs and checkpoint evaluation. ``cephalo train`` / ``train-local`` / ``pack`` /
``eval`` and the recipes call these; each reports through ``log`` (default: this module's logger)."""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence, Tuple

from sdk.errors import CephaloError

from .config import VAL_COUNT, LocalConfig
from .data.readers import missing_per_landmark

_log = logging.getLogger(__name__)
_LOCAL = LocalConfig()
Log = Callable[[str], None]

# What may change when a run is resumed: its length and how it runs, never its recipe.
RESUMABLE = ("epochs", "threads", "workers", "max_steps_per_epoch")



def say_gaps(samples, schema, log: Callable[[str], None], what: str = "the loss and the scores") -> None:
    """Say how many points the labels leave blank, per landmark, and ``what`` they are left out of."""
    gaps = missing_per_landmark(samples, schema)
    if gaps:
        log(f"unlabelled points (blank cells), left out of {what}: "
            + ", ".join(f"{n} {m}" for n, m in gaps.items()))

def names(text: str) -> Tuple[str, ...]:
    """'a,b,' -> ('a', 'b'): the comma-separated lists of the command line (splits, annotators)."""
    return tuple(a.strip() for a in text.split(",") if a.strip())


def labels_info(annotators: Sequence[str], align: bool) -> str:
    """How a run's labels were made, for its log and data_info."""
    text = ",".join(annotators)
    return f"{text} aligned to {annotators[0]}" if align and len(annotators) > 1 else text


def train_first_stage(data_dir: Path, run_dir: Path, *, preset: str = "high_accuracy", fmt: str = "auto",
                      split: str = "train", annotators: str = "senior", align_annotators: bool = False,
                      resume: bool = True, cache_dir: Optional[Path] = None, epochs_now: Optional[int] = None,
                      init: Optional[Path] = None, progress: bool = False, augment: bool = True,
                      device: Optional[str] = None, checkpoint_every: float = 0.0,
                      time_budget: Optional[float] = None, log: Log = _log.info, **overrides):
    """Train (or resume, or fine-tune from ``init``) a heatmap model in ``run_dir``; returns the Trainer.

    ``data_dir``: a labelled folder or a pack (``make_pack``). ``overrides``: :class:`train.config.TrainConfig`
    fields (None = the preset's). On resume the saved recipe is kept; only :data:`RESUMABLE` fields may change."""
    from sdk.schemas import get_schema

    from .checkpoint import load_checkpoint
    from .config import PRESETS, TrainConfig
    from .data.cache import default_cache_dir
    from .data.pack import is_pack, read_pack
    from .datasets import load_train_val
    from .trainer import Trainer, split_train_val

    cfg = PRESETS[preset].override(**overrides)
    if not augment:
        cfg = cfg.override(augment=False)
    last = run_dir / "last.pt"
    resumed = resume and last.is_file()
    if resumed:
        saved = TrainConfig.from_dict(load_checkpoint(last)["config"])
        cfg = saved.override(**{k: overrides[k] for k in RESUMABLE if overrides.get(k) is not None})
    schema = get_schema(cfg.schema)
    cache = None
    if is_pack(data_dir):
        if align_annotators:
            raise CephaloError("--align-annotators applies to a data folder; a pack holds the labels it was "
                               "written with ('cephalo pack --align-annotators')")
        samples, cache, pack_info = read_pack(data_dir, schema.k)
        info = f"{data_dir.name} (pack of {pack_info or 'labelled images'})"
        tr, va = split_train_val(samples, cfg.val_count, cfg.seed)
    else:
        anns = names(annotators)
        tr, va = load_train_val(data_dir, schema, fmt, list(names(split)) or None, anns, cfg.val_count, cfg.seed,
                                align_annotators, gaps=True)
        say_gaps(tr + va, schema, log)
        info = f"{data_dir.name} ({split or 'all'}; {labels_info(anns, align_annotators)})"
    info = f"{info}: {len(tr)} train / {len(va)} val images"
    log(info)
    started = time.perf_counter()
    trainer = Trainer(cfg, tr, va, run_dir, cache_dir or default_cache_dir(), device=device, data_info=info,
                      cache=cache, checkpoint_every_s=checkpoint_every)
    if resumed:
        trainer.resume(last)
        if init is not None:
            log(f"resuming {last}: --init {init} applied when the run started, not again")
    elif init is not None:
        log(trainer.init_from(init))
    deadline = None
    if time_budget is not None:
        deadline = started + time_budget
        if not resumed:
            n = trainer.fit_epochs_to_time(deadline - time.perf_counter(), progress)
            log(f"time budget {time_budget:.0f} s: {n} epochs")
    (run_dir / "config.json").write_text(json.dumps(trainer.cfg.to_dict(), indent=2))
    trainer.fit(progress=progress, stop_after=epochs_now, deadline=deadline)
    best = (f"best val MRE {trainer.best_mre:.3f} mm" if trainer.val_samples
            else "no validation images: best.pt is the last epoch")
    log(f"done: epoch {trainer.epoch}, {best} -> {run_dir / 'best.pt'}")
    return trainer


def parse_widths(widths: str) -> Tuple[int, ...]:
    """'16,32,64,128' -> the local stage's four channel counts."""
    try:
        w = tuple(int(v) for v in widths.split(","))
    except ValueError:
        raise CephaloError(f"--widths {widths!r}: four integers, comma-separated, expected") from None
    if len(w) != 4 or min(w) < 1:
        raise CephaloError(f"--widths {widths!r}: four positive channel counts expected")
    return w


def train_local(data_dir: Path, run_dir: Path, *, first_model: Optional[Path] = None, schema: str = "isbi19",
                fmt: str = "auto", split: str = "train", annotators: str = "senior", align_annotators: bool = False,
                val_count: int = VAL_COUNT, seed: int = _LOCAL.seed, epochs: int = _LOCAL.epochs,
                epochs_now: Optional[int] = None, patch: int = _LOCAL.patch, factor: float = _LOCAL.factor,
                widths: str = ",".join(map(str, _LOCAL.widths)), lr: float = _LOCAL.lr,
                batch_size: int = _LOCAL.batch_size, aug_processing_p: float = _LOCAL.aug_processing_p,
                aug_gamma_max: float = _LOCAL.aug_gamma_max, pair_shift: float = _LOCAL.pair_shift,
                pair_weight: float = _LOCAL.pair_weight, head_scale: bool = False, init: Optional[Path] = None,
                threads: Optional[int] = None, log: Log = _log.info) -> Optional[Dict]:
    """Train the local (second) stage in ``run_dir`` (resumable); returns the last epoch's record."""
    import numpy as np

    from sdk import Detector
    from sdk.schemas import get_schema

    from .data.pack import is_pack
    from .datasets import load_train_val
    from .local_stage import LocalConfig, first_stage_points, init_config, train_local_stage, training_head_size

    if pair_weight > 0 and pair_shift <= 0:
        raise CephaloError(f"--pair-weight {pair_weight} needs shifted pairs: a --pair-shift above 0")
    if is_pack(data_dir):
        raise CephaloError(f"{data_dir} is a data pack (images at the first stage's input size); the local "
                           f"stage needs the full-resolution data folder")
    sch = get_schema(schema)
    first_input = Detector(first_model, local_stage=False).meta.input_hw
    if val_count < 0:
        raise CephaloError(f"--val-count must be >= 0, got {val_count}")
    anns = names(annotators)
    tr, va = load_train_val(data_dir, sch, fmt, list(names(split)) or None, anns, val_count, seed, align_annotators,
                            gaps=True)
    say_gaps(tr + va, sch, log)
    common = dict(epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, aug_processing_p=aug_processing_p,
                  aug_gamma_max=aug_gamma_max, pair_shift=pair_shift, pair_weight=pair_weight)
    if init is not None:
        cfg = init_config(init, **common)
        log(f"fine-tuning {init}: patch {cfg.patch}, factor {cfg.factor} behind a {cfg.input_size} "
            f"first stage (validation points from the {tuple(first_input)} first stage)")
    else:
        cfg = LocalConfig(input_size=int(first_input[0]), patch=patch, factor=factor, widths=parse_widths(widths),
                          head_size=training_head_size(tr, int(first_input[0]), sch) if head_scale else 0.0,
                          **common)
    info = (f"{data_dir.name} ({split or 'all'}; {labels_info(anns, align_annotators)}): "
            f"{len(tr)} train / {len(va)} val images")
    log(info)
    first = first_stage_points(first_model, va, threads)
    run_dir.mkdir(parents=True, exist_ok=True)
    if va:
        np.savez(run_dir / "first_stage_val.npz", **first)      # the validation starting points, for studies
    rec = train_local_stage(tr, va, first, sch.k, cfg, run_dir, threads, info, epochs_now, init, sch)
    if rec and not va:
        log(f"done: epoch {rec['epoch']} (final fit, no validation) -> {run_dir / 'last.pt'}")
    elif rec:
        log(f"done: epoch {rec['epoch']}, val first stage {rec['first_mre_mm']:.3f} mm -> with the local stage "
            f"{rec['mre_mm']:.3f} mm -> {run_dir / 'best.pt'}")
    return rec


def make_pack(data_dir: Path, out_file: Path, *, input_size: int = 384, schema: str = "isbi19", fmt: str = "auto",
              split: str = "train", annotators: str = "senior", align_annotators: bool = False, val_count: int = VAL_COUNT,
              seed: int = 0, cache_dir: Optional[Path] = None, log: Log = _log.info) -> Path:
    """Write a data pack: the labelled images resized for one input size, in one small .npz."""
    from sdk.preprocess import Preprocessing
    from sdk.schemas import get_schema

    from .data.cache import ImageCache, default_cache_dir
    from .data.pack import write_pack
    from .datasets import load_train_val

    if out_file.suffix.lower() != ".npz":
        raise ValueError(f"the pack file must end in .npz, got {out_file.name!r}")
    sch = get_schema(schema)
    anns = names(annotators)
    tr, va = load_train_val(data_dir, sch, fmt, list(names(split)) or None, anns,
                            val_count if align_annotators else 0, seed, align_annotators)
    samples = tr + va
    cache = ImageCache(cache_dir or default_cache_dir(), Preprocessing((input_size, input_size)))
    labels = labels_info(anns, align_annotators)
    if align_annotators and len(anns) > 1:
        labels += f", carve val-count {val_count} seed {seed}"
    write_pack(samples, cache, out_file, f"{data_dir.name} {split or 'all'} ({labels}), {sch.id}")
    log(f"{out_file}: {len(samples)} images at {input_size}, {out_file.stat().st_size / 1e6:.1f} MB")
    return out_file


def evaluate_checkpoint(checkpoint: Path, data_dir: Path, *, split: str = "test1", annotators: str = "senior",
                        fmt: str = "auto", cache_dir: Optional[Path] = None) -> Tuple[Dict, str]:
    """A PyTorch checkpoint's accuracy through the SDK's preprocessing and decoder: (metrics, title). ``split``
    'val' is the validation carve the checkpoint's own run held out."""
    import torch

    from sdk.schemas import schema_from_dict

    from .checkpoint import load_checkpoint
    from .config import TrainConfig
    from .data.cache import ImageCache, default_cache_dir
    from .datasets import load_folder, load_train_val
    from .evaluate import evaluate
    from .model import model_from_checkpoint
    from .trainer import autocast_dtype

    ck = load_checkpoint(checkpoint)
    cfg = TrainConfig.from_dict(ck["config"])
    schema = schema_from_dict(ck["schema"])
    model = model_from_checkpoint(ck)
    anns = names(annotators)
    if split == "val":
        samples = load_train_val(data_dir, schema, fmt, ["train"], anns, cfg.val_count, cfg.seed, gaps=True)[1]
        if not samples:
            raise CephaloError(f"{checkpoint} was trained with no validation images (val_count 0)")
    else:
        samples = load_folder(data_dir, schema, fmt, list(names(split)) or None, anns, gaps=True)
    cache = ImageCache(cache_dir or default_cache_dir(), cfg.preprocessing)
    m = evaluate(model, samples, cache, list(schema.names), stride=cfg.heatmap_stride, sigma=cfg.sigma,
                 pre=cfg.preprocessing, autocast_dtype=autocast_dtype(cfg, torch.device("cpu")))
    gaps = missing_per_landmark(samples, schema)
    if gaps:
        m["unlabelled_per_landmark"] = gaps
    return m, f"{checkpoint} on {split} ({annotators}), epoch {ck['epoch']}"
