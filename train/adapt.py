"""``cephalo adapt``: a site profile (:mod:`sdk.site`) from a clinic's own labelled images. Needs no torch: the
bundled model reads the images and the profile is fitted in numpy."""
from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Union

import numpy as np

from sdk.detector import RULER_DISAGREES
from sdk.errors import CephaloError
from sdk.site import PORION_APART_MM, SiteProfile, fit_site
from sdk.site_look import STEP_SN, sn_lengths
from sdk.spacing import check_magnification

_log = logging.getLogger(__name__)


def _check_spacings(samples) -> None:
    """Every sample needs a spacing (the folder's own, ``--spacing MM`` or a CSV): the report is in mm."""
    for s in samples:
        if not s.spacing or not np.isfinite(s.spacing):
            raise CephaloError(f"{s.image}: no pixel spacing (give --spacing MM or a CSV of image,spacing)")


def _check_inside(samples, results, names) -> None:
    """Every labelled point lies inside its image: one outside is a fault in the labels, said with all others."""
    bad = []
    for s, r in zip(samples, results):
        h, w = r.image_size
        p = s.points
        for k in np.flatnonzero(np.isfinite(p).all(axis=1) & ((p[:, 0] < -0.5) | (p[:, 0] > w - 0.5)
                                                           | (p[:, 1] < -0.5) | (p[:, 1] > h - 0.5))):
            bad.append(f"{Path(s.image).name}: {names[k]} at ({p[k, 0]:.1f}, {p[k, 1]:.1f}) is outside its {w}x{h} image")
    if bad:
        raise CephaloError(f"{len(bad)} labelled point(s) outside their image: " + "; ".join(bad[:20])
                           + ("; ..." if len(bad) > 20 else ""))


def read_site(data_dir: Path, schema, *, fmt: str = "auto", split: Optional[Sequence[str]] = None,
              annotators: Sequence[str] = ("senior",), spacing: Union[float, Path, None] = None) -> List:
    """The site's labelled samples, in the layouts ``cephalo train`` reads."""
    from .datasets import load_folder

    samples = load_folder(data_dir, schema, fmt, list(split) if split else None, tuple(annotators), spacing,
                          gaps=True)
    _check_spacings(samples)
    return samples


def _for_looks(loaded, sn_px: float):
    """(gray, reduction) of one site image, reduced by a whole factor as far as the looks' grid allows (a step
    of a pixel or more), so that a site of hundreds of large images fits in memory."""
    import cv2

    f = max(1, int(sn_px * STEP_SN / loaded.reduction))
    g = loaded.gray
    if f > 1:
        h, w = g.shape[0] // f, g.shape[1] // f
        g = cv2.resize(g[:h * f, :w * f], (w, h), interpolation=cv2.INTER_AREA)
    return g, loaded.reduction * f


def _ruler_check(results, samples, ruler_mm: float, log: Callable[[str], None]) -> Dict:
    """How the ruler read in the site's images (at ``ruler_mm`` a tick) agrees with their labelled spacing: a
    wrong tick pitch, or labels spaced at the detector (about 10% magnified), shows here before any image is
    measured by it."""
    ratios = [r.ruler["spacing_mm"] / s.spacing for r, s in zip(results, samples) if r.ruler]
    out = {"tick_mm": ruler_mm, "found": len(ratios), "images": len(samples),
           "spacing_ratio_median": round(float(np.median(ratios)), 4) if ratios else None}
    if not ratios:
        log(f"the ruler: not found in any of the site's {len(samples)} images; images without a spacing will get "
            f"none from it")
        return out
    q = out["spacing_ratio_median"]
    log(f"the ruler ({ruler_mm:g} mm a tick): found in {len(ratios)} of {len(samples)} images; the spacing it gives "
        f"is {q:.3f}x the labels' (median)")
    if abs(q - 1) > RULER_DISAGREES:
        fits = suggested_pitch(ruler_mm / q)
        out["suggested_tick_mm"] = fits
        log(f"the ruler's spacing and the labels' differ by {q - 1:+.0%}: the labels fit a tick pitch of {fits:g} mm "
            f"(--ruler-mm {fits:g}?), not {ruler_mm:g}; or the labels' spacing is the detector's (about 10% larger "
            f"than the patient's)")
    return out


PITCHES_MM = (0.5, 1.0, 2.0, 2.5, 5.0, 10.0)     # rulers' usual tick pitches


def suggested_pitch(fitted_mm: float) -> float:
    """The tick pitch the labels' spacing implies: a usual pitch (:data:`PITCHES_MM`) within 5% of ``fitted_mm``,
    else ``fitted_mm`` to two decimals."""
    near = min(PITCHES_MM, key=lambda p: abs(fitted_mm / p - 1))
    return near if abs(fitted_mm / near - 1) <= 0.05 else round(fitted_mm, 2)


