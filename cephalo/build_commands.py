"""``cephalo convert``, ``bundle``, ``bundle-local`` and ``calibrate``: argument parsing over :mod:`convert`."""
from __future__ import annotations

import json
from pathlib import Path

import click

from convert.calibrate import calibrate_local
from convert.tolerances import CALIB_COUNT, INT8_MEAN_TOL_INPUT_PX

from .options import default_of, progress_option

_PATH = click.Path(path_type=Path)
_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)
_INT8_TOL = click.option("--int8-tol", type=float, default=INT8_MEAN_TOL_INPUT_PX, show_default=True,
                         help="Allowed mean INT8-vs-FP32 point shift, model-input pixels.")
_CALIB_COUNT = click.option("--calib-count", type=int, default=CALIB_COUNT, show_default=True)
_NOTES = click.option("--notes", default="", help="Text for the card's Notes section.")


@click.command()
@click.argument("checkpoint", type=_PATH)
@click.option("--out", "out_dir", type=_PATH, required=True, help="Output folder.")
@click.option("--name", "stem", default="model", help="File name stem of the outputs.")
@click.option("--openvino", is_flag=True, help="Also write OpenVINO IR (FP32).")
@click.option("--int8", is_flag=True, help="NNCF INT8 on the OpenVINO model (IR).")
@click.option("--int8-onnx", is_flag=True, help="NNCF INT8 as one QDQ ONNX file (runs on both runtimes).")
@click.option("--ort-qdq", is_flag=True, help="onnxruntime static QDQ INT8 (per-channel weights).")
@click.option("--calib-data", type=_PATH, default=None,
              help="Folder of images (or a data folder with images/ and splits.csv) for calibration and checks.")
@click.option("--calib-split", default="train", help="splits.csv split to calibrate on.")
@_CALIB_COUNT
@click.option("--check/--no-check", "do_check", default=True, help="Parity checks against the PyTorch model.")
@_INT8_TOL
@click.option("--eval-data", type=_PATH, default=None, help="Labelled data for MRE per file.")
@click.option("--eval-split", default="test1")
@progress_option
def convert(checkpoint, out_dir, calib_split, int8_tol, eval_data, eval_split, **kw):
    """Checkpoint -> ONNX with metadata (+ OpenVINO IR, INT8), each checked against PyTorch."""
    from convert.pipeline import convert as run_convert

    samples = None
    if eval_data:
        from sdk.schemas import schema_from_dict
        from train.checkpoint import load_checkpoint
        from train.datasets import load_folder

        samples = load_folder(eval_data, schema_from_dict(load_checkpoint(checkpoint)["schema"]),
                              split=eval_split.split(","))
    rep = run_convert(checkpoint, out_dir, calib_split=calib_split or None, int8_tol_input_px=int8_tol,
                      eval_samples=samples, **kw)
    for key, e in rep["files"].items():
        line = f"{key:<10} {e['precision']:<5} {e['size_mb']:7.2f} MB  {e['path']}"
        if "parity" in e:
            line += f"  parity: hm {e['parity']['max_heatmap_diff']:.1e}, pts {e['parity']['max_point_diff_px']:.3f} px"
        if "accuracy" in e:
            line += f"  MRE {e['accuracy']['mre_mm']:.3f} mm ({e['accuracy']['mre_change_mm']:+.3f})"
        click.echo(line)


@click.command()
@click.argument("checkpoint", type=_PATH)
@click.option("--data", "data_dir", type=_PATH, required=True, help="ISBI 2015 folder.")
@click.option("--work", "work_dir", type=_PATH, default=Path("results/bundle"), show_default=True)
@_CALIB_COUNT
@click.option("--install/--no-install", default=False, show_default=True,
              help="Copy the INT8 file and card into sdk/models (replacing the shipped ones).")
