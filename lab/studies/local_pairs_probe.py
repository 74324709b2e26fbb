"""Does training the local stage on shifted pairs stop its reading from following the first stage's? (issue 50)

    python -m lab.studies.local_pairs_probe --data ../shared/data/isbi2015 [--first MODEL.onnx] LOCAL... [--out DIR]

Each LOCAL (a ``cephalo train-local`` run folder's ``best.pt``, or a local-stage .onnx such as the bundled one)
reads the 30 validation images that neither stage trained on, behind the first stage of ``--first`` (default: the
bundled one, its local stage off), and behind nothing else:

- ``follow``: the local reading's move when its patch is cut around the first stage's point moved by 1.5 mm in
  each of 8 directions (p50 / p95 mm over points; per landmark p95 for S, N, A, B, gonion and articulare);
- ``tilt``: each image turned by -10, -8, -5, 5, 8 and 10 degrees on a canvas that holds it (the tilt benchmark's
  turn, :func:`sdk.compare.turned`), both stages read, the points mapped back: their move (p50 / p95 mm) and the
  SNA / SNB / ANB changes (p95 deg);
- ``val_mre_mm``: against the mean of both clinicians, as the Detector reads (the decode prior on).

A torch checkpoint is read in FP32, an .onnx through :class:`sdk.local_stage.LocalStage`; both cut their patches
turned into the head's frame as the Detector does, and at the head's scale where the stage has a head size
(``--head`` gives checkpoints trained at the canvas's scale the training images' one). 0.1 mm per pixel.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

ANGLES = (-10, -8, -5, 5, 8, 10)
WATCH = ("sella", "nasion", "subspinale", "supramentale", "gonion", "articulare")


class _Reader:
    """(gray, first-stage points) -> local points, for a torch checkpoint or a local-stage .onnx."""

    def __init__(self, source: Path, first_input, schema, head: float = 0.0):
        self.schema, self.head = schema, head
        if source.suffix == ".onnx":
            from sdk.local_stage import LocalStage

            self.onnx = LocalStage(source, "onnxruntime", first_input=first_input)
        else:
            import torch

            from train.local_stage import load_local_checkpoint, model_from_local_checkpoint

            torch.set_num_threads(2)
            ck = load_local_checkpoint(source / "best.pt" if source.is_dir() else source)
            self.onnx, self.model = None, model_from_local_checkpoint(ck)
            from train.config import LocalConfig

            self.cfg = LocalConfig.from_dict(ck["config"])
            self.head = self.cfg.head_size or head
        self.first_input = tuple(first_input)

    def __call__(self, gray: np.ndarray, first: np.ndarray) -> np.ndarray:
        from sdk.local_stage import fine_image, head_turn, head_zoom
        from sdk.preprocess import letterbox_geometry

        lb = letterbox_geometry(gray.shape[:2], self.first_input)
        if self.onnx is not None:
            return self.onnx.locate_with_peaks(gray, lb, first, 1, head_turn(first, self.schema))[0]
        from train.local_stage import local_stage_points

        zoom = head_zoom(self.head, first, lb)
        return local_stage_points(self.model, fine_image(gray, lb, self.cfg.factor * zoom), first, self.cfg,
                                  schema=self.schema)


def _angles(xy, names):
    from lab.studies.upright_threshold import _angles as angles

    return angles(xy, names)


def probe(reader, grays, firsts, truths, names, mm=0.1) -> dict:
    """The figures above for one local stage; ``firsts[i]``: the first stage's points on image i as given and on
    each turned copy (``None`` for the copy's matrix on the untilted one)."""
    follow, moves, changes, errs = [], [], [], []
    dirs = np.array([[np.cos(a), np.sin(a)] for a in np.arange(8) * np.pi / 4]) * (1.5 / mm)
    for gray, runs, truth in zip(grays, firsts, truths):
        (base_first, _), turned_runs = runs[0], runs[1:]
        base = reader(gray, base_first)
        errs.append(np.linalg.norm(base - truth, axis=1) * mm)
        for d in dirs:
            follow.append(np.linalg.norm(reader(gray, base_first + d) - base, axis=1) * mm)
        for (first, m), img in turned_runs:
            back = (reader(img, first) - m[:, 2]) @ np.linalg.inv(m[:, :2]).T
            moves.append(np.linalg.norm(back - base, axis=1) * mm)
            changes.append(np.abs(_angles(back, names) - _angles(base, names)))
    f, mv, c = np.array(follow), np.array(moves), np.array(changes)
    return {"val_mre_mm": round(float(np.nanmean(np.concatenate(errs))), 4),
            "follow": {"p50_mm": round(float(np.median(f)), 3), "p95_mm": round(float(np.percentile(f, 95)), 3),
                       **{f"{n}_p95_mm": round(float(np.percentile(f[:, names.index(n)], 95)), 3) for n in WATCH}},
            "tilt": {"p50_mm": round(float(np.median(mv)), 3), "p95_mm": round(float(np.percentile(mv, 95)), 3),
                     **{f"{n}_p95_mm": round(float(np.percentile(mv[:, names.index(n)], 95)), 3) for n in WATCH},
                     "angles_p95_deg": dict(zip(("SNA", "SNB", "ANB"),
                                                np.round(np.percentile(c, 95, axis=0), 3).tolist()))}}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data/isbi2015"))
    ap.add_argument("--first", type=Path, default=None, help="First-stage model (default: the bundled one).")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--head", action="store_true",
                    help="Checkpoints trained at the canvas's scale read at the head's (the training images' median "
                         "head size, as convert.local_stage.add_head_size gives an .onnx); .onnx files zoom when "
                         "their metadata has extra.head_size.")
    ap.add_argument("locals", type=Path, nargs="+")
    a = ap.parse_args()
    from sdk import Detector
    from sdk.compare import turned
    from sdk.schemas import ISBI19
    from train.config import TrainConfig
    from train.datasets import load_train_val

    cfg = TrainConfig()
    _, val = load_train_val(a.data, ISBI19, "auto", ["train"], ("senior", "junior"), cfg.val_count, cfg.seed)
    names = list(ISBI19.names)
    det = Detector(a.first, backend="onnxruntime", local_stage=False)
    grays, firsts, truths = [], [], []
    for s in val:
        gray = cv2.imread(str(s.image), cv2.IMREAD_GRAYSCALE)
        runs = [((det(gray).xy, None), gray)]
        for deg in ANGLES:
            img, m = turned(gray, deg)
            runs.append(((det(img).xy, m), img))
        grays.append(gray)
        firsts.append([runs[0][0]] + runs[1:])
        truths.append(s.points)
    head = 0.0
    if a.head:
        from train.local_stage import training_head_size

        train, _ = load_train_val(a.data, ISBI19, "auto", ["train"], ("senior", "junior"), cfg.val_count, cfg.seed)
        head = training_head_size(train, int(det.meta.input_hw[0]))
    report = {"first": str(a.first or "bundled"), "images": len(val), "head": a.head, "locals": {}}
    for src in a.locals:
        r = probe(_Reader(src, det.meta.input_hw, ISBI19, head), grays, firsts, truths, names)
        report["locals"][str(src)] = r
        print(src, json.dumps(r), flush=True)
    if a.out:
        a.out.mkdir(parents=True, exist_ok=True)
        (a.out / "local_pairs_probe.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
