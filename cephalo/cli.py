"""``cephalo`` console command. Stages are imported inside each sub-command, so ``predict`` never loads torch."""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click

from sdk.errors import CephaloError


def _fail(e: Exception):
    raise click.ClickException(str(e))


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log more.")
def main(verbose: bool):
    """Cephalometric landmark detection: train, convert, predict, evaluate, benchmark."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s")


# ---------------------------------------------------------------------------------------------------------- train
@main.command()
@click.option("--data", "data_dir", type=click.Path(path_type=Path), required=True, help="Labelled data folder.")
@click.option("--out", "run_dir", type=click.Path(path_type=Path), required=True, help="Run folder (checkpoints).")
@click.option("--preset", type=click.Choice(["high_accuracy", "max_accuracy", "max_speed"]), default="high_accuracy")
@click.option("--format", "fmt", default="auto", help="Data layout: auto | isbi | labelme.")
@click.option("--split", default="train", help="Split(s) of splits.csv to train on, comma-separated ('' = all).")
@click.option("--annotators", default="senior", help="Annotator CSVs to average, comma-separated.")
@click.option("--resume/--no-resume", default=True, help="Continue from OUT/last.pt when it exists.")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None, help="Decoded-image cache folder.")
@click.option("--epochs-now", type=int, default=None, help="Stop after this many more epochs (resumable).")
@click.option("--schema", default=None)
@click.option("--backbone", default=None)
@click.option("--input-size", type=int, default=None)
@click.option("--heatmap-stride", type=int, default=None)
@click.option("--sigma", type=float, default=None)
@click.option("--coord-weight", type=float, default=None)
@click.option("--focal-weight", type=float, default=None)
@click.option("--epochs", type=int, default=None)
@click.option("--batch-size", type=int, default=None)
@click.option("--lr", type=float, default=None)
@click.option("--val-count", type=int, default=None)
@click.option("--seed", type=int, default=None)
@click.option("--amp", type=click.Choice(["auto", "bf16", "off"]), default=None)
@click.option("--threads", type=int, default=None)
@click.option("--workers", type=int, default=None)
@click.option("--hflip-p", type=float, default=None)
@click.option("--max-steps-per-epoch", type=int, default=None)
@click.option("--no-augment", is_flag=True, default=False)
@click.option("--progress/--no-progress", default=True)
def train(data_dir, run_dir, preset, fmt, split, annotators, resume, cache_dir, epochs_now, progress, no_augment,
          **overrides):
    """Train a heatmap model (resumable; last.pt every epoch, best.pt by validation MRE)."""
    from train.config import PRESETS
    from train.data.cache import default_cache_dir
    from train.datasets import load_folder
    from train.trainer import Trainer, split_train_val
    from sdk.schemas import get_schema

    try:
        cfg = PRESETS[preset].override(**overrides)
        if no_augment:
            cfg = cfg.override(augment=False)
        last = run_dir / "last.pt"
        if resume and last.is_file():
            from train.checkpoint import load_checkpoint
            from train.config import TrainConfig

            saved = TrainConfig.from_dict(load_checkpoint(last)["config"])
            # The run's recipe is the saved one; only the length and runtime settings may change on resume.
            cfg = saved.override(**{k: overrides[k] for k in ("epochs", "threads", "workers", "max_steps_per_epoch")
                                    if overrides.get(k) is not None})
        schema = get_schema(cfg.schema)
        samples = load_folder(data_dir, schema, fmt, [s for s in split.split(",") if s] or None,
                              tuple(a for a in annotators.split(",") if a))
        tr, va = split_train_val(samples, cfg.val_count, cfg.seed)
        info = f"{data_dir.name}: {len(tr)} train / {len(va)} val images ({split or 'all'}; {annotators})"
        click.echo(info)
        trainer = Trainer(cfg, tr, va, run_dir, cache_dir or default_cache_dir(), data_info=info)
        if resume and last.is_file():
            trainer.resume(last)
        (run_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
        trainer.fit(progress=progress, stop_after=epochs_now)
        click.echo(f"done: epoch {trainer.epoch}, best val MRE {trainer.best_mre:.3f} mm -> {run_dir / 'best.pt'}")
    except (CephaloError, ValueError, OSError) as e:
        _fail(e)


# ----------------------------------------------------------------------------------------------------------- eval
@main.command("eval")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--data", "data_dir", type=click.Path(path_type=Path), required=True)
@click.option("--split", default="test1", help="Split(s) to evaluate, comma-separated.")
@click.option("--annotators", default="senior", help="Label sets to average, comma-separated (senior,junior).")
@click.option("--format", "fmt", default="auto")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None)
@click.option("--json-out", type=click.Path(path_type=Path), default=None)
def eval_cmd(checkpoint, data_dir, split, annotators, fmt, cache_dir, json_out):
    """Evaluate a PyTorch checkpoint (through the SDK's preprocessing and decoder)."""
    from sdk.metrics import format_summary
    from sdk.schemas import schema_from_dict
    from train.checkpoint import load_checkpoint
    from train.config import TrainConfig
    from train.data.cache import ImageCache, default_cache_dir
    from train.datasets import load_folder
    from train.evaluate import evaluate
    from train.trainer import autocast_dtype, model_from_checkpoint

    try:
        ck = load_checkpoint(checkpoint)
        cfg = TrainConfig.from_dict(ck["config"])
        schema = schema_from_dict(ck["schema"])
        model = model_from_checkpoint(ck)
        samples = load_folder(data_dir, schema, fmt, [s for s in split.split(",") if s] or None,
                              tuple(annotators.split(",")))
        cache = ImageCache(cache_dir or default_cache_dir(), cfg.input_hw)
        import torch

        m = evaluate(model, samples, cache, list(schema.names), stride=cfg.heatmap_stride, sigma=cfg.sigma,
                     mean=cfg.mean, std=cfg.std, pad_value=cfg.pad_value, channels=cfg.channels,
                     autocast_dtype=autocast_dtype(cfg, torch.device("cpu")))
        click.echo(format_summary(m, f"{checkpoint} on {split} ({annotators}), epoch {ck['epoch']}"))
        if json_out:
            json_out.write_text(json.dumps(m, indent=2))
    except (CephaloError, ValueError, OSError) as e:
        _fail(e)


if __name__ == "__main__":
    main()
