"""The recipe of the bundled model (``sdk/models/isbi19_default_int8*.onnx``), every step from the ISBI 2015 data.

    python recipes/isbi19_default.py --data ../shared/data/isbi2015 --work runs/recipe [--install] [--list]
        [--from STEP] [--dry-run]

Each step is the command that made the shipped file, run in order; a step whose output exists is skipped, so an
interrupted run resumes. Step ``gpu_train`` trains the first stage from scratch for 465 s on a GPU (an H200 here;
on a 2-core CPU it would take days): run this recipe on a machine with a GPU, or bring ``w32_best.pt`` from one
(``--from finetune_zoom``). Step ``finetune_mean`` moves the first stage from the senior annotator's labels to the
mean of both annotators (8 epochs, about 7 minutes on a 2-core CPU with bf16). ``--install`` replaces the bundled files (and the model card) with the rebuilt ones.
What each step is for and what it measured: ``lab/TRAINING.md`` and the model card's notes.
"""
from __future__ import annotations

import argparse
import glob
import shlex
import subprocess
import sys
from pathlib import Path
from typing import List, Tuple

ROOT = Path(__file__).resolve().parents[1]
FT = ["--epochs", "8", "--restart-period", "8", "--lr", "1.5e-4", "--warmup-epochs", "0.5", "--batch-size", "8",
      "--aug-scale-min", "0.75", "--aug-scale-max", "1.3"]


