"""The ruler reader (:mod:`sdk.ruler`) on every ISBI 2015 image (one cephalostat: one pitch), on rescaled copies,
with the ruler cropped away, and with a second ruler pasted on the back of the head.

    python -m benchmarks.ruler_bench --data ../shared/data/isbi2015 [--n-scaled 40] [--out DIR]

Writes ``ruler_bench.json`` / ``.md``: found / 400, the pitch's median and coefficient of variation, each rescaled
copy's pitch against the original's times the scale, how many cropped copies give a ruler (should be none), and how
often the second ruler is reported.
"""
from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import click
import cv2
import numpy as np


@click.command()
@click.option("--data", "data_dir", type=click.Path(exists=True, path_type=Path), required=True)
@click.option("--n-scaled", type=int, default=40, show_default=True, help="Images for the rescaled/cropped copies.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("results/ruler"), show_default=True)
def main(data_dir, n_scaled, out_dir):
    """Ruler found, pitch spread, rescaled copies, cropped copies, second rulers."""
    from sdk.image_io import load_image
    from sdk.ruler import read_ruler
    from train.data.variants import VARIANTS

    files = sorted((data_dir / "images").glob("*.*"))
    pitch, times, missing = {}, [], []
    for f in files:
        g = load_image(f).gray
        t0 = time.perf_counter()
        r = read_ruler(g)
        times.append(time.perf_counter() - t0)
        if r is None:
            missing.append(f.name)
        else:
            pitch[f.name] = (r.pitch_px, r.pitch_se_px, r.second_scale)
    p = np.array([v[0] for v in pitch.values()])
    rep = {"cpu": platform.processor() or platform.machine(), "images": len(files), "found": len(pitch),
           "missing": missing, "pitch_median_px": float(np.median(p)), "pitch_cv": float(p.std() / p.mean()),
           "pitch_se_median_px": float(np.median([v[1] for v in pitch.values()])),
           "second_scale_reported": int(sum(v[2] for v in pitch.values())),
           "read_ms_median": float(np.median(times) * 1000), "scaled": {}, "cropped_found": 0, "second_ruler": 0}
    sub = [f for f in files if f.name in pitch][:n_scaled]
    for scale in (0.5, 0.75, 1.5, 2.0):
        errs, lost = [], 0
        for f in sub:
            g = load_image(f).gray
            r = read_ruler(cv2.resize(g, None, fx=scale, fy=scale,
                                      interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR))
            if r is None:
                lost += 1
            else:
                errs.append(r.pitch_px / (pitch[f.name][0] * scale) - 1)
        rep["scaled"][str(scale)] = {"found": len(errs), "lost": lost,
                                     "max_abs_rel_error": float(np.max(np.abs(errs))) if errs else None,
                                     "median_rel_error": float(np.median(errs)) if errs else None}
    second = VARIANTS["a second ruler on the back of the head"][0]
    for f in sub:
        g = load_image(f).gray
        rep["cropped_found"] += read_ruler(g[:, : int(0.7 * g.shape[1])]) is not None    # the nasion rod cut off
        r = read_ruler(second(g))
        rep["second_ruler"] += bool(r is not None and r.second_scale)
    rep["cropped_images"] = rep["second_ruler_images"] = len(sub)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "ruler_bench.json").write_text(json.dumps(rep, indent=1))
    lines = [f"ISBI 2015, {len(files)} images: ruler found on {rep['found']}; pitch median "
             f"{rep['pitch_median_px']:.3f} px, CV {rep['pitch_cv'] * 100:.2f}%, median standard error "
             f"{rep['pitch_se_median_px']:.3f} px; {rep['read_ms_median']:.1f} ms per image (median).", "",
             "| copy | found | lost | max relative pitch error |", "|---|---|---|---|"]
    for k, v in rep["scaled"].items():
        err = "" if v["max_abs_rel_error"] is None else f"{v['max_abs_rel_error'] * 100:.2f}%"
        lines.append(f"| x{k} | {v['found']} | {v['lost']} | {err} |")
    lines += ["", f"Ruler cropped away: a ruler reported on {rep['cropped_found']} of {rep['cropped_images']}. "
                  f"A second ruler on the back of the head: reported on {rep['second_ruler']} of "
                  f"{rep['second_ruler_images']}."]
    (out_dir / "ruler_bench.md").write_text("\n".join(lines) + "\n")
    click.echo("\n".join(lines))


if __name__ == "__main__":
    main()
