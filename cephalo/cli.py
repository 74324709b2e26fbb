"""``cephalo`` console command. Stages are imported inside each sub-command, so ``predict`` never loads torch."""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import List, Optional

import click

from sdk.errors import CephaloError


def _fail(e: Exception):
    raise click.ClickException(str(e))


LABELS_OPTION = click.option(
    "--labels", default="consensus", show_default=True,
    help="Whose landmark conventions to follow: 'consensus' (several clinicians' mean) or 'challenge' (the ISBI "
         "2015 challenge's ground truth, to compare with published results).")


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log more.")
def main(verbose: bool):
    """Cephalometric landmark detection: train, convert, predict, evaluate, benchmark."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s")


def _labels_info(annotators: str, anns, align: bool) -> str:
    return f"{annotators} aligned to {anns[0]}" if align and len(anns) > 1 else annotators


# ---------------------------------------------------------------------------------------------------------- train
@main.command()
@click.option("--data", "data_dir", type=click.Path(path_type=Path), required=True,
              help="Labelled data folder, or a data pack (.npz) from 'cephalo pack'.")
@click.option("--out", "run_dir", type=click.Path(path_type=Path), required=True, help="Run folder (checkpoints).")
@click.option("--preset", type=click.Choice(["high_accuracy", "max_accuracy", "max_speed"]), default="high_accuracy")
@click.option("--format", "fmt", default="auto", help="Data layout: auto | isbi | labelme.")
@click.option("--split", default="train", help="Split(s) of splits.csv to train on, comma-separated ('' = all).")
@click.option("--annotators", default="senior", help="Annotator CSVs to average, comma-separated.")
@click.option("--align-annotators", is_flag=True, default=False,
              help="Move each annotator after the first onto the first's convention (mean offset per landmark, fitted "
                   "on the training images) before averaging; validation scores against the first annotator.")
@click.option("--resume/--no-resume", default=True, help="Continue from OUT/last.pt when it exists.")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None, help="Decoded-image cache folder.")
@click.option("--epochs-now", type=int, default=None, help="Stop after this many more epochs (resumable).")
@click.option("--init", "init_ckpt", type=click.Path(path_type=Path), default=None,
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
@click.option("--seed", type=int, default=None)
@click.option("--amp", type=click.Choice(["auto", "bf16", "off"]), default=None)
@click.option("--threads", type=int, default=None)
@click.option("--workers", type=int, default=None)
@click.option("--hflip-p", type=float, default=None)
@click.option("--aug-scale-min", type=float, default=None, help="Augmentation zoom range, lower end (0.9).")
@click.option("--aug-scale-max", type=float, default=None, help="Augmentation zoom range, upper end (1.1).")
@click.option("--aug-processing-p", type=float, default=None,
              help="Probability of each of CLAHE and unsharp masking (other sites' export processing); 0 = none.")
@click.option("--aug-gamma-max", type=float, default=None, help="Gamma augmentation up to this (1.5), down to 1/it.")
@click.option("--max-steps-per-epoch", type=int, default=None)
@click.option("--no-augment", is_flag=True, default=False)
@click.option("--progress/--no-progress", default=True)
@click.option("--device", default=None, help="torch device (default: cuda when present, else cpu).")
@click.option("--checkpoint-every", type=float, default=0.0, show_default=True,
              help="Write checkpoints at most every N seconds (0 = every epoch); always at the end.")
@click.option("--time-budget", type=float, default=None,
              help="Seconds this (fresh) run may take: the epoch count and LR schedule are fitted to it after timing "
                   "a few epochs, and the run stops before the budget ends.")
def train(data_dir, run_dir, preset, fmt, split, annotators, align_annotators, resume, cache_dir, epochs_now, init_ckpt,
          progress, no_augment, device, checkpoint_every, time_budget, **overrides):
    """Train a heatmap model (resumable; last.pt every epoch, best.pt by validation MRE)."""
    from train.config import PRESETS
    from train.data.cache import default_cache_dir
    from train.data.pack import is_pack, read_pack
    from train.datasets import load_train_val
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
        cache = None
        if is_pack(data_dir):
            if align_annotators:
                raise CephaloError("--align-annotators applies to a data folder; a pack holds the labels it was "
                                   "written with ('cephalo pack --align-annotators')")
            samples, cache, pack_info = read_pack(data_dir, schema.k)
            info = f"{data_dir.name} (pack of {pack_info or 'labelled images'})"
            tr, va = split_train_val(samples, cfg.val_count, cfg.seed)
        else:
            anns = tuple(a for a in annotators.split(",") if a)
            tr, va = load_train_val(data_dir, schema, fmt, [s for s in split.split(",") if s] or None, anns,
                                    cfg.val_count, cfg.seed, align_annotators)
            info = f"{data_dir.name} ({split or 'all'}; {_labels_info(annotators, anns, align_annotators)})"
        info = f"{info}: {len(tr)} train / {len(va)} val images"
        click.echo(info)
        started = time.perf_counter()
        trainer = Trainer(cfg, tr, va, run_dir, cache_dir or default_cache_dir(), device=device, data_info=info,
                          cache=cache, checkpoint_every_s=checkpoint_every)
        resumed = resume and last.is_file()
        if resumed:
            trainer.resume(last)
            if init_ckpt is not None:
                click.echo(f"resuming {last}: --init {init_ckpt} applied when the run started, not again")
        elif init_ckpt is not None:
            click.echo(trainer.init_from(init_ckpt))
        deadline = None
        if time_budget is not None:
            deadline = started + time_budget
            if not resumed:
                n = trainer.fit_epochs_to_time(deadline - time.perf_counter(), progress)
                click.echo(f"time budget {time_budget:.0f} s: {n} epochs")
        (run_dir / "config.json").write_text(json.dumps(trainer.cfg.to_dict(), indent=2))
        trainer.fit(progress=progress, stop_after=epochs_now, deadline=deadline)
        best = (f"best val MRE {trainer.best_mre:.3f} mm" if trainer.val_samples
                else "no validation images: best.pt is the last epoch")
        click.echo(f"done: epoch {trainer.epoch}, {best} -> {run_dir / 'best.pt'}")
    except (CephaloError, ValueError, OSError) as e:
        _fail(e)


# ---------------------------------------------------------------------------------------------------- train-local
@main.command("train-local")
@click.option("--data", "data_dir", type=click.Path(path_type=Path), required=True,
              help="Labelled data folder (full-resolution images; a pack is too coarse for the local stage).")
@click.option("--out", "run_dir", type=click.Path(path_type=Path), required=True, help="Run folder (checkpoints).")
@click.option("--first-model", type=click.Path(path_type=Path), default=None,
              help="First-stage model whose points the local stage starts from in validation (default: the bundled one).")
@click.option("--schema", default="isbi19", show_default=True)
@click.option("--format", "fmt", default="auto")
@click.option("--split", default="train", help="Split(s) of splits.csv, comma-separated ('' = all).")
@click.option("--annotators", default="senior", help="Annotator CSVs to average, comma-separated.")
@click.option("--align-annotators", is_flag=True, default=False,
              help="Move each annotator after the first onto the first's convention (mean offset per landmark, fitted "
                   "on the training images) before averaging; validation scores against the first annotator.")
@click.option("--val-count", type=int, default=30, show_default=True,
              help="Held-out images (the same carve as 'train' with the same seed: the first stage never saw them); "
                   "0 = a final fit on all images with a recipe fixed by an earlier run (no validation, use "
                   "last.pt).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--epochs", type=int, default=40, show_default=True)
@click.option("--epochs-now", type=int, default=None, help="Stop after this many more epochs (resumable).")
@click.option("--patch", type=int, default=96, show_default=True, help="Patch size, fine pixels.")
@click.option("--factor", type=float, default=3.0, show_default=True,
              help="Fine scale over the first stage's input scale. The shipped local stage: 3.0 behind a 384 "
                   "first stage, i.e. 3.6 behind the bundled 320 one (0.21 mm per fine pixel on ISBI).")
@click.option("--widths", default="16,32,64,128", show_default=True,
              help="The patch network's channels at strides 2, 4, 8, 16: the local stage's cost (24,48,96,160 "
                   "takes 2.2x the time).")
@click.option("--lr", type=float, default=2e-3, show_default=True)
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--aug-processing-p", type=float, default=0.0, show_default=True,
              help="Probability of each of CLAHE and unsharp masking on a patch (other sites' export processing).")
@click.option("--aug-gamma-max", type=float, default=1.5, show_default=True,
              help="Gamma augmentation up to this, down to 1/it.")
@click.option("--init", "init_ckpt", type=click.Path(path_type=Path), default=None,
              help="Fine-tune: start from this local-stage checkpoint's weights, keeping its recipe (patch, factor, "
                   "first-stage input, displacements, prior); --epochs, --lr, --seed and the augmentation options "
                   "apply. --patch, --factor and --widths are ignored.")
@click.option("--threads", type=int, default=None)
def train_local(data_dir, run_dir, first_model, schema, fmt, split, annotators, align_annotators, val_count, seed,
                epochs, epochs_now, patch, factor, widths, lr, batch_size, aug_processing_p, aug_gamma_max, init_ckpt,
                threads):
    """Train the local (second) stage: a small patch model that re-reads each first-stage landmark at a finer scale
    (resumable: rerun with the same --out)."""
    import numpy as np

    from sdk import Detector
    from sdk.schemas import get_schema
    from train.data.pack import is_pack
    from train.datasets import load_train_val
    from train.local_stage import LocalConfig, first_stage_points, init_config, train_local_stage

    try:
        if is_pack(data_dir):
            raise CephaloError(f"{data_dir} is a data pack (images at the first stage's input size); the local "
                               f"stage needs the full-resolution data folder")
        sch = get_schema(schema)
        first_input = Detector(first_model, local_stage=False).meta.input_hw
        if val_count < 0:
            raise CephaloError(f"--val-count must be >= 0, got {val_count}")
        anns = tuple(a for a in annotators.split(",") if a)
        tr, va = load_train_val(data_dir, sch, fmt, [s for s in split.split(",") if s] or None, anns, val_count, seed,
                                align_annotators)
        common = dict(epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, aug_processing_p=aug_processing_p,
                      aug_gamma_max=aug_gamma_max)
        if init_ckpt is not None:
            cfg = init_config(init_ckpt, **common)
            click.echo(f"fine-tuning {init_ckpt}: patch {cfg.patch}, factor {cfg.factor} behind a {cfg.input_size} "
                       f"first stage (validation points from the {tuple(first_input)} first stage)")
        else:
            try:
                w = tuple(int(v) for v in widths.split(","))
            except ValueError:
                raise CephaloError(f"--widths {widths!r}: four integers, comma-separated, expected") from None
            if len(w) != 4 or min(w) < 1:
                raise CephaloError(f"--widths {widths!r}: four positive channel counts expected")
            cfg = LocalConfig(input_size=int(first_input[0]), patch=patch, factor=factor, widths=w, **common)
        info = (f"{data_dir.name} ({split or 'all'}; {_labels_info(annotators, anns, align_annotators)}): "
                f"{len(tr)} train / {len(va)} val images")
        click.echo(info)
        first = first_stage_points(first_model, va, threads)
        run_dir.mkdir(parents=True, exist_ok=True)
        if va:
            np.savez(run_dir / "first_stage_val.npz", **first)      # for lab/studies/local_stage_probe.py
        rec = train_local_stage(tr, va, first, sch.k, cfg, run_dir, threads, info, epochs_now, init_ckpt, sch)
        if rec and not va:
            click.echo(f"done: epoch {rec['epoch']} (final fit, no validation) -> {run_dir / 'last.pt'}")
        elif rec:
            click.echo(f"done: epoch {rec['epoch']}, val first stage {rec['first_mre_mm']:.3f} mm -> with the local stage "
                       f"{rec['mre_mm']:.3f} mm -> {run_dir / 'best.pt'}")
    except (CephaloError, ValueError, OSError) as e:
        _fail(e)


@main.command()
@click.option("--data", "data_dir", type=click.Path(path_type=Path), required=True, help="Labelled data folder.")
@click.option("--out", "out_file", type=click.Path(path_type=Path), required=True, help="Pack file (.npz).")
@click.option("--input-size", type=int, default=384, show_default=True, help="Model input size the pack is for.")
@click.option("--schema", default="isbi19", show_default=True)
@click.option("--format", "fmt", default="auto")
@click.option("--split", default="train", help="Split(s) of splits.csv, comma-separated ('' = all).")
@click.option("--annotators", default="senior", help="Annotator CSVs to average, comma-separated.")
@click.option("--align-annotators", is_flag=True, default=False,
              help="As for 'train': offsets fitted on the training carve that 'train' will make with the same "
                   "--val-count and --seed; the carve's validation images keep the first annotator's labels.")
@click.option("--val-count", type=int, default=30, show_default=True, help="With --align-annotators: the carve.")
@click.option("--seed", type=int, default=0, show_default=True, help="With --align-annotators: the carve.")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None, help="Decoded-image cache folder.")
def pack(data_dir, out_file, input_size, schema, fmt, split, annotators, align_annotators, val_count, seed,
         cache_dir):
    """Write a data pack: the labelled images resized for one input size, in one small .npz for 'train --data'
    on another machine."""
    from sdk.schemas import get_schema
    from sdk.preprocess import Preprocessing
    from train.data.cache import ImageCache, default_cache_dir
    from train.data.pack import write_pack
    from train.datasets import load_train_val

    try:
        if out_file.suffix.lower() != ".npz":
            raise ValueError(f"the pack file must end in .npz, got {out_file.name!r}")
        sch = get_schema(schema)
        anns = tuple(a for a in annotators.split(",") if a)
        tr, va = load_train_val(data_dir, sch, fmt, [s for s in split.split(",") if s] or None, anns,
                                val_count if align_annotators else 0, seed, align_annotators)
        samples = tr + va
        cache = ImageCache(cache_dir or default_cache_dir(), Preprocessing((input_size, input_size)))
        labels = _labels_info(annotators, anns, align_annotators)
        if align_annotators and len(anns) > 1:
            labels += f", carve val-count {val_count} seed {seed}"
        info = f"{data_dir.name} {split or 'all'} ({labels}), {sch.id}"
        write_pack(samples, cache, out_file, info)
        click.echo(f"{out_file}: {len(samples)} images at {input_size}, {out_file.stat().st_size / 1e6:.1f} MB")
    except (CephaloError, ValueError, OSError) as e:
        _fail(e)


# ----------------------------------------------------------------------------------------------------------- eval
@main.command("eval")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--data", "data_dir", type=click.Path(path_type=Path), required=True)
@click.option("--split", default="test1",
              help="Split(s) to evaluate, comma-separated; 'val' = the validation carve of 'train' that the "
                   "checkpoint's own --val-count and --seed made (the images it held out).")
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
    from train.datasets import load_folder, load_train_val
    from train.evaluate import evaluate
    from train.trainer import autocast_dtype, model_from_checkpoint

    try:
        ck = load_checkpoint(checkpoint)
        cfg = TrainConfig.from_dict(ck["config"])
        schema = schema_from_dict(ck["schema"])
        model = model_from_checkpoint(ck)
        if split == "val":
            samples = load_train_val(data_dir, schema, fmt, ["train"], tuple(annotators.split(",")), cfg.val_count,
                                     cfg.seed)[1]
            if not samples:
                raise CephaloError(f"{checkpoint} was trained with no validation images (val_count 0)")
        else:
            samples = load_folder(data_dir, schema, fmt, [s for s in split.split(",") if s] or None,
                                  tuple(annotators.split(",")))
        cache = ImageCache(cache_dir or default_cache_dir(), cfg.preprocessing)
        import torch

        m = evaluate(model, samples, cache, list(schema.names), stride=cfg.heatmap_stride, sigma=cfg.sigma,
                     pre=cfg.preprocessing, autocast_dtype=autocast_dtype(cfg, torch.device("cpu")))
        click.echo(format_summary(m, f"{checkpoint} on {split} ({annotators}), epoch {ck['epoch']}"))
        if json_out:
            json_out.write_text(json.dumps(m, indent=2))
    except (CephaloError, ValueError, OSError) as e:
        _fail(e)


# -------------------------------------------------------------------------------------------------------- convert
@main.command()
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True, help="Output folder.")
@click.option("--name", "stem", default="model", help="File name stem of the outputs.")
@click.option("--openvino", is_flag=True, help="Also write OpenVINO IR (FP32).")
@click.option("--int8", is_flag=True, help="NNCF INT8 on the OpenVINO model (IR).")
@click.option("--int8-onnx", is_flag=True, help="NNCF INT8 as one QDQ ONNX file (runs on both runtimes).")
@click.option("--ort-qdq", is_flag=True, help="onnxruntime static QDQ INT8 (per-channel weights).")
@click.option("--calib-data", type=click.Path(path_type=Path), default=None,
              help="Folder of images (or a data folder with images/ and splits.csv) for calibration and checks.")
@click.option("--calib-split", default="train", help="splits.csv split to calibrate on.")
@click.option("--calib-count", type=int, default=100, show_default=True)
@click.option("--check/--no-check", "do_check", default=True, help="Parity checks against the PyTorch model.")
@click.option("--int8-tol", type=float, default=0.5, show_default=True,
              help="Allowed mean INT8-vs-FP32 point shift, model-input pixels.")
@click.option("--eval-data", type=click.Path(path_type=Path), default=None, help="Labelled data for MRE per file.")
@click.option("--eval-split", default="test1")
@click.option("--progress/--no-progress", default=True)
def convert(checkpoint, out_dir, stem, openvino, int8, int8_onnx, ort_qdq, calib_data, calib_split, calib_count,
            do_check, int8_tol, eval_data, eval_split, progress):
    """Checkpoint -> ONNX with metadata (+ OpenVINO IR, INT8), each checked against PyTorch."""
    from convert.pipeline import convert as run_convert

    try:
        samples = None
        if eval_data:
            from sdk.schemas import schema_from_dict
            from train.checkpoint import load_checkpoint
            from train.datasets import load_folder

            samples = load_folder(eval_data, schema_from_dict(load_checkpoint(checkpoint)["schema"]),
                                  split=eval_split.split(","))
        rep = run_convert(checkpoint, out_dir, stem=stem, openvino=openvino, int8=int8, int8_onnx=int8_onnx,
                          ort_qdq=ort_qdq, calib_data=calib_data, calib_split=calib_split or None,
                          calib_count=calib_count, do_check=do_check, int8_tol_input_px=int8_tol,
                          eval_samples=samples, progress=progress)
    except (CephaloError, ValueError, OSError) as e:
        _fail(e)
    for key, e in rep["files"].items():
        line = f"{key:<10} {e['precision']:<5} {e['size_mb']:7.2f} MB  {e['path']}"
        if "parity" in e:
            line += f"  parity: hm {e['parity']['max_heatmap_diff']:.1e}, pts {e['parity']['max_point_diff_px']:.3f} px"
        if "accuracy" in e:
            line += f"  MRE {e['accuracy']['mre_mm']:.3f} mm ({e['accuracy']['mre_change_mm']:+.3f})"
        click.echo(line)


# -------------------------------------------------------------------------------------------------------- predict
@main.command()
@click.argument("images", nargs=-1, required=True)
@click.option("--model", type=click.Path(path_type=Path), default=None, help="Model file (default: bundled).")
@click.option("--backend", type=click.Choice(["auto", "openvino", "onnxruntime"]), default="auto",
              help="auto: OpenVINO when installed, but onnxruntime for fewer than 60 images (it starts ~0.7 s "
                   "sooner, more than OpenVINO's faster reading saves on so few).")
@click.option("--threads", type=int, default=None)
@click.option("--spacing", type=float, default=None, help="mm per pixel (else DICOM tags or ruler points).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Write <name>.json (and .csv / overlay) here, mirroring the inputs' folders; without it, one "
                   "JSON line per image goes to stdout.")
@click.option("--csv", "write_csv", is_flag=True, help="Also write <name>.csv (needs --out).")
@click.option("--overlay", is_flag=True, help="Also write <name>_landmarks.png (needs --out).")
@click.option("--jsonl", "jsonl_path", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Also append every image's record (result or error) to this JSON Lines file.")
@click.option("-r", "--recursive", is_flag=True, help="Read folders' sub-folders too ('**' in patterns).")
@click.option("--skip-done", is_flag=True,
              help="Skip images whose JSON in --out is complete (resume an interrupted run).")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: on a terminal, >= 10 images).")
@click.option("--strict", is_flag=True, help="Exit with 3 also when a result only has landmarks to check.")
@click.option("--fast-decode/--full-decode", default=True, show_default=True,
              help="Decode large JPEGs at reduced scale (~12 ms less per image; points within ~0.1 mm) or in full.")
@click.option("--analysis", "analysis", default=None,
              help="Measurements to report and trace, comma-separated: isbi2015, steiner, downs, tweed, mcnamara, "
                   "ricketts, wits, other (default: all the model's landmarks give).")
@LABELS_OPTION
def predict(images, model, backend, threads, spacing, out_dir, write_csv, overlay, jsonl_path, recursive, skip_done,
            progress, strict, fast_decode, analysis, labels):
    """Detect landmarks on images: files, folders or glob patterns (no torch needed).

    Each image is read on its own: one that fails is named with its reason and the rest go on. A summary ends
    the run. Status per image: ok, check (some landmarks doubtful: listed), flagged (not a cephalogram, or
    landmarks outside the image), failed. Exit code: 0 none failed or flagged, 1 some failed, 3 none failed but
    some flagged (with --strict: or to check), 2 usage error.
    """
    import sys

    from sdk import Detector
    from sdk.spacing import check_spacing

    from .run import collect_inputs, exit_code, pick_backend, run_images

    if (overlay or write_csv or skip_done) and out_dir is None:
        raise click.UsageError("--overlay, --csv and --skip-done need --out (a folder for the files)")
    analyses = _analyses(analysis)
    try:
        if spacing is not None:
            spacing = check_spacing(spacing, "--spacing")
        files, missing = collect_inputs(images, recursive)
        det = Detector(model, backend=pick_backend(backend, len(files), model), threads=threads,
                       fast_decode=fast_decode, labels=labels)
    except CephaloError as e:
        _fail(e)
    counts = {"ok": 0, "check": 0, "flagged": 0, "failed": 0, "skipped": 0}
    for spec, why in missing:
        click.echo(f"{spec}: FAILED: {why}", err=True)
        counts["failed"] += 1
    show_bar = progress if progress is not None else (sys.stderr.isatty() and len(files) >= 10)
    jsonl = open(jsonl_path, "a", encoding="utf-8") if jsonl_path else None
    try:
        with click.progressbar(length=len(files), label="images", file=sys.stderr) if show_bar else _NoBar() as bar:
            for o in run_images(det, files, out_dir, spacing, write_csv, overlay, skip_done, analyses=analyses):
                counts[o.status] += 1
                bar.update(1)
                if jsonl is not None and o.status != "skipped":
                    jsonl.write(json.dumps(o.record()) + "\n")
                    jsonl.flush()
                if out_dir is None:
                    click.echo(json.dumps(o.record()))
                    if o.status == "failed":
                        click.echo(f"{o.file}: FAILED: {o.error}", err=True)
                    continue
                if o.status == "failed":
                    click.echo(f"{o.file}: FAILED: {o.error}", err=True)
                elif not show_bar or o.status in ("check", "flagged"):
                    click.echo(_line(o))
    finally:
        if jsonl is not None:
            jsonl.close()
    n = sum(counts.values())
    summary = (f"{n} image(s): {counts['ok']} ok, {counts['check']} with landmarks to check, {counts['flagged']} "
               f"flagged, {counts['failed']} failed"
               + (f", {counts['skipped']} skipped (done before)" if counts["skipped"] else ""))
    click.echo(summary, err=True)
    sys.exit(exit_code(counts, strict))


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="Folder of result shards (one row per image); a rerun with it skips the images already read.")
@click.option("--address", default=None,
              help="Ray cluster to join (e.g. ray://head:10001 or auto); default: a local one on this machine.")
@click.option("--workers", type=int, default=1, show_default=True, help="Detector actors (one model each).")
@click.option("--threads", type=int, default=1, show_default=True, help="Inference threads per actor.")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "parquet"]), default="jsonl", show_default=True)
@click.option("--model", type=click.Path(path_type=Path), default=None, help="Default: the bundled model.")
@click.option("--backend", default="auto", show_default=True)
@click.option("--spacing", type=float, default=None, help="mm per pixel for every image (else DICOM tags).")
@click.option("-r", "--recursive", is_flag=True, help="Read folders' sub-folders too.")
@click.option("--analysis", default=None, help="Measurements to report, comma-separated (as cephalo predict).")
def archive(inputs, out_dir, address, workers, threads, fmt, model, backend, spacing, recursive, analysis):
    """Read an archive on a Ray cluster: folders, globs, list files (.txt, one path or URL per line) or URLs
    (s3://, gs://, ...). Needs the ray extra (pip install ".[ray]"). Exit code as cephalo predict."""
    import sys

    from sdk.spacing import check_spacing

    from .run import exit_code

    try:
        import ray  # noqa: F401
    except ImportError:
        _fail(CephaloError('cephalo archive needs Ray: pip install ".[ray]"'))
    analyses = _analyses(analysis)
    from .archive import list_inputs, run_archive

    try:
        if spacing is not None:
            spacing = check_spacing(spacing, "--spacing")
        paths, missing = list_inputs(inputs, recursive)
        for spec, why in missing:
            click.echo(f"{spec}: FAILED: {why}", err=True)
        counts = run_archive(paths, out_dir, address=address, workers=workers, threads=threads, model=model,
                             backend=backend, fmt=fmt, spacing=spacing, analyses=analyses)
    except CephaloError as e:
        _fail(e)
    counts["failed"] += len(missing)
    click.echo(f"{sum(counts.values())} image(s): {counts['ok']} ok, {counts['check']} with landmarks to check, "
               f"{counts['flagged']} flagged, {counts['failed']} failed, {counts['skipped']} skipped (done before) "
               f"-> {out_dir}", err=True)
    sys.exit(exit_code(counts))


def _analyses(analysis: Optional[str]) -> Optional[List[str]]:
    """--analysis: comma-separated names of sdk.measurements.ANALYSES (None: all); a usage error otherwise."""
    from sdk.measurements import ANALYSES

    if analysis is None:
        return None
    names = [a.strip() for a in analysis.split(",") if a.strip()]
    if not names or set(names) - set(ANALYSES):
        raise click.UsageError(f"--analysis {analysis!r}: choose from {', '.join(ANALYSES)}")
    return names


class _NoBar:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n):
        pass


