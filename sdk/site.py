"""A clinic's own landmark conventions, learnt from a handful of its labelled images (a *site profile*).

Every clinic places some landmarks its own way (porion on the ear rod or the meatus, menton, A point, soft tissue).
That is a systematic offset between the model's reading and the clinic's, which no image shows but a few labelled
images do. Each landmark's offset is measured in an anatomical frame (origin sella, first axis sella -> nasion,
second axis perpendicular, towards the face's lower half; lengths in units of S-N), so that it holds for skulls of
any size, framing, spacing or facing. The profile keeps each landmark's trimmed mean offset over the site's
images, shrunk towards zero by its own scatter (an offset that barely stands out from the noise of ten images moves
little); the error before and after is cross-validated (leave-one-out) inside those images. Where a site marks a
landmark on a structure that looks the same in each of its images (machine porion on the ear rod's ring), the
profile also keeps that structure's look and matches it around the offset point (:mod:`sdk.site_look`), again
only where leave-one-out shows that it pays. Numpy and OpenCV: fitting (``cephalo adapt``) and applying
(``Detector(site=)``).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .errors import CephaloError, ModelError, cause
from .local_stage import CONSENSUS, local_stage_conventions, local_stage_path
from .site_look import Look, fit_looks, refine, sn_lengths
from .spacing import check_magnification, check_ruler_mm

FORMAT = "cephalo-site-1"
MIN_IMAGES = 5
# A convention moves a landmark along its outline or to a neighbouring structure, a few mm; a median offset over a
# fifth of S-N (~14 mm) is a mislabelled or swapped column, not a convention.
MAX_OFFSET_SN = 0.2
# A site's offset is the trimmed mean (this share of its images left out at each end, per coordinate), shrunk by
# max(0, 1 - (SHRINK x its standard error / its length)^2). Chosen on the validation carve with each annotator as a
# site, against medians gated by leave-one-out and other strengths (lab/studies/site_shrink.py, lab/RESULTS.md).
TRIM = 0.2
SHRINK = 0.5
FRAME = ("sella", "nasion")
# A machine-porion site's labels sit on the ear rods' top within a few millimetres (a rim's middle or its outer
# edge, a click above it); further is another structure.
MAX_MACHINE_OFFSET_SN = 0.05
NAME = re.compile(r"[A-Za-z0-9_-]+")      # a convention's name: part of a file name beside the model


class SiteError(CephaloError, ValueError):
    """A site profile cannot be fitted or read (too few images, unknown landmarks, implausible offsets)."""


def check_offsets(offsets: np.ndarray, names: Sequence[str], where: str = "site profile") -> None:
    """Refuse offsets (K, 2; units of S-N) beyond what a convention moves (:data:`MAX_OFFSET_SN`), by name."""
    far = np.linalg.norm(np.asarray(offsets, np.float64), axis=1) > MAX_OFFSET_SN
    if far.any():
        bad = ", ".join(f"{names[k]} ({np.linalg.norm(offsets[k]) * 100:.3g}% of S-N)" for k in np.flatnonzero(far))
        raise SiteError(f"{where}: the offsets of {bad} lie beyond any convention (at most {MAX_OFFSET_SN:.0%} of "
                        f"S-N); the profile is not applied")


def frames(xy: np.ndarray, names: Sequence[str]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, K, 2) points -> origins (N, 2), rotation matrices (N, 2, 2) whose rows are the frame's axes, and S-N
    lengths (N,). The second axis points to the side of S-N where the landmarks' centroid lies."""
    names = list(names)
    if any(n not in names for n in FRAME):
        raise SiteError(f"a site profile needs landmarks {FRAME} for its frame; the schema has {names}")
    s, n = xy[:, names.index(FRAME[0])], xy[:, names.index(FRAME[1])]
    d = n - s
    length = np.linalg.norm(d, axis=1)
    if np.any(length < 1e-6):
        raise SiteError("sella and nasion coincide: no anatomical frame")
    e1 = d / length[:, None]
    e2 = np.stack([-e1[:, 1], e1[:, 0]], axis=1)
    side = np.sign(np.einsum("nj,nj->n", xy.mean(axis=1) - s, e2))
    e2 *= np.where(side == 0, 1.0, side)[:, None]
    return s, np.stack([e1, e2], axis=1), length


