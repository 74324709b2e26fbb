"""Does training on turned pairs make the first stage's reading turn with the head? (issue 50)

    python -m lab.studies.turned_pairs_probe --data ../shared/data/isbi2015 RUN_OR_ONNX... [--out DIR]

Each model (a run folder's ``best.pt``/``last.pt``, or an .onnx read back as ``cephalo train --init`` reads it: INT8
weights dequantized, BatchNorm recalibrated) reads its images in torch, FP32, first stage alone, as given and
turned by -10, -8, -5, 5, 8 and 10 degrees; the turned copies' points are mapped back. Reported per model:
the points' move (p50 / p95 mm, 0.1 mm per pixel) and the SNA / SNB / ANB changes (p95 deg), on the 30 validation
images that no first stage trained on (for choosing) and on the tilt benchmark's 10 Test1 images (151-160, for
reporting: the issue's figure is the whole Detector's, ``benchmarks.tilt``); and the validation MRE (mean labels).

    python -m lab.studies.turned_pairs_probe --data ../shared/data/isbi2015 --detector MODEL.onnx...

``--detector``: each first-stage file (converted, e.g. INT8) through the whole Detector (onnxruntime) with the
bundled local stage beside it: the tilt benchmark's figures (:func:`benchmarks.tilt.run`) and Test1 / Test2 MRE
against the mean of both clinicians (reporting).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import torch

ANGLES = (-10, -8, -5, 5, 8, 10)


def _model(source: Path, cfg, train, val):
    """(FP32 torch model in eval mode, its config) of a run folder or an .onnx file."""
    from train.checkpoint import load_checkpoint
    from train.config import TrainConfig
    from train.model import model_from_checkpoint
    from train.trainer import Trainer

    if source.suffix == ".onnx":
        t = Trainer(cfg, train, val, Path("/tmp/turned_pairs_probe_run"), Path("/tmp/turned_pairs_probe_cache"),
                    data_info="probe")
        t.init_from(source)
        return t.model.eval(), cfg
    ck = load_checkpoint(source / "best.pt" if source.is_dir() else source)
    return model_from_checkpoint(ck).eval(), TrainConfig.from_dict(ck["config"])


@torch.no_grad()
def _read(model, cfg, gray: np.ndarray) -> np.ndarray:
    from sdk.decode import decode_to_image

    x, lb = cfg.preprocessing.apply(gray)
    hm = model(torch.from_numpy(x[None]).float())[0].numpy()
    return decode_to_image(hm, lb, cfg.heatmap_stride, cfg.sigma, "dark")[0]


def tilt_spread(model, cfg, grays, names, mm: float = 0.1) -> dict:
    from lab.studies.upright_threshold import _angles
    from sdk.compare import turned

    moves, changes = [], []
    for gray in grays:
        base = _read(model, cfg, gray)
        for deg in ANGLES:
            img, m = turned(gray, deg)
            back = (_read(model, cfg, img) - m[:, 2]) @ np.linalg.inv(m[:, :2]).T
            moves.append(np.linalg.norm(back - base, axis=1) * mm)
            changes.append(np.abs(_angles(back, names) - _angles(base, names)))
    d, c = np.concatenate(moves), np.array(changes)
    return {"p50_mm": round(float(np.median(d)), 3), "p95_mm": round(float(np.percentile(d, 95)), 3),
            "angles_p95_deg": dict(zip(("SNA", "SNB", "ANB"), np.round(np.percentile(c, 95, axis=0), 3).tolist()))}


def through_detector(data: Path, models, out=None):
    import shutil
    import tempfile

    from benchmarks.tilt import run as tilt_run
    from sdk import Detector
    from sdk.local_stage import local_stage_path
    from sdk.schemas import ISBI19
    from train.datasets import load_folder

    bundled = local_stage_path(Path(__file__).resolve().parents[2] / "sdk" / "models" / "isbi19_default_int8.onnx")
    tests = {split: load_folder(data, ISBI19, split=[split], annotators=("senior", "junior"))
             for split in ("test1", "test2")}
    files = sorted((data / "images").glob("*.jpg"))[150:160]
    report = {}
    with tempfile.TemporaryDirectory() as tmp:
        for src in models:
            model = Path(tmp) / f"{len(report)}_{src.name}"
            shutil.copyfile(src, model)
            if not local_stage_path(src).is_file():
                shutil.copyfile(bundled, local_stage_path(model))
            else:
                shutil.copyfile(local_stage_path(src), local_stage_path(model))
            det = Detector(model, backend="onnxruntime")
            r = tilt_run(det, files, list(ANGLES))
            mre = {split: round(float(np.mean([np.nanmean(np.linalg.norm(det(cv2.imread(str(s.image), 0)).xy
                                                                          - s.points, axis=1)) * 0.1
                                               for s in samples])), 4) for split, samples in tests.items()}
            report[str(src)] = {"mre_mm": mre, "tilt_points": {k: r["points"][k] for k in ("p50_mm", "p95_mm")},
                                "tilt_angles_p95_deg": {k: v["p95_deg"] for k, v in r["angles"].items()},
                                "tilt_p95_by_landmark": dict(sorted(r["points"]["p95_mm_by_landmark"].items(),
                                                                    key=lambda kv: -kv[1])[:4])}
            print(src, json.dumps(report[str(src)]), flush=True)
    if out:
        out.mkdir(parents=True, exist_ok=True)
        (out / "turned_pairs_detector.json").write_text(json.dumps(report, indent=1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data/isbi2015"))
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--detector", action="store_true", help="MODELS are first-stage files: read through the Detector")
    ap.add_argument("models", type=Path, nargs="+")
    a = ap.parse_args()
    if a.detector:
        return through_detector(a.data, a.models, a.out)
    from sdk.metrics import radial_errors
    from sdk.schemas import ISBI19
    from train.config import TrainConfig
    from train.datasets import load_train_val

    torch.set_num_threads(2)
    cfg = TrainConfig(input_size=320)
    train, val = load_train_val(a.data, ISBI19, "auto", ["train"], ("senior", "junior"), cfg.val_count, cfg.seed)
    names = list(ISBI19.names)
    val_grays = [cv2.imread(str(s.image), cv2.IMREAD_GRAYSCALE) for s in val]
    test_grays = [cv2.imread(str(f), cv2.IMREAD_GRAYSCALE)
                  for f in sorted((a.data / "images").glob("*.jpg"))[150:160]]
    report = {}
    for src in a.models:
        model, mcfg = _model(src, cfg, train, val)
        pred = np.stack([_read(model, mcfg, g) for g in val_grays])
        mre = float(np.nanmean(radial_errors(pred, np.stack([s.points for s in val]))) * 0.1)
        report[str(src)] = {"val_mre_mm": round(mre, 4), "val_tilt": tilt_spread(model, mcfg, val_grays, names),
                            "test1_tilt": tilt_spread(model, mcfg, test_grays, names)}
        print(src, json.dumps(report[str(src)]), flush=True)
    if a.out:
        a.out.mkdir(parents=True, exist_ok=True)
        (a.out / "turned_pairs_probe.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