@_INT8_TOL
@_NOTES
def bundle(checkpoint, data_dir, work_dir, **kw):
    """Build the SDK's bundled model: INT8 (NNCF, QDQ ONNX) + FP32 reference, Test1/Test2 accuracy in the file's
    metadata, and the model card."""
    from convert.bundle import bundle_first_stage

    click.echo(bundle_first_stage(checkpoint, data_dir, work_dir, log=click.echo, **kw)["card"])


@click.command("bundle-local")
@click.argument("checkpoint", type=_PATH)
@click.option("--data", "data_dir", type=_PATH, required=True, help="ISBI 2015 folder.")
@click.option("--work", "work_dir", type=_PATH, default=Path("results/bundle_local"), show_default=True)
@click.option("--prior-sd", type=float, default=None,
              help="Decode prior around the first-stage point, first-stage input px (default: the checkpoint's).")
@click.option("--first", "first_model", type=_FILE, default=None,
              help="First-stage model (a 'bundle' output not yet installed) the accuracy is measured behind; with "
                   "--install it is installed as the bundled model too, since the card describes the pair. "
                   "Default: the bundled one.")
@_CALIB_COUNT
@click.option("--install/--no-install", default=False, show_default=True,
              help="Copy the INT8 local stage beside the bundled model and update the model card (replacing the "
                   "shipped ones).")
@_NOTES
@click.option("--labels", default="consensus", show_default=True,
              help="The labelling convention the checkpoint learnt: with --install, anything but 'consensus' is "
                   "installed as <model>.<labels>.local.onnx (Detector(labels=...)), leaving the default pair and "
                   "its card alone.")
def bundle_local(checkpoint, data_dir, work_dir, **kw):
    """Build the bundled model's local stage: FP32 + INT8 (NNCF QDQ) ONNX, Test1/Test2 accuracy of the two stages
    together in its metadata, and the model card with the first stage alone beside it."""
    from convert.bundle import bundle_local_stage

    click.echo(bundle_local_stage(checkpoint, data_dir, work_dir, log=click.echo, **kw)["card"])


@click.command()
@click.argument("local_model", type=_FILE)
@click.option("--data", "data_dir", type=_PATH, required=True, help="ISBI-layout data folder.")
@click.option("--model", "first_model", type=_FILE, default=None,
              help="First-stage model the local stage runs behind (default: the bundled one).")
@click.option("--annotators", default=",".join(default_of(calibrate_local, "annotators")), show_default=True,
              help="Reference labels, averaged (the clinicians' consensus by default).")
@click.option("--val-count", type=int, default=default_of(calibrate_local, "val_count"), show_default=True,
              help="The validation carve of the training split (the images neither stage trained on).")
@click.option("--seed", type=int, default=default_of(calibrate_local, "seed"), show_default=True)
@click.option("--variants", default="", help="Comma-separated variant names or prefixes (default: the cross-site "
                                             "set of train.data.variants).")
@click.option("--tolerance", type=float, default=default_of(calibrate_local, "tolerance"), show_default=True,
              help="mm within which a point is right.")
@click.option("--cut", type=float, default=default_of(calibrate_local, "cut"), show_default=True,
              help="Flag points whose probability of being within the tolerance is below this.")
@click.option("--report", type=_PATH, default=None, help="Write the fit's figures here (JSON).")
@click.option("--write/--no-write", default=True, show_default=True,
              help="Store the calibration in LOCAL_MODEL's metadata (the Detector then reports reliabilities).")
def calibrate(local_model, data_dir, annotators, variants, report, write, **kw):
    """Fit the per-point reliability (P(within --tolerance mm of the reference labels)) of a local-stage model on
    held-out images and their cross-site variants, and store it in the model's metadata."""
    from train.data.variants import pick_variants
    from train.runner import names

    rep = calibrate_local(local_model, data_dir, annotators=names(annotators),
                          variants=pick_variants(variants) if variants else None, write=write, **kw)
    click.echo(json.dumps({k: v for k, v in rep.items() if k != "calibration"}, indent=2))
    if report:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps(rep, indent=2))
    if write:
        click.echo(f"calibration stored in {local_model}")


COMMANDS = (convert, bundle, bundle_local, calibrate)