def to_frame(delta: np.ndarray, rot: np.ndarray, length: np.ndarray) -> np.ndarray:
    """(N, K, 2) image-pixel displacements -> frame units (S-N lengths)."""
    return np.einsum("nij,nkj->nki", rot, delta) / length[:, None, None]


def from_frame(off: np.ndarray, rot: np.ndarray, length: np.ndarray) -> np.ndarray:
    """(K, 2) frame offsets -> (N, K, 2) image-pixel displacements for each of N readings."""
    return np.einsum("nji,kj->nki", rot, off) * length[:, None, None]


def site_offsets(rel: np.ndarray) -> np.ndarray:
    """(N, K, 2) offsets in frame units (NaN where an image does not label a landmark) -> (K, 2): each landmark's
    trimmed mean over the images that label it, shrunk towards zero by its standard error (1.2533 sd / sqrt(N), sd
    from the median absolute deviation): see :data:`SHRINK`. A landmark no image labels moves by nothing."""
    rel = np.asarray(rel, np.float64)
    if np.isnan(rel).any():
        out = np.zeros(rel.shape[1:])
        for k in range(rel.shape[1]):
            have = np.isfinite(rel[:, k]).all(axis=1)
            if have.any():
                out[k] = _site_offsets(rel[have, k:k + 1])[0]
        return out
    return _site_offsets(rel)


def _site_offsets(rel: np.ndarray) -> np.ndarray:
    n = rel.shape[0]
    k = max(1, int(TRIM * n)) if n > 2 else 0
    mean = np.sort(rel, axis=0)[k:n - k].mean(axis=0)
    med = np.median(rel, axis=0)
    se = np.linalg.norm(1.2533 * 1.4826 * np.median(np.abs(rel - med), axis=0) / np.sqrt(n), axis=1)
    length = np.linalg.norm(mean, axis=1)
    return mean * np.clip(1 - (SHRINK * se) ** 2 / np.maximum(length, 1e-12) ** 2, 0, 1)[:, None]


