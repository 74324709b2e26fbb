"""The ruler reader (:mod:`sdk.ruler`) on every ISBI 2015 image (one cephalostat: one pitch), on rescaled copies,
with the ruler cropped away, with a second ruler pasted on the back of the head, and with the comb replaced by a
millimetre scale (another maker's: thin ticks every mm, longer every 5 and 10 mm) at 7.88 px per mm.

    python -m benchmarks.ruler_bench --data ../shared/data/isbi2015 [--n-scaled 40] [--detector-images 8] [--out DIR]

Writes ``ruler_bench.json`` / ``.md``: found / 400, the pitch's median and coefficient of variation, each rescaled
copy's pitch against the original's times the scale, how many cropped copies give a ruler (should be none), how
often the second ruler is reported, the millimetre scales' pitch against 7.88 px, and what the ruler adds to the
Detector's p50 (interleaved calls with and without ``ruler_mm``).
"""
from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import click
import cv2
import numpy as np

MM_PX = 7.88      # another clinic's millimetre scale, pixels per mm (issue 34)


def erase_ruler(gray: np.ndarray, ruler) -> np.ndarray:
    """``gray`` with the read comb blurred away (three pitches around it)."""
    out = gray.copy()
    x = int(round(ruler.p1[0])) if ruler.upright else None
    ya, yb = sorted((ruler.p1[1], ruler.p2[1])) if ruler.upright else sorted((ruler.p1[0], ruler.p2[0]))
    pad = int(3 * ruler.pitch_px)
    if ruler.upright:
        box = (slice(max(0, int(ya) - pad), int(yb) + pad), slice(max(0, x - pad), x + pad))
    else:
        y = int(round(ruler.p1[1]))
        box = (slice(max(0, y - pad), y + pad), slice(max(0, int(ya) - pad), int(yb) + pad))
    out[box] = cv2.GaussianBlur(out[box], (0, 0), 2 * ruler.pitch_px)
    return out


def millimetre_scale(gray: np.ndarray, px_mm: float, x: float, y0: float, length_mm: int = 60,
                     gain: float = 60.0) -> np.ndarray:
    """``gray`` with an upright millimetre scale drawn as an X-ray shows a metal one: a thin spine, ticks 0.2 mm
    thick every mm (1.5 mm long), every 5 mm (2.5 mm) and every 10 mm (4 mm), rendered 8x and reduced."""
    s = 8
    h, w = gray.shape
    canvas = np.zeros((h * s, w * s), np.float32)
    for i in range(length_mm + 1):
        long = 4.0 if i % 10 == 0 else (2.5 if i % 5 == 0 else 1.5)
        yy, t = (y0 + i * px_mm) * s, 0.2 * px_mm * s
        cv2.rectangle(canvas, (int(x * s), int(yy - t / 2)), (int((x + long * px_mm) * s), int(yy + t / 2)), 1.0, -1)
    cv2.rectangle(canvas, (int(x * s), int(y0 * s)), (int((x + 0.3 * px_mm) * s), int((y0 + length_mm * px_mm) * s)),
                  1.0, -1)
    small = cv2.resize(canvas, (w, h), interpolation=cv2.INTER_AREA)
    return np.clip(gray + gain * small, 0, 255).astype(np.uint8)


def detector_cost(files, rounds: int = 10) -> dict:
    """The Detector's p50 end to end (a file per call) without and with ``ruler_mm``, calls alternating so that a
    slow spell of the machine falls on both alike."""
    from sdk import Detector

    dets = {"off": Detector(backend="openvino"), "on": Detector(backend="openvino", ruler_mm=1.0)}
    times = {k: [] for k in dets}
    for r in range(rounds + 1):
        for f in files:
            for k, det in dets.items():
                t0 = time.perf_counter()
                det(f)
                if r:                                      # the first round warms up
                    times[k].append(time.perf_counter() - t0)
    p50 = {k: float(np.median(v) * 1000) for k, v in times.items()}
    info = dets["off"].info
    return {"backend": info["backend"], "threads": info["threads"], "images": len(files), "rounds": rounds,
            "p50_ms": p50, "cost_ms": p50["on"] - p50["off"]}


@click.command()
@click.option("--data", "data_dir", type=click.Path(exists=True, path_type=Path), required=True)
@click.option("--n-scaled", type=int, default=40, show_default=True, help="Images for the rescaled/cropped copies.")
@click.option("--detector-images", type=int, default=8, show_default=True,
              help="Test images for the Detector's cost of the ruler (0: skip); interleaved calls, OpenVINO.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("results/ruler"), show_default=True)
def main(data_dir, n_scaled, detector_images, out_dir):
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
    mm_err = {30.0: [], 60.0: []}
    for f in sub:      # ISBI's image at 0.127 mm/px, its comb blurred away, a millimetre scale on the nasion rod
        g = load_image(f).gray
        z = MM_PX / 10.0                                   # ISBI: 10 px per mm
        g = cv2.resize(g, None, fx=z, fy=z, interpolation=cv2.INTER_AREA)
        g = erase_ruler(g, read_ruler(g))
        for gain in mm_err:
            r = read_ruler(millimetre_scale(g, MM_PX, 0.85 * g.shape[1], 0.15 * g.shape[0], gain=gain))
            mm_err[gain].append(None if r is None else r.pitch_px / MM_PX - 1)
    rep["millimetre_scale"] = {str(k): {"found": sum(e is not None for e in v), "images": len(v),
                                        "max_abs_rel_error": max((abs(e) for e in v if e is not None), default=None)}
                               for k, v in mm_err.items()}
    if detector_images:
        rep["detector"] = detector_cost(files[-detector_images:])
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
    for k, v in rep["millimetre_scale"].items():
        err = "-" if v["max_abs_rel_error"] is None else f"{v['max_abs_rel_error'] * 100:.2f}%"
        lines.append(f"Millimetre scale at {MM_PX} px/mm (ticks {k} grey levels above the background): found on "
                     f"{v['found']} of {v['images']}, pitch within {err}.")
    if "detector" in rep:
        d = rep["detector"]
        lines.append(f"Detector ({d['backend']}, {d['threads']} threads, {d['images']} images x {d['rounds']} interleaved "
                     f"rounds): p50 {d['p50_ms']['off']:.1f} ms without the ruler, {d['p50_ms']['on']:.1f} ms with "
                     f"ruler_mm: +{d['cost_ms']:.1f} ms.")
    (out_dir / "ruler_bench.md").write_text("\n".join(lines) + "\n")
    click.echo("\n".join(lines))


if __name__ == "__main__":
    main()