def steps(data: Path, work: Path, install: bool) -> List[Tuple[str, List[str], Path]]:
    """(name, argv, the output whose presence marks the step done)."""
    cephalo = [sys.executable, "-m", "cephalo"]
    senior_first = work / "bundle_ft320" / "model_int8.onnx"     # the first stage on the senior's labels
    first = work / "bundle_mean" / "model_int8.onnx"              # ... fine-tuned on the clinicians' mean
    local = (ROOT / "sdk" / "models" / "isbi19_default_int8.local.onnx" if install
             else work / "bundle_local" / "model_int8.local.onnx")
    challenge_local = (ROOT / "sdk" / "models" / "isbi19_default_int8.challenge.local.onnx" if install
                       else work / "bundle_local_challenge" / "model_int8.local.onnx")
    return [
        ("pack384", cephalo + ["pack", "--data", str(data), "--out", str(work / "isbi_train_384.npz"),
                               "--input-size", "384"], work / "isbi_train_384.npz"),
        ("gpu_train", [sys.executable, str(ROOT / "scripts" / "gpu_train.py"), "--pack",
                       str(work / "isbi_train_384.npz"), "--out", str(work / "gpu_out"), "--runs",
                       str(work / "gpu_runs"), "--seconds", "465", "--grace", "20", "--workers", "6",
                       "--variant", "a:"], work / "gpu_out"),
        ("gpu_join", [sys.executable, str(ROOT / "scripts" / "gpu_train.py"), "--join",
                      str(work / "gpu_out" / "best_fp16.pt.part*"), "--out", str(work / "w32_best.pt")],
         work / "w32_best.pt"),
        ("finetune_zoom", cephalo + ["train", "--data", str(work / "isbi_train_384.npz"), "--out",
                                     str(work / "ft_scale"), "--init", str(work / "w32_best.pt"), *FT],
         work / "ft_scale" / "last.pt"),
        ("pack320", cephalo + ["pack", "--data", str(data), "--out", str(work / "isbi_train_320.npz"),
                               "--input-size", "320"], work / "isbi_train_320.npz"),
        ("finetune_320", cephalo + ["train", "--data", str(work / "isbi_train_320.npz"), "--out",
                                    str(work / "ft320"), "--init", str(work / "ft_scale" / "last.pt"),
                                    "--input-size", "320", *FT], work / "ft320" / "last.pt"),
        ("bundle_first", cephalo + ["bundle", str(work / "ft320" / "last.pt"), "--data", str(data), "--work",
                                    str(work / "bundle_ft320")], senior_first),
        # from the INT8 file's own weights (train/from_onnx.py): the FP32 checkpoint of the step above was not kept
        # when the shipped file was made, so the shipped chain went through the file, and so does the recipe
        ("finetune_mean", cephalo + ["train", "--data", str(data), "--split", "train", "--annotators",
                                     "senior,junior", "--out", str(work / "ft320_mean"), "--init", str(senior_first),
                                     "--input-size", "320", *FT], work / "ft320_mean" / "last.pt"),
        ("bundle_mean", cephalo + ["bundle", str(work / "ft320_mean" / "last.pt"), "--data", str(data), "--work",
                                   str(work / "bundle_mean")], first),
        ("train_local", cephalo + ["train-local", "--data", str(data), "--out", str(work / "local_mean120"),
                                   "--annotators", "senior,junior", "--widths", "16,32,64,128", "--patch", "80",
                                   "--first-model", str(first)],
         work / "local_mean120" / "last.pt"),
        ("bundle_local", cephalo + ["bundle-local", str(work / "local_mean120" / "last.pt"), "--data", str(data),
                                    "--first", str(first), "--work", str(work / "bundle_local"),
                                    "--prior-sd", "4"]
         + (["--install"] if install else []), work / "bundle_local" / "model_int8.local.onnx"),
        ("shape_model", [sys.executable, "-m", "train.shape_model", "--data", str(data), "--out",
                         str(ROOT / "sdk" / "shapes" / "isbi19.json" if install else work / "isbi19_shape.json")],
         ROOT / "sdk" / "shapes" / "isbi19.json" if install else work / "isbi19_shape.json"),
        ("calibrate", cephalo + ["calibrate", str(local), "--data", str(data), "--model",
                                 str(ROOT / "sdk" / "models" / "isbi19_default_int8.onnx" if install else first),
                                 "--report", str(work / "calibration.json")], work / "calibration.json"),
        # the option Detector(labels="challenge"): the same local stage on the challenge's ground truth
        ("train_local_challenge", cephalo + ["train-local", "--data", str(data), "--out",
                                             str(work / "local_challenge120"), "--annotators", "challenge",
                                             "--widths", "16,32,64,128", "--patch", "80", "--first-model", str(first)],
         work / "local_challenge120" / "last.pt"),
        ("bundle_local_challenge", cephalo + ["bundle-local", str(work / "local_challenge120" / "last.pt"), "--data",
                                              str(data), "--first", str(first), "--work",
                                              str(work / "bundle_local_challenge"), "--prior-sd", "4",
                                              "--labels", "challenge"] + (["--install"] if install else []),
         challenge_local),
        ("calibrate_challenge", cephalo + ["calibrate", str(challenge_local), "--data", str(data), "--model",
                                           str(ROOT / "sdk" / "models" / "isbi19_default_int8.onnx" if install
                                               else first), "--annotators", "challenge", "--report",
                                           str(work / "calibration_challenge.json")],
         work / "calibration_challenge.json"),
    ]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "isbi2015")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "recipe_isbi19_default")
    ap.add_argument("--install", action="store_true", help="replace the bundled files with the rebuilt ones")
    ap.add_argument("--from", dest="start", default=None, help="start at this step (earlier outputs must exist)")
    ap.add_argument("--list", action="store_true", help="print the steps and exit")
    ap.add_argument("--dry-run", action="store_true", help="print what would run")
    a = ap.parse_args(argv)
    plan = steps(a.data, a.work, a.install)
    names = [n for n, _, _ in plan]
    if a.start is not None and a.start not in names:
        ap.error(f"--from {a.start!r}: the steps are {names}")
    started = a.start is None
    for name, cmd, done in plan:
        started = started or name == a.start
        line = f"[{name}] " + " ".join(shlex.quote(c) for c in cmd)
        if a.list or not started:
            print(line if a.list else f"[{name}] before --from: skipped")
            continue
        if done.exists() and not (a.install and name in ("bundle_local", "calibrate", "shape_model",
                                                         "bundle_local_challenge", "calibrate_challenge")):
            print(f"[{name}] done ({done})")
            continue
        print(line, flush=True)
        if a.dry_run:
            continue
        a.work.mkdir(parents=True, exist_ok=True)
        argv_ = [p for c in cmd for p in (sorted(glob.glob(c)) or [c] if "*" in c else [c])]
        rc = subprocess.run(argv_, cwd=ROOT).returncode
        if rc != 0:
            print(f"[{name}] failed with exit code {rc}; fix and rerun (finished steps are kept)", file=sys.stderr)
            return rc
    return 0


if __name__ == "__main__":
    sys.exit(main())