def _line(o) -> str:
    """One stdout line per image: its status, why it is flagged, and every file written."""
    files = ", ".join(str(p) for p in o.written)
    if o.status == "skipped":
        return f"{o.file}: skipped (done: {files})"
    res = o.result
    head = f"{o.file}: {o.status.upper() if o.status == 'flagged' else o.status}, {len(res)} landmarks"
    if res.view != "as given":
        head += f" (read {res.view})"
    why = "; ".join(res.messages())
    return head + (f" [{why}]" if why else "") + f" -> {files}"


# --------------------------------------------------------------------------------------------------------- bundle
@main.command()
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--data", "data_dir", type=click.Path(path_type=Path), required=True, help="ISBI 2015 folder.")
@click.option("--work", "work_dir", type=click.Path(path_type=Path), default=Path("results/bundle"), show_default=True)
@click.option("--calib-count", type=int, default=100, show_default=True)
@click.option("--install/--no-install", default=False, show_default=True,
              help="Copy the INT8 file and card into sdk/models (replacing the shipped ones).")
@click.option("--int8-tol", type=float, default=0.5, show_default=True,
              help="Allowed mean INT8-vs-FP32 point shift, model-input pixels.")
@click.option("--notes", default="", help="Text for the card's Notes section.")
def bundle(checkpoint, data_dir, work_dir, calib_count, install, int8_tol, notes):
    """Build the SDK's bundled model: INT8 (NNCF, QDQ ONNX) + FP32 reference, Test1/Test2 accuracy in the file's
    metadata, and the model card."""
    import shutil

    from convert.model_card import embed_accuracy, headline, isbi_accuracy, render
    from convert.pipeline import convert as run_convert
    from sdk.detector import DEFAULT_MODEL, MODELS_DIR

    try:
        rep = run_convert(checkpoint, work_dir, stem="model", int8_onnx=True, calib_data=data_dir,
                          calib_split="train", calib_count=calib_count, int8_tol_input_px=int8_tol)
        results = {"FP32": isbi_accuracy(work_dir / "model.onnx", data_dir, backend="onnxruntime"),
                   "INT8": isbi_accuracy(work_dir / "model_int8.onnx", data_dir, backend="onnxruntime")}
        int8 = work_dir / "model_int8.onnx"
        meta = embed_accuracy(int8, headline(results["INT8"]),
                              {"licence": "CC BY-NC 4.0 (inherited from the ISBI 2015 data)",
                               "fp32_accuracy": headline(results["FP32"])})
        size = int8.stat().st_size / 2**20
        card = render(meta, DEFAULT_MODEL, size, results, notes)
        (work_dir / "MODEL_CARD.md").write_text(card, encoding="utf-8")
        (work_dir / "accuracy.json").write_text(json.dumps({"convert": rep, "isbi": results}, indent=2))
        click.echo(card)
        if install:
            shutil.copyfile(int8, MODELS_DIR / DEFAULT_MODEL)
            shutil.copyfile(work_dir / "MODEL_CARD.md", MODELS_DIR / "MODEL_CARD.md")
            click.echo(f"installed {MODELS_DIR / DEFAULT_MODEL}")
    except (CephaloError, ValueError, OSError) as e:
        _fail(e)


