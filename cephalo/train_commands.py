"""``cephalo train``, ``train-local``, ``pack`` and ``eval``: argument parsing over :mod:`train.runner`."""
from __future__ import annotations

import json
from pathlib import Path

import click

from train.runner import make_pack
from train.runner import train_local as run_local

from .options import data_options, default_of, progress_option

_PATH = click.Path(path_type=Path)


@click.command()
@click.option("--data", "data_dir", type=_PATH, required=True,
              help="Labelled data folder, or a data pack (.npz) from 'cephalo pack'.")
@click.option("--out", "run_dir", type=_PATH, required=True, help="Run folder (checkpoints).")
@click.option("--preset", type=click.Choice(["high_accuracy", "max_accuracy", "max_speed"]), default="high_accuracy")
@data_options
@click.option("--resume/--no-resume", default=True, help="Continue from OUT/last.pt when it exists.")
@click.option("--cache-dir", type=_PATH, default=None, help="Decoded-image cache folder.")
@click.option("--epochs-now", type=int, default=None, help="Stop after this many more epochs (resumable).")
@click.option("--init", type=_PATH, default=None,
              help="Start from this checkpoint's weights (fine-tuning; fresh optimizer and schedule), or from an "
                   "exported model file (.onnx, the bundled one included; INT8 weights are dequantized).")
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
@click.option("--warmup-epochs", type=float, default=None, help="Linear LR warm-up length (epochs).")
@click.option("--restart-period", type=int, default=None,
              help="LR cosine period in epochs (restarts double it); 0 = epochs // 3. Equal to --epochs: one decay.")
@click.option("--val-count", type=int, default=None)
@click.option("--seed", type=int, default=None, help="The validation carve's seed (and the training's, unless --aug-seed).")
@click.option("--aug-seed", type=int, default=None,
              help="Seed of the augmentation, shuffling and initialisation when it should differ from --seed (runs "
                   "that differ only in their random draws, on the same validation carve).")
@click.option("--amp", type=click.Choice(["auto", "bf16", "off"]), default=None)
@click.option("--threads", type=int, default=None)
@click.option("--workers", type=int, default=None)
@click.option("--hflip-p", type=float, default=None)
@click.option("--aug-scale-min", type=float, default=None, help="Augmentation zoom range, lower end (0.9).")
@click.option("--aug-scale-max", type=float, default=None, help="Augmentation zoom range, upper end (1.1).")
@click.option("--aug-processing-p", type=float, default=None,
              help="Probability of each of CLAHE and unsharp masking (other sites' export processing); 0 = none.")
@click.option("--aug-artifacts-p", type=float, default=None,
              help="Probability of each of other machines' artifacts (shutters, text, a ruler, a tone curve); 0 = none.")
@click.option("--aug-gamma-max", type=float, default=None, help="Gamma augmentation up to this (1.5), down to 1/it.")
@click.option("--pair-deg", type=float, default=None,
              help="Turned pairs: each image also seen turned by up to this many degrees (both views supervised); 0 = "
                   "none.")
@click.option("--pair-weight", type=float, default=None,
              help="Weight of the turned pairs' loss: how far a reading moves when the head turns (0 = none).")
@click.option("--max-steps-per-epoch", type=int, default=None)
@click.option("--no-augment", is_flag=True, default=False)
@progress_option
@click.option("--device", default=None, help="torch device (default: cuda when present, else cpu).")
@click.option("--checkpoint-every", type=float, default=0.0, show_default=True,
              help="Write checkpoints at most every N seconds (0 = every epoch); always at the end.")
@click.option("--time-budget", type=float, default=None,
              help="Seconds this (fresh) run may take: the epoch count and LR schedule are fitted to it after timing "
                   "a few epochs, and the run stops before the budget ends.")
def train(data_dir, run_dir, no_augment, **kw):
    """Train a heatmap model (resumable; last.pt every epoch, best.pt by validation MRE)."""
    from train.runner import train_first_stage

    train_first_stage(data_dir, run_dir, augment=not no_augment, log=click.echo, **kw)


@click.command("train-local")
@click.option("--data", "data_dir", type=_PATH, required=True,
              help="Labelled data folder (full-resolution images; a pack is too coarse for the local stage).")
@click.option("--out", "run_dir", type=_PATH, required=True, help="Run folder (checkpoints).")
@click.option("--first-model", type=_PATH, default=None,
              help="First-stage model whose points the local stage starts from in validation (default: the bundled one).")
@click.option("--schema", default=default_of(run_local, "schema"), show_default=True)
@data_options
@click.option("--val-count", type=int, default=default_of(run_local, "val_count"), show_default=True,
              help="Held-out images (the same carve as 'train' with the same seed: the first stage never saw them); "
                   "0 = a final fit on all images with a recipe fixed by an earlier run (no validation, use "
                   "last.pt).")
