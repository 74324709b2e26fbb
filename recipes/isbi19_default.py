"""The recipe of the bundled model (``sdk/models/isbi19_default_int8*.onnx``), every step from the ISBI 2015 data.

    python recipes/isbi19_default.py --data ../shared/data/isbi2015 --work runs/recipe [--install] [--list]
        [--from STEP] [--dry-run]

Each step is one library call, run in order; a step whose output exists is skipped, so an interrupted run resumes.
Step ``gpu_train`` trains the first stage from scratch on a GPU (a 2-core CPU would take days): run this recipe on a
machine with a GPU, or bring ``w32_best.pt`` from one (``--from finetune_zoom``). Step ``finetune_mean`` moves the
first stage from the senior annotator's labels to the mean of both annotators; step ``finetune_artifacts`` then
teaches it other machines' artifacts (shutters, text, rulers, tone curves, CLAHE, unsharp masking): seconds an epoch
on a GPU, about two hours on a 2-core CPU. ``--install`` replaces the bundled
files (and the model card) with the rebuilt ones. What each step is for and what it measured: ``lab/TRAINING.md``
and the model card's notes.
"""
from __future__ import annotations

import argparse
import glob
import sys
from pathlib import Path
from typing import Callable, Dict, List, NamedTuple

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

from convert.bundle import bundle_first_stage, bundle_local_stage  # noqa: E402
from convert.calibrate import calibrate_local  # noqa: E402
from train.runner import make_pack, train_first_stage, train_local  # noqa: E402
from train.shape_model import write_shape_model  # noqa: E402

# The CPU fine-tunes: one cosine decay over 8 epochs after a short warm-up, zoom 0.75-1.3 (wider framing).
FT = dict(epochs=8, restart_period=8, lr=1.5e-4, warmup_epochs=0.5, batch_size=8, aug_scale_min=0.75,
          aug_scale_max=1.3)
GPU_SECONDS = 465
# Other machines' artifacts and processing, each at p = 0.3, from the consensus first stage: cosine cycles of 60
# and 120 epochs (the lent H200 ran them in 290 s), the best epoch by validation MRE.
ART = dict(input_size=320, epochs=180, restart_period=60, lr=1.5e-4, warmup_epochs=1, batch_size=16,
           aug_scale_min=0.75, aug_scale_max=1.3, aug_artifacts_p=0.3, aug_processing_p=0.3)
LOCAL = dict(annotators="senior,junior", widths="16,32,64,128", patch=80)
# Steps that --install reruns even when their work-folder output exists: they write into sdk/.
INSTALLING = ("bundle_local", "calibrate", "shape_model", "bundle_local_challenge", "calibrate_challenge")


class Step(NamedTuple):
    name: str
    call: Callable
    args: tuple
    kwargs: Dict
    done: Path            # the output whose presence marks the step done

    def text(self) -> str:
        shown = [repr(str(a)) for a in self.args] + [f"{k}={str(v)!r}" for k, v in self.kwargs.items()]
        return f"[{self.name}] {self.call.__module__}.{self.call.__name__}({', '.join(shown)})"


def _gpu_train(pack: Path, out: Path, runs: Path) -> None:
    from gpu_train import train_variants

    train_variants(pack, out, runs, ["a:"], seconds=GPU_SECONDS, grace=20, workers=6)


def _gpu_join(parts: Path, dest: Path) -> None:
    from gpu_train import join

    join(sorted(glob.glob(str(parts))), dest)