@dataclass(frozen=True)
class SiteProfile:
    """A site's conventions: ``offsets`` (K, 2) in frame units for the landmarks ``names`` of ``schema``, applied
    to the reading of the local stage ``local_stage`` (a convention whose local stage lies beside the model,
    ``<model>.<local_stage>.local.onnx``; None: the model's own). A profile with no images is a convention alone
    (:meth:`convention`: the bundled 'challenge'): its local stage, nothing moved. ``ruler_mm`` and
    ``magnification``: the site's cephalostat, stated once here for ``Detector(site=)`` (:mod:`sdk.spacing`)."""

    name: str
    schema: str
    names: Tuple[str, ...]
    offsets: np.ndarray
    images: int
    gate: float = 0.0                      # the shrinkage the offsets were fitted with (SHRINK)
    report: Dict = field(default_factory=dict)     # what the fit measured (cross-validated before/after)
    looks: Dict[str, Look] = field(default_factory=dict)   # landmark -> its look at this site, where that pays
    local_stage: Optional[str] = None      # the convention whose local stage the offsets follow (None: the model's)
    ruler_mm: Optional[float] = None       # the site's cephalostat: its ruler's tick pitch, mm
    magnification: Optional[float] = None  # and its detector / mid-sagittal magnification, for DICOM spacings
    porion: Optional[str] = None           # 'machine': the site marks porion on the ear rods' top (sdk.ear_rods)
    machine_offset: Tuple[float, float] = (0.0, 0.0)   # its labels' median offset from the rods' top found, in
                                                       # image axes, units of S-N

    @classmethod
    def convention(cls, name: str, schema: str, names: Sequence[str]) -> "SiteProfile":
        """A convention that a local stage beside the model was trained on (e.g. 'challenge'): nothing to move."""
        return cls(name, schema, tuple(names), np.zeros((len(names), 2)), 0, local_stage=name)

    @property
    def label(self) -> str:
        """What a result's ``labels`` says when it follows this site: ``site:<name>`` for a learnt site, the
        convention's own name for a convention alone."""
        return f"site:{self.name}" if self.images else self.name

    @property
    def moves(self) -> bool:
        """Whether the profile moves any point (offsets or looks), rather than only picking a local stage."""
        return bool(self.looks) or bool(np.any(self.offsets != 0))

    def displacements(self, xy: np.ndarray) -> np.ndarray:
        """(K, 2) pixel displacements this site's conventions add to one reading ``xy`` (K, 2)."""
        _, rot, length = frames(xy[None], self.names)
        return from_frame(self.offsets, rot, length)[0]

    def apply(self, xy: np.ndarray, gray: Optional[np.ndarray] = None, reduction: int = 1) -> np.ndarray:
        """(K, 2) points of the model -> the site's convention (:meth:`place` without its notes)."""
        return self.place(xy, gray, reduction)[0]

    def place(self, xy: np.ndarray, gray: Optional[np.ndarray] = None,
              reduction: int = 1) -> Tuple[np.ndarray, Tuple[str, ...], Tuple[str, ...]]:
        """(K, 2) points of the model -> the site's convention: the offsets, then, given the image (``gray``
        decoded at 1/``reduction``), each look matched around its landmark. Also returns notes naming each look
        that was not found (that landmark then stays at the site's average offset), and per landmark how the
        site placed it: 'look' (matched to the site's look), 'offset' (moved by its average offset) or ''
        (the model's reading)."""
        out = np.asarray(xy, dtype=np.float64) + self.displacements(xy)
        how = ["offset" if np.any(o != 0) else "" for o in self.offsets]
        if not self.looks or gray is None:
            return out, (), tuple(how)
        idx = {self.names.index(n): look for n, look in self.looks.items()}
        out, scores = refine(gray, reduction, out, float(sn_lengths(np.asarray(xy)[None], list(self.names))[0]), idx)
        notes = tuple(f"the site's look of {self.names[k]} was not found (match {scores[k]:.2f} < "
                      f"{look.min_score:.2f}): {self.names[k]} is at the site's average offset"
                      for k, look in idx.items() if scores[k] < look.min_score)
        for k, look in idx.items():
            if scores[k] >= look.min_score:
                how[k] = "look"
        return out, notes, tuple(how)

    def offsets_mm(self, sn_mm: float = 70.0) -> Dict[str, List[float]]:
        """Each landmark's offset in mm along S-N and across it, for a skull whose S-N is ``sn_mm``."""
        return {n: [round(float(v) * sn_mm, 2) for v in o] for n, o in zip(self.names, self.offsets)}

    def to_dict(self) -> Dict:
        return {"format": FORMAT, "name": self.name, "schema": self.schema, "names": list(self.names),
                "offsets_sn": np.round(self.offsets, 6).tolist(), "images": self.images, "gate": self.gate,
                "report": self.report, "looks": {n: v.to_dict() for n, v in self.looks.items()},
                "local_stage": self.local_stage, "ruler_mm": self.ruler_mm, "magnification": self.magnification,
                "porion": self.porion, "machine_offset_sn": [round(float(v), 6) for v in self.machine_offset]}

    def save(self, path: Union[str, Path]) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1), encoding="utf-8")
        return path

    @classmethod
    def from_dict(cls, d: Dict, where: str = "site profile") -> "SiteProfile":
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise SiteError(f"{where}: not a cephalo site profile (format {FORMAT!r} expected)")
        try:
            names = tuple(str(n) for n in d["names"])
            off = np.asarray(d["offsets_sn"], dtype=np.float64)
            looks = {str(n): Look.from_dict(v) for n, v in dict(d.get("looks", {})).items()}
            base = d.get("local_stage")
            if base is not None and (not isinstance(base, str) or not NAME.fullmatch(base)):
                raise ValueError(f"local_stage {base!r} is not a convention's name (letters, digits, - and _)")
            machine = (check_ruler_mm(d.get("ruler_mm"), "ruler_mm "),
                       check_magnification(d.get("magnification"), "magnification "))
            porion = d.get("porion")
            if porion not in (None, "machine"):
                raise ValueError(f"porion {porion!r} is not 'machine' (or absent)")
            moff = tuple(float(v) for v in d.get("machine_offset_sn", (0.0, 0.0)))
            if len(moff) != 2 or not all(np.isfinite(moff)) or np.hypot(*moff) > MAX_MACHINE_OFFSET_SN:
                raise ValueError(f"machine_offset_sn {moff} is not two finite numbers within "
                                 f"{MAX_MACHINE_OFFSET_SN} of S-N")
            prof = cls(str(d["name"]), str(d["schema"]), names, off, int(d["images"]), float(d.get("gate", 0.0)),
                       dict(d.get("report", {})), looks, base, *machine, porion, moff)
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError, RecursionError, CephaloError) as e:
            raise SiteError(f"{where}: malformed ({type(e).__name__}: {cause(e)})") from None
        if off.shape != (len(names), 2) or not np.all(np.isfinite(off)):
            raise SiteError(f"{where}: offsets must be {len(names)} finite (x, y) pairs")
        if len(set(names)) != len(names):
            raise SiteError(f"{where}: a landmark is named twice")
        if any(n not in names for n in looks):
            raise SiteError(f"{where}: looks for landmarks the profile does not name: {sorted(set(looks) - set(names))}")
        # the bounds that adapt applies when it writes a profile: one edited by hand, corrupted, or from elsewhere
        # is refused by name, never applied
        check_offsets(off, names, where)
        if prof.images < 0 or not np.isfinite(prof.gate) or not 0 <= prof.gate <= 10:
            raise SiteError(f"{where}: images {prof.images} and gate {prof.gate} must be a count and a shrinkage")
        bad = [n for n, look in looks.items() if not -1.0 <= look.min_score <= 1.0]
        if bad:
            raise SiteError(f"{where}: the looks of {bad} have a match threshold outside [-1, 1]")
        return prof

    @classmethod
    def load(cls, path: Union[str, Path]) -> "SiteProfile":
        path = Path(path)
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:   # RecursionError: nested too deep
            raise SiteError(f"site profile {path}: cannot be read as JSON ({type(e).__name__}: {cause(e)})") from None
        return cls.from_dict(d, f"site profile {path}")

    def check_schema(self, schema: str, names: Sequence[str]) -> None:
        """Refuse a profile made for another model's landmarks."""
        if self.schema != schema or tuple(self.names) != tuple(names):
            raise SiteError(f"site profile {self.name!r} is for schema {self.schema!r}; the model reads {schema!r}")