@main.command("bundle-local")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--data", "data_dir", type=click.Path(path_type=Path), required=True, help="ISBI 2015 folder.")
@click.option("--work", "work_dir", type=click.Path(path_type=Path), default=Path("results/bundle_local"),
              show_default=True)
@click.option("--prior-sd", type=float, default=None,
              help="Decode prior around the first-stage point, first-stage input px (default: the checkpoint's).")
@click.option("--first", "first_model", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=None,
              help="First-stage model (a 'bundle' output not yet installed) the accuracy is measured behind; with "
                   "--install it is installed as the bundled model too, since the card describes the pair. "
                   "Default: the bundled one.")
@click.option("--calib-count", type=int, default=100, show_default=True)
@click.option("--install/--no-install", default=False, show_default=True,
              help="Copy the INT8 local stage beside the bundled model and update the model card (replacing the "
                   "shipped ones).")
@click.option("--notes", default="", help="Text for the card's Notes section.")
@click.option("--labels", default="consensus", show_default=True,
              help="The labelling convention the checkpoint learnt: with --install, anything but 'consensus' is "
                   "installed as <model>.<labels>.local.onnx (Detector(labels=...)), leaving the default pair and "
                   "its card alone.")
def bundle_local(checkpoint, data_dir, work_dir, prior_sd, first_model, calib_count, install, notes, labels):
    """Build the bundled model's local stage: FP32 + INT8 (NNCF QDQ) ONNX, Test1/Test2 accuracy of the two stages
    together in its metadata, and the model card with the first stage alone beside it."""
    import shutil

    from convert.local_stage import convert_local
    from convert.model_card import embed_accuracy, headline, isbi_accuracy, render
    from sdk.backends import open_backend
    from sdk.detector import DEFAULT_MODEL, MODELS_DIR
    from sdk.local_stage import local_stage_path
    from sdk.schemas import ISBI19
    from train.datasets import load_folder
    from train.local_stage import load_local_checkpoint

    try:
        ck = load_local_checkpoint(checkpoint)
        first = first_model or MODELS_DIR / DEFAULT_MODEL
        work_dir.mkdir(parents=True, exist_ok=True)
        calib = load_folder(data_dir, ISBI19, split=["train"])[:calib_count]
        files = convert_local(ck, ISBI19.to_dict(), work_dir / "model.local.onnx", calib, prior_sd=prior_sd)
        results = {"INT8, first stage only": isbi_accuracy(first, data_dir, backend="onnxruntime"),
                   "INT8 + local FP32": isbi_accuracy(first, data_dir, backend="onnxruntime", local_stage=files["fp32"]),
                   "INT8 + local INT8": isbi_accuracy(first, data_dir, backend="onnxruntime", local_stage=files["int8"])}
        local_name = local_stage_path(MODELS_DIR / DEFAULT_MODEL, labels).name   # its name once installed
        lmeta = embed_accuracy(files["int8"], headline(results["INT8 + local INT8"]),
                               {"licence": "CC BY-NC 4.0 (inherited from the ISBI 2015 data)",
                                "fp32_accuracy": headline(results["INT8 + local FP32"]),
                                "first_stage": DEFAULT_MODEL})
        meta = open_backend(first, "onnxruntime").meta
        card = render(meta, DEFAULT_MODEL, first.stat().st_size / 2**20, results, notes,
                      local=(lmeta, local_name, files["int8"].stat().st_size / 2**20))
        (work_dir / "MODEL_CARD.md").write_text(card, encoding="utf-8")
        (work_dir / "accuracy.json").write_text(json.dumps({"isbi": results}, indent=2))
        click.echo(card)
        if install:
            default_pair = labels == "consensus"
            if first_model is not None and default_pair:
                shutil.copyfile(first, MODELS_DIR / DEFAULT_MODEL)
                click.echo(f"installed {MODELS_DIR / DEFAULT_MODEL}")
            shutil.copyfile(files["int8"], MODELS_DIR / local_name)
            if default_pair:
                shutil.copyfile(work_dir / "MODEL_CARD.md", MODELS_DIR / "MODEL_CARD.md")
            click.echo(f"installed {MODELS_DIR / local_name}")
    except (CephaloError, ValueError, OSError) as e:
        _fail(e)


