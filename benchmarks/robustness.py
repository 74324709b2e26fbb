"""How the model holds up on cephalograms that do not look like ISBI's: contrast, resolution, crop, noise, facing.

    python -m benchmarks.robustness --data ../shared/data/isbi2015 [--model FILE] [--n 50] [--out DIR]

Each variant changes the images of ``--split`` (Test1 by default; ``val`` = the 30 training images the bundled model
held out, for choosing between models) and moves their labels with them, runs ``sdk.Detector`` on the pixels and
reports MRE in mm (spacing follows the resize) and SDR@2mm. Writes ``robustness.json`` and ``robustness.md``.
"""
from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

from train.data import variants as _variants
from train.data.variants import CROSS_SITE, VARIANTS, in_frame  # noqa: F401  (re-exported)


def pick_variants(spec: str):
    """:func:`train.data.variants.pick_variants` with a bad name as the command line's usage error."""
    try:
        return _variants.pick_variants(spec)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--variants") from None


@click.command()
@click.option("--data", "data_dir", type=click.Path(exists=True, path_type=Path), required=True)
@click.option("--model", type=click.Path(exists=True, path_type=Path), default=None, help="Default: bundled model.")
@click.option("--split", default="test1", show_default=True,
              help="A split of splits.csv, or 'val': the 30 training images the bundled model held out (seed 0), "
                   "for choosing between models without touching Test1/Test2.")
@click.option("--n", "n_images", type=int, default=50, show_default=True)
@click.option("--threads", type=int, default=2, show_default=True)
@click.option("--backend", default="auto", show_default=True, help="auto | openvino | onnxruntime")
@click.option("--local-stage", default="auto", show_default=True,
              help="Local stage: 'auto' (the model's own when it has one), 'off', or a .local.onnx file.")
@click.option("--variants", default="", help="Comma-separated names or name prefixes of the variants to run; "
              "default all.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("results/robustness"),
              show_default=True)
def main(data_dir, model, split, n_images, threads, backend, local_stage, variants, out_dir):
    """Accuracy under image changes other sites bring."""
    from sdk import Detector
    from sdk.image_io import load_image
    from sdk.metrics import radial_errors
    from sdk.schemas import ISBI19
    from train.datasets import load_folder

    det = Detector(model, backend=backend, threads=threads, local_stage={"auto": True, "off": False}.get(local_stage, local_stage))
    if split == "val":
        from train.trainer import split_train_val

        samples = split_train_val(load_folder(data_dir, ISBI19, split=["train"]), 30, 0)[1][:n_images]
    else:
        samples = load_folder(data_dir, ISBI19, split=[split])[:n_images]
    grays = [load_image(s.image).gray for s in samples]
    rows = []
    for name in pick_variants(variants):
        fimg, fpts, sp = VARIANTS[name]
        errs = []
        for s, g in zip(samples, grays):
            img = fimg(g)
            pred = det(img).xy
            gt = fpts(s.points, g.shape)
            e = radial_errors(pred[None], gt[None])[0] * s.spacing * sp
            # a landmark the change moved out of the frame has no pixels to find: not scored, counted
            inside = in_frame(gt, img.shape)
            errs.append(np.where(inside, e, np.nan))
        e = np.stack(errs)
        scored = e[~np.isnan(e)]
        per_lm = np.nanmean(np.where(np.isnan(e).all(0), 0.0, e), axis=0)
        rows.append({"variant": name, "mre_mm": float(scored.mean()), "sdr2_pct": float((scored < 2.0).mean() * 100),
                     "out_of_frame": int(np.isnan(e).sum()),
                     "worst_landmark": ISBI19.names[int(per_lm.argmax())], "worst_mm": float(per_lm.max())})
        click.echo(f"{name:34s} MRE {rows[-1]['mre_mm']:6.3f} mm  SDR@2mm {rows[-1]['sdr2_pct']:5.1f}%"
                   + (f"  ({rows[-1]['out_of_frame']} labels out of frame, not scored)" if rows[-1]["out_of_frame"]
                      else ""))
    out_dir.mkdir(parents=True, exist_ok=True)
    res = {"model": str(det.model_path), "local_stage": det.info["local_stage"], "backend": det.info["backend"],
           "split": split,
           "images": len(samples), "rows": rows}
    (out_dir / "robustness.json").write_text(json.dumps(res, indent=2))
    local = f" + local stage `{Path(res['local_stage']).name}`" if res["local_stage"] else " (no local stage)"
    lines = [f"`{Path(res['model']).name}`{local} on the first {len(samples)} {split} images (senior labels), "
             f"{res['backend']}, each changed as named; labels moved with the pixels.", "",
             "| variant | MRE mm | SDR@2mm | labels out of frame (not scored) | worst landmark (mm) |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['variant']} | {r['mre_mm']:.3f} | {r['sdr2_pct']:.1f}% | {r['out_of_frame']} | "
              f"{r['worst_landmark']} ({r['worst_mm']:.1f}) |" for r in rows]
    (out_dir / "robustness.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