def resolve_site(model_path: Path, site: Union[str, Path, SiteProfile, None], schema,
                 local_stage: Union[bool, str, Path, None] = True) -> Tuple[Optional[SiteProfile],
                                                                            Union[bool, str, Path, None]]:
    """A Detector's ``site=`` and ``local_stage=`` for the model at ``model_path`` (its :class:`sdk.schemas.Schema`
    ``schema``) -> (the site profile or None, the local stage's file or False/None for none).

    ``site``: a SiteProfile, a profile's file, or the name of a convention whose local stage lies beside the model
    ('challenge'; 'consensus' is the default: None). A site that follows a convention's local stage takes that
    file; ``local_stage=True`` finds ``<model>.local.onnx`` beside the model."""
    prof = None
    if isinstance(site, SiteProfile):
        prof = site
    elif isinstance(site, str) and NAME.fullmatch(site) and not Path(site).is_file():
        if site != CONSENSUS:
            if not local_stage_path(model_path, site).is_file():
                raise ModelError(f"site={site!r}: no such site profile file, nor a convention with a local stage "
                                 f"beside model {model_path} (looked for {local_stage_path(model_path, site).name}); "
                                 f"it has: {', '.join(local_stage_conventions(model_path)) or 'none'}")
            prof = SiteProfile.convention(site, schema.id, schema.names)
    elif site is not None:
        prof = SiteProfile.load(site)
    if prof is not None:
        prof.check_schema(schema.id, schema.names)
    if prof is not None and prof.local_stage is not None:
        base = prof.local_stage
        if local_stage is not True:
            raise ModelError(f"site {prof.name!r} follows the local stage for {base!r} beside the model; it "
                             f"cannot go with local_stage={local_stage!r}")
        if not local_stage_path(model_path, base).is_file():
            raise ModelError(f"model {model_path} has no local stage for {base!r} (looked for "
                             f"{local_stage_path(model_path, base).name}), which site {prof.name!r} follows; it "
                             f"has: {', '.join(local_stage_conventions(model_path)) or 'none'}")
        return prof, local_stage_path(model_path, base)
    if local_stage is True:
        return prof, local_stage_path(model_path) if local_stage_path(model_path).is_file() else False
    return prof, local_stage