def adapt_site(data_dir: Path, out: Path, *, name: Optional[str] = None, fmt: str = "auto",
               split: Optional[Sequence[str]] = None, annotators: Sequence[str] = ("senior",),
               spacing: Union[float, Path, None] = None, model: Optional[Path] = None, backend: str = "auto",
               threads: Optional[int] = None, base: str = "consensus", ruler_mm: Optional[float] = None,
               magnification: Optional[float] = None, log: Callable[[str], None] = _log.info) -> SiteProfile:
    """Read the site's labelled images with the model, fit the site profile, write it to ``out`` (JSON) and
    return it. ``base``: the convention (a local stage beside the model) that reads the images and that the profile
    then follows. ``ruler_mm``, ``magnification``: the site's cephalostat, kept in the profile; the ruler is then
    read in the site's images and checked against their spacing. The log says the cross-validated error before and
    after on the site's own images."""
    from sdk import Detector

    det = Detector(model, backend=backend, threads=threads, site=base, ruler_mm=ruler_mm)
    if det.site is not None and det.site.moves:
        raise CephaloError(f"--base {base}: a site profile is learnt on a convention's reading, not on another site's")
    samples = read_site(data_dir, det.schema, fmt=fmt, split=split, annotators=annotators, spacing=spacing)
    log(f"{data_dir}: {len(samples)} labelled images ({','.join(annotators)}; "
        + (f"split {','.join(split)}" if split else "all images: no --split") + "; spacing "
        + (f"{spacing:g} mm (--spacing)" if isinstance(spacing, float) else
           f"from {spacing}" if spacing is not None else
           f"from {Path(data_dir) / 'spacing.csv'}" if (Path(data_dir) / "spacing.csv").is_file() else
           "0.1 mm (the ISBI default: no spacing.csv, no --spacing)") + ")"
        + ("" if det.site is None else f"; read by the {det.site.name!r} local stage, which the profile will follow"))
    from .runner import say_gaps

    say_gaps(samples, det.schema, log, "their landmark's offset and scores")
    results = det.batch([s.image for s in samples])
    _check_inside(samples, results, det.schema.names)
    pred = np.stack([r.xy for r in results])
    truth = np.stack([s.points for s in samples])
    sn = sn_lengths(pred, list(det.schema.names))
    grays = [_for_looks(det.preprocess(s.image)[2], n) for s, n in zip(samples, sn)]
    machine = np.array([r.ear_rods.machine_porion if r.ear_rods is not None else (np.nan, np.nan) for r in results])
    prof = fit_site(name or Path(out).stem, det.schema.id, det.schema.names, pred, truth,
                    [s.spacing for s in samples], grays=grays,
                    local_stage=None if det.site is None else det.site.local_stage, machine=machine)
    if ruler_mm is not None or magnification is not None:
        prof = replace(prof, ruler_mm=ruler_mm, magnification=check_magnification(magnification, "--magnification "))
    if ruler_mm is not None:
        prof.report["ruler"] = _ruler_check(results, samples, ruler_mm, log)
    prof.save(out)
    r = prof.report
    log(f"cross-validated on the site's own images (each corrected by a profile of the others): MRE "
        f"{r['before']['mre_mm']:.3f} -> {r['after_cv']['mre_mm']:.3f} mm, SDR@2mm {r['before']['sdr2']:.1f}% -> "
        f"{r['after_cv']['sdr2']:.1f}%")
    moved = sorted(((float(np.linalg.norm(o)), n) for n, o in zip(prof.names, prof.offsets)), reverse=True)[:5]
    for n, v in r.get("looks", {}).items():
        if v["kept"]:
            log(f"{n}: the site marks it on a structure that looks the same in its images; matched there: "
                f"{v['offset_only_mm']:.2f} -> {v['with_look_mm']:.2f} mm (cross-validated)")
    which = r.get("porion")
    rods = r.get("machine_porion", {})
    if rods.get("images"):
        log(f"ear rods found in {rods['rods_found']} of {rods['images']} images; the site's porion lies "
            + (f"{rods['to_rods_top_mm']:.1f} mm from their top and " if "to_rods_top_mm" in rods else "")
            + f"{rods['to_anatomical_mm']:.1f} mm from the anatomical porion (medians)")
    if which:
        log({"machine": "porion: this site marks machine porion (the ear rods' top): --site places porion there in "
                        "each image (cross-validated porion error "
                        + (f"{rods['cv_mre_mm']:.2f} mm" if "cv_mre_mm" in rods else "with its look") + "); where no "
                        "rod is found it stays at the site's offset, flagged; FH-based measurements say so",
             "other": f"porion: this site marks porion more than {PORION_APART_MM:g} mm from the anatomical one without "
                      f"a repeatable look (machine porion on rods that move? check the labels); moved by its offset",
             "anatomical": "porion: anatomical (the bony meatus's top), as the model reads it"}[which])
    sn_mm = float(np.median(sn * np.array([s.spacing for s in samples])))       # the site's own skulls
    log(f"largest offsets (mm, for the site's median S-N of {sn_mm:.0f} mm): "
        + (", ".join(f"{n} {v * sn_mm:.1f}" for v, n in moved if v > 0) or "none"))
    log(f"site profile {prof.name!r} -> {out}")
    return prof
