"""``Landmarks``: what a ``Detector`` call returns, in the given image's pixels and mm, with its flags, its
measurements and its record (JSON, CSV rows, a DICOM Structured Report)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .ear_rods import EarRods
from .errors import CephaloError
from .measurements import measure, unavailable
from .spacing import check_spacing


@dataclass(frozen=True)
class Landmarks:
    """The landmarks of one image.

    xy: (K, 2) float64, original-image pixels (pixel centres at integers). scores: (K,) float32 in [0, 1], the
    heatmap peak (low = unsure). spacing: mm per pixel or None; spacing_source: 'caller' | 'dicom' | 'ruler' | None.
    view: how the image was read: 'as given', or 'mirrored' / 'inverted' / 'mirrored+inverted' when the image was
    a facing-left or negative cephalogram, or 'rotated90' / 'rotated180' / 'rotated270' when the image had to be
    turned by that many degrees counter-clockwise to be read (points are always in the given image's pixels).
    point_flags: (K,) why each landmark is doubtful ('' = not flagged; :mod:`sdk.quality`). flags: image-level
    codes ('low_confidence', 'implausible_shape', 'points_outside_image'). notes: facts the user should know
    (e.g. an unusable DICOM spacing). source: the file the result belongs to ('<array>' / '<bytes>' otherwise).
    labels: whose landmark conventions the points follow: 'consensus', a convention ('challenge'), or a learnt
    site ('site:<name>'); ``Detector(site=)``.
    """

    xy: np.ndarray
    scores: np.ndarray
    names: Tuple[str, ...]
    image_size: Tuple[int, int]           # (height, width) in pixels
    spacing: Optional[float] = None
    spacing_source: Optional[str] = None
    schema: str = ""
    view: str = "as given"
    point_flags: Tuple[str, ...] = ()
    flags: Tuple[str, ...] = ()
    notes: Tuple[str, ...] = ()
    source: str = ""
    reliability: Optional[np.ndarray] = None   # (K,) P(within the calibration's tolerance, 4 mm), when calibrated
    labels: str = "consensus"
    float_precision: str = "f32"               # the networks' float parts' precision ('bf16' only when asked for)
    ruler: Optional[Dict] = None               # the ruler read for the spacing (pitch, P1/P2), when asked for
    repaired: Tuple[bool, ...] = ()            # (K,) read again where the other landmarks put it (sdk.repair)
    first_reading: Optional[np.ndarray] = None  # (K, 2) the points before repair, when some were repaired
    site_placed: Tuple[str, ...] = ()          # (K,) how a site profile placed each: 'offset', 'look' or '',
                                               # and porion 'machine' when it is the ear rods' top
    ear_rods: Optional["EarRods"] = None       # the ear rods' rings and machine porion, when found (sdk.ear_rods)

    @property
    def confidence(self) -> float:
        """Mean heatmap peak over the landmarks; below ``LOW_CONFIDENCE`` the result is not to be trusted."""
        return float(np.mean(self.scores)) if len(self.scores) else 0.0

    @property
    def flagged(self) -> np.ndarray:
        """(K,) bool: landmarks whose position is doubtful (see ``point_flags`` for why)."""
        return np.array([bool(f) for f in self.point_flags] if self.point_flags else [False] * len(self.names))

    @property
    def status(self) -> str:
        """'flagged' when the reading as a whole is doubtful (``flags``: not a cephalogram, points outside the
        image); else 'check' when some landmarks are (``point_flags``); else 'ok'."""
        if self.flags:
            return "flagged"
        return "check" if self.flagged.any() else "ok"

    @property
    def is_cephalogram(self) -> bool:
        """False when the model could not read the image as a lateral cephalogram (low confidence in every view,
        or a configuration no skull has): its points and measurements mean nothing."""
        return not ({"low_confidence", "implausible_shape"} & set(self.flags))

    def messages(self) -> List[str]:
        """Human-readable lines for the image-level flags and the flagged landmarks."""
        out = [FLAG_TEXT.get(f, f).format(conf=self.confidence, bar=LOW_CONFIDENCE) for f in self.flags]
        bad = [f"{n} ({why})" for n, why in zip(self.names, self.point_flags) if why]
        if bad and self.is_cephalogram:
            out.append(f"{len(bad)} landmark(s) flagged: " + ", ".join(bad))
        if self.spacing is None and self.is_cephalogram:
            out.append(NO_SPACING)
        fixed = [n for n, r in zip(self.names, self.repaired) if r]
        if fixed:
            out.append(f"{len(fixed)} landmark(s) repaired (read again where the other landmarks put them; the "
                       f"first reading was implausible): " + ", ".join(fixed))
        return out + list(self.notes)

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, name: str) -> np.ndarray:
        """(2,) point of landmark ``name``, original pixels."""
        try:
            return self.xy[self.names.index(name)]
        except ValueError:
            raise KeyError(f"no landmark {name!r}; this model has {list(self.names)}") from None

    def mm(self, spacing: Optional[float] = None) -> np.ndarray:
        """(K, 2) points in mm from the image's top-left pixel centre; ``spacing`` overrides the known one."""
        s = spacing if spacing is not None else self.spacing
        if s is None:
            raise CephaloError("no pixel spacing known for this image: pass spacing= (mm per pixel) to the "
                               "Detector call or to mm(), use a DICOM file, or a model with ruler points")
        return self.xy * check_spacing(s)

    def distance_mm(self, a: str, b: str) -> float:
        """Distance between landmarks ``a`` and ``b`` in mm."""
        pts = self.mm()
        return float(np.linalg.norm(pts[self.names.index(a)] - pts[self.names.index(b)]))

    def measurements(self, analyses: Optional[Sequence[str]] = None) -> Dict[str, Dict]:
        """Cephalometric angles, ratios and (with a spacing) distances computable from this schema, each with its
        norm, the landmarks it uses, ``doubtful`` (one of them is flagged) and, for the ISBI 2015 eight, the
        challenge's class (see :mod:`sdk.measurements`). ``analyses``: only these (``sdk.measurements.ANALYSES``:
        'isbi2015', 'steiner', 'downs', 'tweed', 'mcnamara', 'ricketts', 'wits', 'other'). Empty when the image
        was not read as a cephalogram."""
        if not self.is_cephalogram:
            return {}
        schema = self._schema()
        out = measure({n: self.xy[i] for i, n in enumerate(self.names)}, schema, self.spacing, analyses)
        for e in out.values():
            idx = [schema.index(n) for n in e["landmarks"]]
            if "porion" in e["landmarks"]:     # FH-based: which porion it used changes the value
                e["porion"] = self._porion_used(idx[e["landmarks"].index("porion")])
            e["landmarks"] = [self.names[i] for i in idx]
            e["doubtful"] = bool(self.point_flags) and any(self.point_flags[i] for i in idx)
        return out

    def _porion_used(self, k: int) -> str:
        """'anatomical' (the model's porion, on the meatus); 'machine' (the ear rods' top, :mod:`sdk.ear_rods`);
        or 'site:<name> offset' / 'site:<name> look' / 'site:<name> machine' when a site profile moved porion
        (landmark ``k``) by its average offset, onto its look, or onto the ear rods' top."""
        how = self.site_placed[k] if self.site_placed else ""
        if how == "machine" and self.labels in ("consensus", "challenge"):
            return "machine"
        return f"{self.labels} {how}" if how else "anatomical"

    def unavailable_measurements(self, analyses: Optional[Sequence[str]] = None) -> Dict[str, str]:
        """{measurement: why} for what this schema's landmarks, or a missing spacing, cannot give."""
        return unavailable(self._schema(), self.spacing, analyses)

    def _schema(self):
        from .schemas import get_schema, schema_from_dict

        try:
            return get_schema(self.schema) if self.schema else schema_from_dict(
                {"id": "custom", "landmarks": list(self.names)})
        except CephaloError:   # a custom schema known only to the model file: its names, no aliases
            return schema_from_dict({"id": self.schema, "landmarks": list(self.names)})

    def to_dicom_sr(self, source, model: str = "cephalo"):
        """This result as a DICOM Structured Report (TID 1500) referencing ``source``, the pydicom Dataset of the
        image read (for a JPEG/PNG, :func:`sdk.dicom_sr.source_dataset` wraps it as one). Needs the 'pacs'
        extra."""
        from .dicom_sr import measurement_report

        return measurement_report(self, source, model)

    def _repair_record(self, i: int) -> Dict:
        """A repaired landmark's record says so and keeps its first reading."""
        if not (self.repaired and self.repaired[i]):
            return {}
        return {"repaired": True, "first_reading": {"x": round(float(self.first_reading[i, 0]), 3),
                                                    "y": round(float(self.first_reading[i, 1]), 3)}}

    def to_dict(self, analyses: Optional[Sequence[str]] = None) -> Dict:
        """The JSON-ready record; ``analyses``: only these analyses' measurements (default: all)."""
        d = {
            "file": self.source,
            "status": self.status,
            "flags": list(self.flags),
            "messages": self.messages(),
            "schema": self.schema,
            "labels": self.labels,
            "float_precision": self.float_precision,
            "image_size": {"height": self.image_size[0], "width": self.image_size[1]},
            "spacing_mm": self.spacing,
            "spacing_source": self.spacing_source,
            "ruler": self.ruler,
            "view": self.view,
            "confidence": round(self.confidence, 4),
            "landmarks": [
                {"name": n, "x": round(float(self.xy[i, 0]), 3), "y": round(float(self.xy[i, 1]), 3),
                 "score": round(float(self.scores[i]), 4),
                 "reliability": None if self.reliability is None else round(float(self.reliability[i]), 4),
                 "flag": (self.point_flags[i] or None) if self.point_flags else None,
                 **self._repair_record(i),
                 **({"site_placed": self.site_placed[i]} if self.site_placed and self.site_placed[i] else {})}
                for i, n in enumerate(self.names)],
            "ear_rods": self.ear_rods.to_dict(self.spacing) if self.ear_rods is not None else None,
            "measurements": self.measurements(analyses),
            "unavailable_measurements": self.unavailable_measurements(analyses) if self.is_cephalogram else {},
        }
        if self.spacing is not None:
            mm = self.mm()
            for i, lm in enumerate(d["landmarks"]):
                lm["x_mm"], lm["y_mm"] = round(float(mm[i, 0]), 3), round(float(mm[i, 1]), 3)
        return d

    def to_json(self, **kw) -> str:
        return json.dumps(self.to_dict(), **kw)


NO_SPACING = ("no pixel spacing: measurements in mm are missing (give --spacing / spacing=, a DICOM file, or "
              "--ruler-mm / ruler_mm= to read the ruler in the image)")

FLAG_TEXT = {
    "low_confidence": "low confidence ({conf:.2f} < {bar}) in every view tried: the image may not be a lateral "
                      "cephalogram this model knows; its landmarks and measurements mean nothing",
    "implausible_shape": "the landmarks form no skull's configuration: the image may not be a lateral cephalogram",
    "points_outside_image": "some landmarks lie outside the image (a cropped or unusual field of view)",
}

# Mean heatmap peak below which a result is doubted (and, with auto_view, the other views are tried): between what
# cephalograms in the right view give and what mirrored or inverted ones give, with a margin on both sides
# (the measured ranges per model: lab/RESULTS.md).
LOW_CONFIDENCE = 0.6
