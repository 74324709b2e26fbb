"""Accuracy report and model card of a converted model on ISBI 2015 Test1/Test2, embedded in the file's metadata."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np

from sdk import Detector
from sdk.backends import open_backend
from sdk.local_stage import rescale_for_first_stage
from sdk.metadata import ModelMeta
from sdk.metrics import radial_errors, summarize
from sdk.schemas import ISBI19
from train.datasets import load_folder

from .check import detector_predictions

# The reference the product follows first (the mean of both clinicians), then the official ground truth that
# published ISBI 2015 results use (challenge.csv), then each clinician. A label set whose CSV is absent is skipped.
LABELS = {"mean": ("senior", "junior"), "challenge": ("challenge",), "senior": ("senior",), "junior": ("junior",)}
PRIMARY = "mean"


def isbi_accuracy(model: Path, data: Path, splits: Sequence[str] = ("test1", "test2"),
                  backend: str = "auto", local_stage=False) -> Dict:
    """{split: {labels: summarize()}} for ``model`` run through ``sdk.Detector``; labels as in ``LABELS``.
    ``local_stage``: the Detector's local stage (False: the first stage alone; a path: that local-stage file)."""
    det = Detector(model, backend=backend, local_stage=local_stage)
    out: Dict = {}
    for split in splits:
        samples = {}
        for key, ann in LABELS.items():
            if all((Path(data) / f"{a}.csv").is_file() for a in ann):
                samples[key] = load_folder(data, ISBI19, split=[split], annotators=ann)
        base = next(iter(samples.values()))
        preds, in_px = detector_predictions(det, base)
        out[split] = {}
        for key, ss in samples.items():
            err = radial_errors(preds, np.stack([s.points for s in ss]))
            out[split][key] = summarize(err, np.array([s.spacing for s in ss]), in_px, list(ISBI19.names))
    return out


def headline(acc: Dict) -> Dict:
    """The compact figures that go into a model's metadata."""
    return {split: {k: {"mre_mm": round(m["mre_mm"], 4), "sd_mm": round(m["sd_mm"], 4),
                        "mre_input_px": round(m["mre_input_px"], 3),
                        "sdr": {t: round(v, 2) for t, v in m["sdr"].items()}} for k, m in d.items()}
            for split, d in acc.items()}


def embed_accuracy(onnx_path: Path, accuracy: Dict, extra: Optional[Dict] = None) -> ModelMeta:
    """Rewrite the metadata of ``onnx_path`` with ``accuracy`` (weights untouched, atomic)."""
    return update_meta(onnx_path, {"isbi2015": accuracy}, extra)


def update_meta(onnx_path: Path, accuracy: Optional[Dict] = None, extra: Optional[Dict] = None) -> ModelMeta:
    """Merge ``accuracy`` and ``extra`` into the cephalo metadata of ``onnx_path`` (weights untouched, atomic)."""
    import onnx

    from .export import set_onnx_meta
    from .files import atomic_path

    meta = open_backend(Path(onnx_path), "onnxruntime").meta
    meta = replace(meta, accuracy={**meta.accuracy, **(accuracy or {})}, extra={**meta.extra, **(extra or {})})
    model = onnx.load(str(onnx_path))
    set_onnx_meta(model, meta)
    with atomic_path(onnx_path) as tmp:
        onnx.save(model, str(tmp))
    return meta


def _local_lines(meta: ModelMeta, file_name: str, size_mb: float, first_hw=None) -> list:
    r, x = meta.extra.get("recipe", {}), meta.extra
    v = meta.accuracy.get("validation", {})
    trained = tuple(x.get("first_stage_input") or ())
    factor, prior = float(x.get("factor", 0)), float(x.get("prior_sd", 0))
    if first_hw and trained:
        factor, prior = rescale_for_first_stage(factor, prior, trained, first_hw)
    behind = (f" (trained behind a {trained[0]}x{trained[1]} first stage at {x.get('factor')}x; the Detector "
              f"rescales it so the patches keep the trained scale)" if trained and first_hw and
              tuple(first_hw) != trained else "")
    return [f"- Local stage `{file_name}` ({size_mb:.1f} MiB, {x.get('precision')}, run by the Detector beside the "
            f"model; `local_stage=False` turns it off): a small U-Net on {meta.input_h}x{meta.input_w} patches cut "
            f"around each first-stage point from the image at {factor:.3g}x the first stage's scale{behind}, "
            f"heatmaps at stride {meta.heatmap_stride}, DARK decoding weighted by a Gaussian of sd "
            f"{prior:.3g} first-stage input px around the first-stage point. Trained on {meta.trained_on}, "
            f"{x.get('epochs_trained')} epochs, patches displaced, rotated, scaled and intensity-jittered. Recipe: "
            f"`{json.dumps(r)}`."
            + (f" Validation: first stage {v['first_stage_mre_mm']:.3f} mm -> {v['mre_mm']:.3f} mm." if v else "")]