@main.command()
@click.argument("local_model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--data", "data_dir", type=click.Path(path_type=Path), required=True, help="ISBI-layout data folder.")
@click.option("--model", "first_model", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="First-stage model the local stage runs behind (default: the bundled one).")
@click.option("--annotators", default="senior,junior", show_default=True,
              help="Reference labels, averaged (the clinicians' consensus by default).")
@click.option("--val-count", type=int, default=30, show_default=True,
              help="The validation carve of the training split (the images neither stage trained on).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--variants", default="", help="Comma-separated variant names or prefixes (default: the cross-site "
                                             "set of train.data.variants).")
@click.option("--tolerance", type=float, default=4.0, show_default=True, help="mm within which a point is right.")
@click.option("--cut", type=float, default=0.5, show_default=True,
              help="Flag points whose probability of being within the tolerance is below this.")
@click.option("--report", type=click.Path(path_type=Path), default=None, help="Write the fit's figures here (JSON).")
@click.option("--write/--no-write", default=True, show_default=True,
              help="Store the calibration in LOCAL_MODEL's metadata (the Detector then reports reliabilities).")
def calibrate(local_model, data_dir, first_model, annotators, val_count, seed, variants, tolerance, cut, report,
              write):
    """Fit the per-point reliability (P(within --tolerance mm of the reference labels)) of a local-stage model on
    held-out images and their cross-site variants, and store it in the model's metadata."""
    from convert.model_card import update_meta
    from sdk import Detector
    from sdk.metrics import auroc
    from sdk.schemas import ISBI19
    from train.calibrate import collect, fit_calibration
    from train.data.variants import CROSS_SITE
    from train.datasets import load_train_val

    try:
        from benchmarks.robustness import pick_variants

        names = pick_variants(variants) if variants else list(CROSS_SITE)
        anns = tuple(a for a in annotators.split(",") if a)
        _, val = load_train_val(data_dir, ISBI19, "auto", ["train"], anns, val_count, seed)
        if not val:
            raise CephaloError("--val-count 0 leaves no held-out images to calibrate on")
        det = Detector(first_model, backend="onnxruntime", local_stage=local_model)
        det.local.calibration = None           # the features are those of the uncalibrated reading
        d = collect(det, val, names)
        within = d["error_mm"] <= tolerance
        info = dict(tolerance_mm=tolerance, cut=cut,
                    fitted_on=f"{data_dir.name} validation carve ({len(val)} images, seed {seed}; {annotators}) x "
                              f"{len(names)} variants")
        cal = fit_calibration(d["features"], d["landmark"], within, ISBI19.k, **info)
        p = cal.probability(d["features"], d["landmark"])
        flagged = (p < cut) | d["flagged_otherwise"]
        far = d["error_mm"] > tolerance
        rep = {"points": int(len(p)), "off_by_more_than_tolerance": int(far.sum()),
               "auroc": auroc(1 - p, far), "flagged": int(flagged.sum()),
               "flagged_precision": float(far[flagged].mean()) if flagged.any() else None,
               "recall": float(flagged[far].mean()) if far.any() else None,
               "over_10mm": int((d["error_mm"] > 10).sum()),
               "over_10mm_unflagged": int(((d["error_mm"] > 10) & ~flagged).sum()),
               "per_variant_mre_mm": {v: float(d["error_mm"][d["variant"] == v].mean()) for v in names},
               "calibration": cal.to_dict()}
        click.echo(json.dumps({k: v for k, v in rep.items() if k != "calibration"}, indent=2))
        if report:
            report.parent.mkdir(parents=True, exist_ok=True)
            report.write_text(json.dumps(rep, indent=2))
        if write:
            update_meta(local_model, extra={"calibration": cal.to_dict()})
            click.echo(f"calibration stored in {local_model}")
    except (CephaloError, ValueError, OSError) as e:
        _fail(e)