def _errors_mm(pred: np.ndarray, truth: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """(N, K) errors in mm; NaN where the label is missing."""
    return np.linalg.norm(pred - truth, axis=2) * spacing[:, None]


def _mre_sdr(err: np.ndarray) -> Dict:
    e = err[np.isfinite(err)]
    return {"mre_mm": round(float(e.mean()), 4), "sdr2": round(float((e <= 2).mean()) * 100, 2)}


# A porion the site puts this far from the model's anatomical one (mm, median) is not the bony meatus's top.
PORION_APART_MM = 3.0


def _which_porion(names: Sequence[str], offsets: np.ndarray, looks: Dict, sn_mm: float) -> str:
    """Which porion the site marks, for the user: 'machine' where the site's porion looks the same in each of its
    images (the ear rod's ring: a look was kept), 'other' where it lies far from the anatomical one without such a
    look, else 'anatomical'."""
    if "porion" in looks:
        return "machine"
    apart = float(np.linalg.norm(offsets[list(names).index("porion")])) * sn_mm
    return "other" if apart > PORION_APART_MM else "anatomical"


# A site marks machine porion when its porion labels sit on the ear rods' top found in its images: the median
# distance within this (mm), less than half the distance to the anatomical porion, with rods found on most images.
MACHINE_WITHIN_MM = 2.0
MACHINE_FOUND_SHARE = 0.6


def machine_porion_fit(names: Sequence[str], pred: np.ndarray, truth: np.ndarray, machine: np.ndarray,
                       mm: np.ndarray) -> Tuple[Dict, Optional[np.ndarray], Optional[np.ndarray]]:
    """Whether a site's porion labels sit on the ear rods' top (``machine`` (N, 2): the rods' top found in each
    image, NaN where none; ``mm`` (N,) its spacing): (the report, the offset from the rods' top to the labels in
    image axes and units of S-N or None, the cross-validated porion placed that way (N, 2) or None). Where an image
    has no rods, its porion is left to the site's offset (NaN in the placed array)."""
    k = list(names).index("porion")
    s_n = np.linalg.norm(pred[:, names.index(FRAME[1])] - pred[:, names.index(FRAME[0])], axis=1)
    found = np.isfinite(machine).all(axis=1) & np.isfinite(truth[:, k]).all(axis=1)
    labelled = np.isfinite(truth[:, k]).all(axis=1)
    if not labelled.any():
        return {"rods_found": 0, "images": 0}, None, None
    to_anat = float(np.median(np.linalg.norm(truth[labelled, k] - pred[labelled, k], axis=1) * mm[labelled]))
    rep = {"rods_found": int(found.sum()), "images": int(labelled.sum()), "to_anatomical_mm": round(to_anat, 2)}
    if found.sum() < max(3, MACHINE_FOUND_SHARE * labelled.sum()):
        return rep, None, None
    rel = (truth[found, k] - machine[found]) / s_n[found, None]
    to_rods = float(np.median(np.linalg.norm(truth[found, k] - machine[found], axis=1) * mm[found]))
    rep["to_rods_top_mm"] = round(to_rods, 2)
    if not (to_rods <= MACHINE_WITHIN_MM and to_rods < 0.5 * to_anat):
        return rep, None, None
    offset = np.median(rel, axis=0)
    if np.hypot(*offset) > MAX_MACHINE_OFFSET_SN:
        return rep, None, None
    placed = np.full((len(pred), 2), np.nan)
    idx = np.flatnonzero(found)
    for j, i in enumerate(idx):         # leave-one-out: each image placed by the others' offset
        others = np.delete(rel, j, axis=0)
        placed[i] = machine[i] + (np.median(others, axis=0) if len(others) else 0) * s_n[i]
    err = np.linalg.norm(placed[found] - truth[found, k], axis=1) * mm[found]
    rep.update(offset_mm=[round(float(v), 2) for v in offset * float(np.median(s_n * mm))],
               cv_mre_mm=round(float(err.mean()), 3))
    return rep, offset, placed


def fit_site(name: str, schema: str, names: Sequence[str], pred: np.ndarray, truth: np.ndarray,
             spacing: Optional[Sequence[float]] = None,
             grays: Optional[Sequence[Tuple[np.ndarray, int]]] = None,
             local_stage: Optional[str] = None, machine: Optional[np.ndarray] = None) -> SiteProfile:
    """Fit a site profile from N readings ``pred`` (N, K, 2) of the model and the site's labels ``truth``
    (N, K, 2) of the same images (pixels; ``spacing`` (N,) mm per pixel for the report, 0.1 if unknown).

    The offsets are :func:`site_offsets`; the report's error after is cross-validated (leave-one-out: each image
    corrected by the profile of the others). With ``grays`` (each image as (gray, reduction), the
    points in full-image pixels), looks are fitted where they pay (:func:`sdk.site_look.fit_looks`).
    ``local_stage``: the convention whose local stage read ``pred`` (None: the model's own). The report
    holds the cross-validated MRE and SDR@2mm before and after, per landmark too. ``machine`` (N, 2): the ear rods'
    top found in each image (NaN where none, :mod:`sdk.ear_rods`); where the site's porion labels sit on it, the
    profile marks machine porion (:func:`machine_porion_fit`) and porion is placed on the rods' top."""
    pred, truth = np.asarray(pred, np.float64), np.asarray(truth, np.float64)
    n = len(pred)
    if n < MIN_IMAGES:
        raise SiteError(f"a site profile needs at least {MIN_IMAGES} labelled images, got {n}")
    if pred.shape != truth.shape or pred.ndim != 3 or pred.shape[1:] != (len(names), 2):
        raise SiteError(f"readings {pred.shape} and labels {truth.shape} must both be (N, {len(names)}, 2)")
    mm = np.full(n, 0.1) if spacing is None else np.asarray(spacing, np.float64)
    _, rot, length = frames(pred, names)
    rel = to_frame(truth - pred, rot, length)
    labelled = np.isfinite(truth).all(axis=2)                 # (N, K): a blank cell is an unlabelled point
    if not labelled.any(axis=0).all():
        raise SiteError(f"no image labels {[names[k] for k in np.flatnonzero(~labelled.any(axis=0))]}")
    with np.errstate(all="ignore"):
        med = np.nanmedian(rel, axis=0)
    far = np.linalg.norm(med, axis=1) > MAX_OFFSET_SN
    if far.any():
        bad = ", ".join(f"{names[k]} ({np.linalg.norm(med[k]) * 100:.0f}% of S-N)" for k in np.where(far)[0])
        raise SiteError(f"the labels of {bad} lie far beyond any convention from the model's reading: a "
                        f"mislabelled or swapped column? (at most {MAX_OFFSET_SN:.0%} of S-N is accepted)")
    before = _errors_mm(pred, truth, mm)
    placed = np.empty_like(pred)
    for i in range(n):
        others = np.arange(n) != i
        placed[i] = pred[i] + from_frame(site_offsets(rel[others]), rot[i:i + 1], length[i:i + 1])[0]
    after = offsets_only = _errors_mm(placed, truth, mm)
    looks, look_report = {}, {}
    if grays is not None:
        if len(grays) != n:
            raise SiteError(f"got {len(grays)} images for {n} readings")
        kept, per, looked = fit_looks(grays, placed, truth, sn_lengths(pred, list(names)), mm)
        looks = {names[k]: v for k, v in kept.items()}
        look_report = {names[k]: v for k, v in per.items()}
        after = _errors_mm(looked, truth, mm)
    report = {"images": n, "offsets": f"trimmed mean ({TRIM:.0%} each end), shrunk by {SHRINK}",
              "offsets_only_cv_mre_mm": _mre_sdr(offsets_only)["mre_mm"],
              "before": _mre_sdr(before), "after_cv": _mre_sdr(after),
              "per_landmark_mm": {nm: [round(float(np.nanmean(before[:, k])), 3), round(float(np.nanmean(after[:, k])), 3)]
                                  for k, nm in enumerate(names)},
              "missing_labels": {names[k]: int((~labelled[:, k]).sum()) for k in range(len(names))
                                 if (~labelled[:, k]).any()}}
    if grays is not None:
        report["looks"] = look_report
    offsets = site_offsets(rel)
    check_offsets(offsets, names, "the fitted site profile")    # what loading it will check
    porion, moff = None, (0.0, 0.0)
    if "porion" in names:
        report["porion"] = _which_porion(names, offsets, looks, float(np.median(length * mm)))
        if machine is not None:
            rods, offset, placed_rods = machine_porion_fit(names, pred, truth, np.asarray(machine, np.float64), mm)
            report["machine_porion"] = rods
            if offset is not None:      # the rods' top, where found, supersedes any look of porion
                k = list(names).index("porion")
                looks.pop("porion", None)
                ok = np.isfinite(placed_rods).all(axis=1)
                after[ok, k] = np.linalg.norm(placed_rods[ok] - truth[ok, k], axis=1) * mm[ok]
                report["after_cv"] = _mre_sdr(after)
                report["per_landmark_mm"]["porion"][1] = round(float(np.nanmean(after[:, k])), 3)
                report["porion"] = "machine"
                porion, moff = "machine", tuple(float(v) for v in offset)
    return SiteProfile(name, schema, tuple(names), offsets, n, SHRINK, report, looks, local_stage,
                       porion=porion, machine_offset=moff)