def render(meta: ModelMeta, file_name: str, size_mb: float, results: Dict[str, Dict], notes: str = "",
           local: Optional[tuple] = None) -> str:
    """Markdown model card. ``results``: {'FP32': isbi_accuracy(), 'INT8': isbi_accuracy()} (the last one is the
    shipped configuration). ``local``: (meta, file name, MiB) of the local stage shipped beside the model."""
    r = meta.extra.get("recipe", {})
    lines = [f"# Model card: `{file_name}`", "",
             f"- Task: {meta.schema.k} cephalometric landmarks, schema `{meta.schema.id}` (ISBI 2015 order).",
             f"- Architecture: HRNet-{str(r.get('backbone', '?')).upper()} heatmap model, input {meta.input_h}x"
             f"{meta.input_w} letterboxed gray, heatmaps at stride {meta.heatmap_stride}, sigma {meta.sigma} "
             f"(heatmap px), DARK decoding.",
             f"- File: {size_mb:.1f} MiB ({size_mb * 2**20 / 1e6:.1f} MB), precision {meta.extra.get('precision')}, quantization "
             f"{meta.extra.get('quantization', '-')}.",
             f"- Trained on: {meta.trained_on}; from scratch (no pretrained weights); "
             + (f"{meta.extra['epochs_trained']} epochs of fine-tuning, {meta.extra['fine_tuned_from']}"
                if meta.extra.get("fine_tuned_from") else f"{meta.extra.get('epochs_trained')} epochs")
             + f". Recipe: `{json.dumps(r)}`.",
             *(_local_lines(*local, first_hw=meta.input_hw) if local else []),
             "- Data licence: ISBI 2015 Grand Challenge data, CC BY-NC 4.0. This model is derived from it and is "
             "for **non-commercial research use only**. Cite Wang et al., Medical Image Analysis 31 (2016) and "
             "IEEE TMI (2015).",
             "- Not a medical device. Check every landmark before clinical use.", ""]
    lines += ["## Accuracy (ISBI 2015, `sdk.Detector`, 0.1 mm/px)", "",
              "Training, the choice of epoch and every setting used validation images carved from Train (001-150); "
              "Test1 and Test2 were run once per shipped configuration, for this table. \"Input px\" are pixels "
              f"of this model's {meta.input_h}x{meta.input_w} input ({0.1 * 2400 / meta.input_h:.3f} mm on "
              "ISBI's 1935x2400 images at 0.1 mm/px): compare models of other input sizes in mm.", "",
              "| model | split | labels | MRE mm | SD mm | MRE input px | SDR 2mm | 2.5mm | 3mm | 4mm |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for prec, acc in results.items():
        for split, d in acc.items():
            for key, m in d.items():
                s = m["sdr"]
                lines.append(f"| {prec} | {split} | {key} | {m['mre_mm']:.3f} | {m['sd_mm']:.3f} | "
                             f"{m['mre_input_px']:.2f} | {s['2mm']:.1f}% | {s['2.5mm']:.1f}% | {s['3mm']:.1f}% | "
                             f"{s['4mm']:.1f}% |")
    precs = list(results)
    shipped = precs[-1]
    head = ["landmark"]
    for split in ("Test1", "Test2"):
        head += [f"{split} MRE mm {p}" for p in precs] + [f"{split} SDR 2mm {shipped}"]
    lines += ["", f"## Per landmark ({PRIMARY} of both clinicians' labels; the shipped file is {shipped})", "",
              "| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for name in meta.schema.names:
        cells = []
        for split in ("test1", "test2"):
            for p in precs:
                m = results[p].get(split, {}).get(PRIMARY, {}).get("per_landmark", {}).get(name)
                cells.append(f"{m['mre_mm']:.2f}" if m else "")
            m = results[shipped].get(split, {}).get(PRIMARY, {}).get("per_landmark", {}).get(name)
            cells.append(f"{m['sdr']['2mm']:.1f}%" if m else "")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if notes:
        lines += ["", "## Notes", "", notes]
    return "\n".join(lines) + "\n"