def steps(data: Path, work: Path, install: bool) -> List[Step]:
    models = ROOT / "sdk" / "models"
    senior_first = work / "bundle_ft320" / "model_int8.onnx"     # the first stage on the senior's labels
    first = work / "bundle_mean" / "model_int8.onnx"              # ... fine-tuned on the clinicians' mean
    art_first = work / "bundle_art" / "model_int8.onnx"           # ... and on other machines' artifacts
    shipped_first = models / "isbi19_default_int8.onnx" if install else art_first
    local = models / "isbi19_default_int8.local.onnx" if install else work / "bundle_local" / "model_int8.local.onnx"
    challenge_local = (models / "isbi19_default_int8.challenge.local.onnx" if install
                       else work / "bundle_local_challenge" / "model_int8.local.onnx")
    shape = ROOT / "sdk" / "shapes" / "isbi19.json" if install else work / "isbi19_shape.json"
    pack384, pack320 = work / "isbi_train_384.npz", work / "isbi_train_320.npz"
    pack320_mean = work / "isbi_train_320_mean.npz"
    return [
        Step("pack384", make_pack, (data, pack384), dict(input_size=384), pack384),
        Step("gpu_train", _gpu_train, (pack384, work / "gpu_out", work / "gpu_runs"), {}, work / "gpu_out"),
        Step("gpu_join", _gpu_join, (work / "gpu_out" / "best_fp16.pt.part*", work / "w32_best.pt"), {},
             work / "w32_best.pt"),
        Step("finetune_zoom", train_first_stage, (pack384, work / "ft_scale"), dict(init=work / "w32_best.pt", **FT),
             work / "ft_scale" / "last.pt"),
        Step("pack320", make_pack, (data, pack320), dict(input_size=320), pack320),
        Step("finetune_320", train_first_stage, (pack320, work / "ft320"),
             dict(init=work / "ft_scale" / "last.pt", input_size=320, **FT), work / "ft320" / "last.pt"),
        Step("bundle_first", bundle_first_stage, (work / "ft320" / "last.pt", data, work / "bundle_ft320"), {},
             senior_first),
        # from the INT8 file's own weights (train/from_onnx.py): the FP32 checkpoint of the step above was not kept
        # when the shipped file was made, so the shipped chain went through the file, and so does the recipe
        Step("finetune_mean", train_first_stage, (data, work / "ft320_mean"),
             dict(split="train", annotators="senior,junior", init=senior_first, input_size=320, **FT),
             work / "ft320_mean" / "last.pt"),
        Step("bundle_mean", bundle_first_stage, (work / "ft320_mean" / "last.pt", data, work / "bundle_mean"), {},
             first),
        Step("pack320_mean", make_pack, (data, pack320_mean), dict(input_size=320, annotators="senior,junior"),
             pack320_mean),
        Step("finetune_artifacts", train_first_stage, (pack320_mean, work / "ft_art"), dict(init=first, **ART),
             work / "ft_art" / "best.pt"),
        Step("bundle_art", bundle_first_stage, (work / "ft_art" / "best.pt", data, work / "bundle_art"), {},
             art_first),
        # the local stage was trained behind the consensus first stage and runs behind the artifacts one
        Step("train_local", train_local, (data, work / "local_mean120"), dict(first_model=first, **LOCAL),
             work / "local_mean120" / "last.pt"),
        Step("bundle_local", bundle_local_stage, (work / "local_mean120" / "last.pt", data, work / "bundle_local"),
             dict(first_model=art_first, prior_sd=4.0, install=install),
             work / "bundle_local" / "model_int8.local.onnx"),
        Step("shape_model", write_shape_model, (data, shape), {}, shape),
        Step("calibrate", _calibrate, (local, data, work / "calibration.json"),
             dict(first_model=shipped_first), work / "calibration.json"),
        # the convention Detector(site="challenge"): the same local stage on the challenge's ground truth
        Step("train_local_challenge", train_local, (data, work / "local_challenge120"),
             dict(first_model=first, **{**LOCAL, "annotators": "challenge"}),
             work / "local_challenge120" / "last.pt"),
        Step("bundle_local_challenge", bundle_local_stage,
             (work / "local_challenge120" / "last.pt", data, work / "bundle_local_challenge"),
             dict(first_model=art_first, prior_sd=4.0, labels="challenge", install=install), challenge_local),
        Step("calibrate_challenge", _calibrate, (challenge_local, data, work / "calibration_challenge.json"),
             dict(first_model=shipped_first, annotators=("challenge",)), work / "calibration_challenge.json"),
    ]


def _calibrate(local_model: Path, data: Path, report: Path, **kw) -> None:
    import json

    rep = calibrate_local(local_model, data, **kw)
    report.write_text(json.dumps(rep, indent=2))


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
    names = [s.name for s in plan]
    if a.start is not None and a.start not in names:
        ap.error(f"--from {a.start!r}: the steps are {names}")
    started = a.start is None
    for step in plan:
        started = started or step.name == a.start
        if a.list or not started:
            print(step.text() if a.list else f"[{step.name}] before --from: skipped")
            continue
        if step.done.exists() and not (a.install and step.name in INSTALLING):
            print(f"[{step.name}] done ({step.done})")
            continue
        print(step.text(), flush=True)
        if a.dry_run:
            continue
        a.work.mkdir(parents=True, exist_ok=True)
        try:
            step.call(*step.args, **step.kwargs)
        except Exception as e:      # the recipe goes on from here once fixed: say which step and why
            print(f"[{step.name}] failed: {type(e).__name__}: {e}; fix and rerun (finished steps are kept)",
                  file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