@main.command()
@click.option("--model", type=click.Path(path_type=Path), default=None, help="Model file (default: bundled).")
@click.option("--backend", type=click.Choice(["auto", "openvino", "onnxruntime"]), default="auto")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: all).")
@click.option("--port", type=int, default=8000, show_default=True)
@click.option("--workers", type=int, default=None,
              help="Images detected at a time (default: the cores); each uses cores / workers threads.")
@click.option("--max-upload-mb", type=float, default=50.0, show_default=True)
@click.option("--queue", type=int, default=32, show_default=True, help="Requests that may wait; more get 503.")
@LABELS_OPTION
def serve(model, backend, host, port, workers, max_upload_mb, queue, labels):
    """Serve the Detector over HTTP (POST /v1/landmarks) with a page at / that shows the tracing
    (needs the 'serve' extra: pip install ".[serve]")."""
    import os

    from sdk import Detector

    from .serve import Limits, serve as run

    try:
        cores = os.cpu_count() or 1
        n = max(1, workers or cores)
        det = Detector(model, backend=backend, threads=max(1, cores // n), labels=labels)
        click.echo(f"serving {det.model_path.name} ({det.info['backend']}, {labels} labels, {n} worker(s)) on "
                   f"http://{host}:{port}/", err=True)
        run(det, host, port, n, Limits(int(max_upload_mb * 2**20), queue))
    except ImportError as e:
        _fail(CephaloError(f"cephalo serve needs the 'serve' extra (pip install \".[serve]\"): {e}"))
    except CephaloError as e:
        _fail(e)


def _add_bench():
    from benchmarks.cpu_bench import main as bench_main

    main.add_command(bench_main, "bench")


_add_bench()

if __name__ == "__main__":
    main()