@click.option("--seed", type=int, default=default_of(run_local, "seed"), show_default=True)
@click.option("--epochs", type=int, default=default_of(run_local, "epochs"), show_default=True)
@click.option("--epochs-now", type=int, default=None, help="Stop after this many more epochs (resumable).")
@click.option("--patch", type=int, default=default_of(run_local, "patch"), show_default=True,
              help="Patch size, fine pixels.")
@click.option("--factor", type=float, default=default_of(run_local, "factor"), show_default=True,
              help="Fine scale over the first stage's input scale (3.0: a patch pixel is a third of a first-stage "
                   "input pixel).")
@click.option("--widths", default=default_of(run_local, "widths"), show_default=True,
              help="The patch network's channels at strides 2, 4, 8, 16: the local stage's cost.")
@click.option("--lr", type=float, default=default_of(run_local, "lr"), show_default=True)
@click.option("--batch-size", type=int, default=default_of(run_local, "batch_size"), show_default=True)
@click.option("--aug-processing-p", type=float, default=default_of(run_local, "aug_processing_p"), show_default=True,
              help="Probability of each of CLAHE and unsharp masking on a patch (other sites' export processing).")
@click.option("--aug-gamma-max", type=float, default=default_of(run_local, "aug_gamma_max"), show_default=True,
              help="Gamma augmentation up to this, down to 1/it.")
@click.option("--head-scale/--canvas-scale", default=default_of(run_local, "head_scale"), show_default=True,
              help="Cut patches at the head's size (the training images' median, written into the model file; "
                   "the Detector then reads at it) or at the canvas's scale (the bundled local stage's way).")
@click.option("--pair-shift", type=float, default=default_of(run_local, "pair_shift"), show_default=True,
              help="Shifted pairs: each patch also cut around a centre moved by up to this many first-stage input "
                   "px (both supervised); 0 = none.")
@click.option("--pair-weight", type=float, default=default_of(run_local, "pair_weight"), show_default=True,
              help="Weight of the shifted pairs' loss: how far the reading follows its patch's centre (0 = none).")
@click.option("--init", type=_PATH, default=None,
              help="Fine-tune: start from this local-stage checkpoint's weights, keeping its recipe (patch, factor, "
                   "first-stage input, displacements, prior); --epochs, --lr, --seed and the augmentation options "
                   "apply. --patch, --factor and --widths are ignored.")
@click.option("--threads", type=int, default=None)
def train_local(data_dir, run_dir, **kw):
    """Train the local (second) stage: a small patch model that re-reads each first-stage landmark at a finer scale
    (resumable: rerun with the same --out)."""
    run_local(data_dir, run_dir, log=click.echo, **kw)


@click.command()
@click.option("--data", "data_dir", type=_PATH, required=True, help="Labelled data folder.")
@click.option("--out", "out_file", type=_PATH, required=True, help="Pack file (.npz).")
@click.option("--input-size", type=int, default=default_of(make_pack, "input_size"), show_default=True,
              help="Model input size the pack is for.")
@click.option("--schema", default=default_of(make_pack, "schema"), show_default=True)
@data_options
@click.option("--val-count", type=int, default=default_of(make_pack, "val_count"), show_default=True,
              help="With --align-annotators: the carve.")
@click.option("--seed", type=int, default=default_of(make_pack, "seed"), show_default=True,
              help="With --align-annotators: the carve.")
@click.option("--cache-dir", type=_PATH, default=None, help="Decoded-image cache folder.")
def pack(data_dir, out_file, **kw):
    """Write a data pack: the labelled images resized for one input size, in one small .npz for 'train --data'
    on another machine."""
    make_pack(data_dir, out_file, log=click.echo, **kw)


@click.command("eval")
@click.argument("checkpoint", type=_PATH)
@click.option("--data", "data_dir", type=_PATH, required=True)
@click.option("--split", default="test1",
              help="Split(s) to evaluate, comma-separated; 'val' = the validation carve of 'train' that the "
                   "checkpoint's own --val-count and --seed made (the images it held out).")
@click.option("--annotators", default="senior", help="Label sets to average, comma-separated (senior,junior).")
@click.option("--format", "fmt", default="auto")
@click.option("--cache-dir", type=_PATH, default=None)
@click.option("--json-out", type=_PATH, default=None)
def eval_cmd(checkpoint, data_dir, json_out, **kw):
    """Evaluate a PyTorch checkpoint (through the SDK's preprocessing and decoder)."""
    from sdk.metrics import format_summary
    from train.runner import evaluate_checkpoint

    m, title = evaluate_checkpoint(checkpoint, data_dir, **kw)
    click.echo(format_summary(m, title))
    if json_out:
        json_out.write_text(json.dumps(m, indent=2))


COMMANDS = (train, train_local, pack, eval_cmd)
