"""``Detector``: image -> landmarks in original pixels and mm (:class:`sdk.result.Landmarks`). ``preprocess ->
backend.run -> postprocess``."""
from __future__ import annotations

import os
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from copy import copy
from dataclasses import replace
from itertools import islice
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from .backends import open_backend
from .decode import decode_to_image
from .ear_rods import find_rings
from .errors import BatchError, CephaloError, ModelError, cause
from .framing import crop_or_pad, framing
from .image_io import ImageInput, LoadedImage, load_image
from .local_stage import CONSENSUS, LOCAL_STAGE, STAGE_KEY, LocalStage, head_turn
from .preprocess import Letterbox, pad_pixel
from .quality import COND_Z, IMPLAUSIBLE, assess, shape_model
from .reading import Evidence, Reading
from .renamed import renamed
from .repair import ReadingFrame, repair_points
from .result import LOW_CONFIDENCE, Landmarks
from .ruler import read_ruler
from .site import SiteProfile, resolve_site
from .site_look import to_gray
from .spacing import check_magnification, check_ruler_mm, check_spacing
from .views import VIEWS, view_image, view_points_back

MODELS_DIR = Path(__file__).resolve().parent / "models"
DEFAULT_MODEL = "isbi19_default_int8.onnx"  # see models/MODEL_CARD.md for what it is


RULER_DISAGREES = 0.05    # a ruler and a DICOM spacing further apart than this are both reported
PORIONS = ("anatomical", "machine")
SN_MM = 70.0              # a typical adult S-N length: the ear rods' search scale in an image without a spacing
RESEEK_MM = 6.0           # the final porion this far from the first stage's: the ear rods are looked for again


class Detector:
    """Finds cephalometric landmarks with an ONNX or OpenVINO model that carries the cephalo metadata.

    ``Detector()`` uses the bundled model. ``backend``: 'auto' (OpenVINO when installed, else onnxruntime),
    'openvino' or 'onnxruntime'. ``threads``: inference threads (default: all cores). ``fast_decode`` (default):
    decode large JPEG files at 1/2-1/8 scale, never below the local stage's fine scale (faster; points move by a
    small fraction of a millimetre); False: a file gives exactly the points
    of its pixels passed as an array. ``auto_view``: when a result's confidence is low, also read the
    image mirrored (a facing-left cephalogram), inverted (a negative) and both, and keep the reading the model is
    sure of; costs nothing on a normal image. ``local_stage``: run the model's local stage (a second, small model on
    crops around each landmark at a finer scale, :mod:`sdk.local_stage`): True uses ``<model>.local.onnx`` beside
    the model file when there is one, a path names the file, False turns it off. ``reframe`` (default): when the
    field is much wider than the training images' (another machine's field; the skull small in the model input),
    read the image again cropped to their framing (:mod:`sdk.framing`; one more model call, only then; the
    result's ``notes`` say so). ``site``: whose landmark conventions the points
    follow. None (default): the clinicians' consensus. A name: a convention whose local stage lies beside the model
    (``<model>.<name>.local.onnx``; the bundled model has 'challenge', the ISBI 2015 challenge's official ground
    truth, for comparing with published results). A site profile (a path written by ``cephalo adapt``, or a
    :class:`sdk.site.SiteProfile`): the points are moved onto that clinic's conventions, learnt from its own
    labelled images (on top of the convention it was learnt on). ``labels`` of each result names the site or
    convention; the flags judge the model's reading before any move. ``precision``: 'f32' (default) or 'bf16'
    (OpenVINO on a CPU with native bf16 runs the float parts in bf16: a little faster there, points not bit for
    bit). ``repair`` (default): a landmark the shape check
    finds implausible is read again by the local stage where the other landmarks put it, and kept when it then fits
    (:mod:`sdk.repair`; the result's ``repaired`` and ``first_reading`` say which, and from where).
    ``ruler_mm``: the tick pitch of the cephalostat's ruler; an image with no given or DICOM spacing gets its
    spacing from the ruler read in it (:mod:`sdk.ruler`). ``magnification``: DICOM detector spacings are divided by
    it. Both default to what the site profile states, if anything. Old names (``refine=``, ``labels=``) still
    work (:mod:`sdk.renamed`). Calls are thread-safe.
    """

    local: Optional[LocalStage] = None     # the local stage in use, if any
    labels: str = CONSENSUS                # whose conventions the points follow (the site's label, or consensus)
    precision: str = "f32"                 # the networks' float precision

    def __init__(self, model: Union[str, Path, None] = None, backend: str = "auto", threads: Optional[int] = None,
                 fast_decode: bool = True, auto_view: bool = True, local_stage: Union[bool, str, Path] = True,
                 reframe: bool = True, site: Union[str, Path, SiteProfile, None] = None, repair: bool = True,
                 precision: str = "f32", ruler_mm: Optional[float] = None, magnification: Optional[float] = None,
                 ear_rods: bool = True, porion: Optional[str] = None, **old_names):
        given = renamed({k: v for k, v in old_names.items() if not (k == "labels" and v == CONSENSUS)},
                        {"local_stage": None if local_stage is True else local_stage, "site": site}, "Detector()",
                        error=ModelError)
        local_stage = True if given["local_stage"] is None else given["local_stage"]
        path = Path(model) if model is not None else MODELS_DIR / DEFAULT_MODEL
        if not path.is_file():
            raise ModelError(f"model file {path} does not exist" +
                             ("" if model is not None else " (the bundled model is missing from this install)"))
        self.model_path = path
        self._backend = open_backend(path, backend, threads, precision)
        self.precision = precision
        self.meta = self._backend.meta
        if self.meta.extra.get(STAGE_KEY) == LOCAL_STAGE:
            raise ModelError(f"model {path} is a local-stage model (patches, not whole images): pass it as "
                             f"local_stage= beside its first-stage model")
        self.schema = self.meta.schema
        try:
            self._pre = self.meta.preprocessing
        except (TypeError, ValueError) as e:
            raise ModelError(f"model {path}: {e}") from None
        self._twins: Dict[int, "Detector"] = {}     # concurrent set-ups for stream(), made on first use
        self._twins_lock = threading.Lock()          # guards the twins and the helper
        self._helper_pool: Optional[ThreadPoolExecutor] = None
        self._helper_pid = 0
        self._overlaps = True                          # False on a concurrent twin: its cores are busy already
        self.fast_decode = bool(fast_decode)
        self.auto_view = bool(auto_view)
        self.reframe = bool(reframe)
        self.repair = bool(repair)
        ruler_mm, magnification = check_ruler_mm(ruler_mm), check_magnification(magnification)
        self.site, local_stage = resolve_site(path, given["site"], self.schema, local_stage)
        self.labels = self.site.label if self.site is not None else CONSENSUS
        # the cephalostat's constants: as given, else as the site's profile states them
        self.ruler_mm = ruler_mm if ruler_mm is not None or self.site is None else self.site.ruler_mm
        self.magnification = (magnification if magnification is not None or self.site is None
                              else self.site.magnification)
        if local_stage is not False and local_stage is not None:
            self.local = LocalStage(local_stage, backend, threads, self.meta.input_hw, precision)
            self.local.check_pairs_with(self.meta, path)
        if porion not in (None,) + PORIONS:
            raise CephaloError(f"porion={porion!r}: one of {', '.join(PORIONS)} expected")
        # which porion the 'porion' landmark is: as asked, else as the site marks it, else the anatomical one
        self.porion = porion or (self.site.porion if self.site is not None else None) or "anatomical"
        names = self.schema.names
        self._rod_points = ([names.index(n) for n in ("porion", "sella", "nasion")]
                            if {"porion", "sella", "nasion"} <= set(names) else None)
        if self.porion == "machine" and self._rod_points is None:
            raise ModelError(f"porion='machine' needs a schema with porion, sella and nasion; {self.schema.id!r} "
                             f"has {list(names)}")
        self.ear_rods = self._rod_points is not None and (bool(ear_rods) or self.porion == "machine")

    @property
    def info(self) -> Dict:
        """Model metadata plus the backend and thread count actually in use."""
        m = self.meta
        return {"model": str(self.model_path), "backend": self._backend.name, "threads": self._backend.threads,
                "schema": m.schema.id, "landmarks": list(m.schema.names), "input_hw": list(m.input_hw),
                "channels": m.channels, "heatmap_stride": m.heatmap_stride, "sigma": m.sigma, "decoder": m.decoder,
                "trained_on": m.trained_on, "accuracy": m.accuracy, **m.extra,
                "local_stage": str(self.local.path) if self.local else None, "labels": self.labels,
                "site": self.site.name if self.site is not None else None,
                "float_precision": self.precision,
                "local_stage_accuracy": self.local.meta.accuracy if self.local else None}

    # -- the three steps -----------------------------------------------------------------------------------------
    def preprocess(self, image: ImageInput) -> Tuple[np.ndarray, Letterbox, LoadedImage]:
        """Image -> ((C, H, W) float32 input, its Letterbox, the decoded image)."""
        return self._pre.prepare(image, self.fast_decode, self.local.factor if self.local is not None else None)

    def postprocess(self, heatmaps: np.ndarray, lb: Letterbox, loaded: LoadedImage,
                    spacing: Optional[float], gray: Optional[np.ndarray] = None) -> Landmarks:
        """(K, h, w) heatmaps -> Landmarks in original pixels (and mm when a spacing is known), with its flags.

        With a local stage, each point is then re-read on ``gray`` (default ``loaded.gray``: the pixels the first
        stage saw). Scores stay the first stage's heatmap peaks.
        """
        spacing = None if spacing is None else check_spacing(spacing)
        return self._assess(self._read(heatmaps, lb, loaded, spacing, gray)).result

    def _read(self, heatmaps: np.ndarray, lb: Letterbox, loaded: LoadedImage, spacing: Optional[float],
              gray: Optional[np.ndarray] = None) -> Reading:
        """The decoded points (through the local stage when there is one), not yet assessed, with the local
        stage's move and heatmap peak per point as their evidence."""
        m = self.meta
        if heatmaps.shape[0] != m.schema.k:
            raise ModelError(f"model {self.model_path} outputs {heatmaps.shape[0]} heatmaps, its schema "
                             f"{m.schema.id!r} has {m.schema.k} landmarks")
        gray = loaded.gray if gray is None else gray
        xy, scores = decode_to_image(heatmaps, lb, m.heatmap_stride, m.sigma, m.decoder)
        evidence, turn, zoom = Evidence(), 0.0, 1.0
        if self.local is not None:
            turn, zoom = head_turn(xy, m.schema), self.local.zoom(xy, lb)
            local, peaks = self.local.locate_with_peaks(gray, lb, xy, loaded.reduction, turn, zoom)
            evidence = Evidence(shift=np.linalg.norm((local - xy) * np.array([lb.scale_x, lb.scale_y]), axis=1),
                                local_peak=peaks)
            xy = local
        src = None
        if spacing is not None:
            src = "caller"
        elif loaded.spacing is not None:
            spacing, src = loaded.spacing, "dicom"
        elif m.schema.ruler is not None:
            a, b, mm = m.schema.ruler
            d = float(np.linalg.norm(xy[m.schema.names.index(a)] - xy[m.schema.names.index(b)]))
            if d > 1.0:
                spacing, src = mm / d, "ruler"
        res = Landmarks(xy, scores, m.schema.names, (lb.src_h, lb.src_w), spacing, src, m.schema.id,
                        notes=loaded.notes, source=loaded.source, labels=self.labels,
                        float_precision=self.precision)
        return Reading(res, ReadingFrame(gray, lb, loaded.reduction, np.zeros(2), turn, zoom), evidence)

    def _assess(self, reading: Reading) -> Reading:
        """``reading`` with its flags and reliabilities (:mod:`sdk.quality`), in the given image's pixels, and the
        shape distances they came from in its evidence."""
        res, ev = reading.result, reading.evidence
        a = assess(res.xy, res.scores, res.image_size, res.schema, res.names, ev.shift, ev.local_peak,
                   self.local.calibration if self.local is not None else None,
                   mirrored=res.view.startswith("mirrored"))
        flags = (("low_confidence",) if res.confidence < LOW_CONFIDENCE else ()) + a.flags
        shape_z = a.shape_z if shape_model(res.schema, res.names) is not None else None
        return replace(reading, result=replace(res, point_flags=a.reasons, flags=flags, reliability=a.reliability),
                       evidence=replace(ev, shape_z=shape_z))

    def run_network(self, x: np.ndarray) -> np.ndarray:
        """The first-stage network alone: (N, C, H, W) float32 input (as :meth:`preprocess` makes) -> (N, K, h, w)
        heatmaps. For benchmarks and studies that time or probe the network without the pipeline around it."""
        return self._run(np.ascontiguousarray(x, dtype=np.float32))

    def _run(self, x: np.ndarray) -> np.ndarray:
        try:
            return self._backend.run(x)
        except CephaloError:
            raise
        except Exception as e:   # a runtime's own error type: say which model, keep the cause
            raise ModelError(f"model {self.model_path}: inference failed ({type(e).__name__}: "
                             f"{cause(e)})") from e

    def __call__(self, image: ImageInput, spacing: Optional[float] = None) -> Landmarks:
        """Landmarks of one image (path, file bytes, or (H, W[, C]) uint8/uint16 array)."""
        return self._detect(image, spacing).result

    def evidence(self, image: ImageInput, spacing: Optional[float] = None) -> Tuple[Landmarks, Evidence]:
        """:meth:`__call__`, plus what the flags are computed from, per landmark (:class:`sdk.reading.Evidence`:
        the local stage's move and heatmap peak, the shape distance). For fitting a calibration (``cephalo
        calibrate``) and for studies."""
        reading = self._detect(image, spacing)
        return reading.result, reading.evidence

    def _detect(self, image: ImageInput, spacing: Optional[float]) -> Reading:
        spacing = None if spacing is None else check_spacing(spacing)   # before any work
        try:
            x, lb, loaded = self.preprocess(image)
            # the ruler is read on a helper thread while the networks run: they leave part of the cores idle
            ruler = (self._helper().submit(read_ruler, loaded.gray)
                     if self._overlaps and self.ruler_mm is not None and spacing is None else None)
            hm = self._run(x[None])[0]
            rods = self._seek_ear_rods(hm, lb, loaded, spacing)     # on the helper while the local stage runs
            reading = self._read(hm, lb, loaded, spacing)
            if self.reframe:
                reading = self._reframed(reading, loaded, spacing)
            reading = self._settle(reading, loaded, spacing)
            if self.repair:
                reading = self._repaired(reading)
            if self.ruler_mm is not None or self.magnification is not None:
                reading = self._measured_spacing(reading, loaded, ruler)
            if self.ear_rods:
                reading = self._found_ear_rods(reading, loaded, rods)
            if self.site is not None and self.site.moves:   # after the flags judged the model's reading
                reading = self._placed_by_site(reading, loaded)
            if self.porion == "machine":
                reading = self._machine_porion(reading)
            return reading
        except CephaloError:
            raise
        except Exception as e:   # never a bare library error: name the image and keep the cause
            raise CephaloError(f"image {_name(image)}: {type(e).__name__}: {cause(e)}") from e

    def _helper(self) -> ThreadPoolExecutor:
        """One worker thread for work that overlaps the networks, made on first use."""
        with self._twins_lock:
            # a process forked from this one has no thread behind the pool it inherited: it makes its own
            if self._helper_pool is None or self._helper_pid != os.getpid():
                self._helper_pool = ThreadPoolExecutor(1, thread_name_prefix="cephalo-helper")
                self._helper_pid = os.getpid()
            return self._helper_pool

    def _measured_spacing(self, reading: Reading, loaded: LoadedImage, ruler: Optional[Future] = None) -> Reading:
        """``reading`` with its spacing by precedence: the caller's, then DICOM's (divided by ``magnification`` when
        given), then the ruler's (``ruler_mm`` over its tick pitch, :mod:`sdk.ruler`; ``ruler``: its reading under
        way). The ruler is read whenever asked for and no spacing was given, so that a DICOM spacing it disagrees
        with by more than :data:`RULER_DISAGREES` is said in the notes."""
        res = reading.result
        spacing, src, notes, info = res.spacing, res.spacing_source, list(res.notes), None
        if src == "dicom" and self.magnification is not None:
            spacing = spacing / self.magnification
            notes.append(f"DICOM detector spacing divided by the magnification {self.magnification:g}")
        if self.ruler_mm is not None and src != "caller":
            r = ruler.result() if ruler is not None else read_ruler(loaded.gray)
            if r is None:
                notes.append("no ruler with certain ticks found in the image: no spacing from it")
            else:
                red = loaded.reduction
                rs = self.ruler_mm / (r.pitch_px * red)
                info = {**r.to_dict(), "pitch_px": round(r.pitch_px * red, 4),
                        "pitch_se_px": round(r.pitch_se_px * red, 4), "p1": _full_image(r.p1, red),
                        "p2": _full_image(r.p2, red), "tick_mm": self.ruler_mm, "spacing_mm": round(rs, 6)}
                if r.second_scale:
                    notes.append("a second scale with the same tick pitch is in the image; the strongest was read")
                if src == "dicom":
                    if abs(rs / spacing - 1) > RULER_DISAGREES:
                        notes.append(f"the ruler gives {rs:.4f} mm/px, DICOM {spacing:.4f} ({rs / spacing - 1:+.0%}; "
                                     f"magnification?): DICOM's is used")
                else:
                    spacing, src = rs, "ruler"
        return reading.with_result(spacing=spacing, spacing_source=src, notes=tuple(notes), ruler=info)

    def _rods_scale(self, loaded: LoadedImage, spacing: Optional[float], xy: np.ndarray) -> float:
        """mm per pixel of ``loaded.gray`` for the ear rods' search: the spacing known, else the skull's S-N length
        (``xy``: porion, sella, nasion in full-image pixels) taken as :data:`SN_MM`."""
        if spacing is None and loaded.spacing is not None:
            spacing = loaded.spacing / (self.magnification or 1.0)
        if spacing is None:
            spacing = SN_MM / max(float(np.linalg.norm(xy[2] - xy[1])), 1.0)
        return spacing * loaded.reduction

    def _seek_ear_rods(self, heatmaps: np.ndarray, lb: Letterbox, loaded: LoadedImage, spacing: Optional[float]):
        """The ear rods' search around the first stage's porion, started on the helper thread (a single call; a
        concurrent twin searches inline): (its future or result, the porion it searched around), or None."""
        if not self.ear_rods:
            return None
        m = self.meta
        xy = decode_to_image(heatmaps[self._rod_points], lb, m.heatmap_stride, m.sigma, m.decoder)[0]
        args = (loaded.gray, to_gray(xy[0], loaded.reduction), self._rods_scale(loaded, spacing, xy))
        job = self._helper().submit(find_rings, *args) if self._overlaps else find_rings(*args)
        return job, xy[0]

    def _found_ear_rods(self, reading: Reading, loaded: LoadedImage, seek) -> Reading:
        """``reading`` with the ear rods found around its porion (:mod:`sdk.ear_rods`; None when there are none):
        the search started beside the networks, or again where the final porion lies further from its seed. Not
        looked for on an image read inverted or turned (a ring's top has no meaning there)."""
        res = reading.result
        k = self._rod_points[0]
        job, seed = seek
        found = job.result() if isinstance(job, Future) else job
        if "inverted" in res.view or res.view.startswith("rotated") or not res.is_cephalogram:
            return reading
        xy = res.xy[self._rod_points]
        scale = self._rods_scale(loaded, res.spacing, xy)
        if res.view != "as given" or np.linalg.norm(xy[0] - seed) * scale / loaded.reduction > RESEEK_MM:
            found = find_rings(loaded.gray, to_gray(res.xy[k], loaded.reduction), scale)
        return reading.with_result(ear_rods=found.scaled(loaded.reduction) if found is not None else None)

    def _machine_porion(self, reading: Reading) -> Reading:
        """Porion moved to the ear rods' top (machine porion). Where no ring was found it stays where it was (the
        anatomical reading, or the site's offset), flagged; a faint ring's top is used, flagged too."""
        res = reading.result
        k = self._rod_points[0]
        flags = list(res.point_flags) if res.point_flags else [""] * len(res.names)
        how = list(res.site_placed) if res.site_placed else [""] * len(res.names)
        rods = res.ear_rods
        if not res.is_cephalogram:
            return reading
        if rods is None:
            flags[k] = NO_MACHINE_PORION
            return reading.with_result(point_flags=tuple(flags))
        xy = res.xy.copy()
        rods = rods.with_anatomical(xy[k])
        xy[k] = rods.machine_porion
        if self.site is not None and self.site.porion == "machine":     # the site's own habit on the ring's top
            sn = float(np.linalg.norm(xy[self._rod_points[2]] - xy[self._rod_points[1]]))
            xy[k] = xy[k] + np.asarray(self.site.machine_offset) * sn
        flags[k] = "" if rods.certain else FAINT_RODS
        how[k] = "machine"
        return reading.with_result(xy=xy, point_flags=tuple(flags), site_placed=tuple(how), ear_rods=rods)

    def _placed_by_site(self, reading: Reading, loaded: LoadedImage) -> Reading:
        """The points moved onto the site's conventions (:meth:`sdk.site.SiteProfile.place`). Its looks are of
        images as its machine gives them: not matched on an image read mirrored or inverted."""
        res = reading.result
        same = res.view == "as given"
        xy, notes, how = self.site.place(res.xy, loaded.gray if same else None, loaded.reduction)
        if self.site.looks and not same:
            notes += (f"the site's looks were not matched: the image was read {res.view}",)
        return reading.with_result(xy=xy, labels=self.site.label, notes=res.notes + notes, site_placed=how)

    def _reframed(self, reading: Reading, loaded: LoadedImage, spacing: Optional[float]) -> Reading:
        """The reading again, on the image cropped (padded where the frame leaves it) to the training images'
        framing around its landmarks, when the field is wider than theirs by more than the framing's tolerance
        (:mod:`sdk.framing`); else ``reading`` as it is."""
        res = reading.result
        f = framing(self.schema.id)
        if (f is None or res.confidence < LOW_CONFIDENCE
                or not f.needs_reframe(res.xy, loaded.full_hw, self.meta.input_hw)):
            return reading
        r = loaded.reduction
        x0, y0, x1, y1 = f.frame(res.xy)
        box = (int(np.floor(x0 / r)), int(np.floor(y0 / r)), int(np.ceil(x1 / r)), int(np.ceil(y1 / r)))
        sub = crop_or_pad(loaded.gray, box, pad_pixel(self.meta.pad_value))
        x, lb = self._pre.apply(sub, ((box[3] - box[1]) * r, (box[2] - box[0]) * r), r)
        cand = self._read(self._run(x[None])[0], lb, loaded, spacing, sub)
        if cand.result.confidence < LOW_CONFIDENCE:
            return reading
        size = 1.0 / f.scale_change(res.xy, loaded.full_hw, self.meta.input_hw)
        note = (f"re-read with the image cropped to the training images' framing (the anatomy was "
                f"{size:.2f}x its training size in the model input)")
        offset = np.array([box[0] * r, box[1] * r], dtype=np.float64)
        out = cand.result
        return replace(cand, frame=replace(cand.frame, offset=offset),
                       result=replace(out, xy=out.xy + offset, image_size=tuple(loaded.full_hw),
                                      notes=out.notes + (note,)))

    def _repaired(self, reading: Reading) -> Reading:
        """``reading`` with its implausible landmarks read again where the others put them (:mod:`sdk.repair`),
        flags recomputed; as it is when nothing is implausible, the image is no cephalogram or was read in another
        view."""
        res, ev = reading.result, reading.evidence
        model = shape_model(res.schema, res.names)
        implausible = np.array([r == IMPLAUSIBLE for r in res.point_flags]) if res.point_flags else None
        if (implausible is None or not implausible.any() or self.local is None or model is None or
                model.cov is None or res.view != "as given" or not res.is_cephalogram):
            return reading
        rep = repair_points(res.xy, implausible, self.local, reading.frame, model, COND_Z)
        if not rep.repaired.any():
            return reading
        fixed = rep.repaired
        ev = replace(ev, shift=np.where(fixed, rep.shift, ev.shift), local_peak=np.where(fixed, rep.peak, ev.local_peak))
        out = replace(res, xy=rep.xy, repaired=tuple(bool(f) for f in fixed), first_reading=res.xy)
        return self._assess(replace(reading, result=out, evidence=ev))

    def _settle(self, reading: Reading, loaded: LoadedImage, spacing: Optional[float]) -> Reading:
        """The reading as given or, when it is doubtful, the view (mirrored, inverted, turned) the model is sure
        of, assessed."""
        if not self.auto_view or reading.result.confidence >= LOW_CONFIDENCE:
            return self._assess(reading)
        best = reading
        for view in VIEWS:
            img = view_image(loaded.gray, view)
            turned = view in ("rotated90", "rotated270")
            full = loaded.full_hw[::-1] if turned else loaded.full_hw
            x, lb = self._pre.apply(img, full, loaded.reduction)
            cand = self._read(self._run(x[None])[0], lb, loaded, spacing, img)
            if cand.result.confidence > best.result.confidence:
                best = cand.with_result(xy=view_points_back(cand.result.xy, view, loaded.full_hw),
                                        image_size=tuple(loaded.full_hw), view=view)
            if best.result.confidence >= LOW_CONFIDENCE:
                break     # the first view the model is sure of: the rest cost a model call each
        return self._assess(best if best.result.confidence >= LOW_CONFIDENCE else reading)

    def stream(self, images: Sequence[ImageInput], spacing: Optional[Union[float, Sequence[Optional[float]]]] = None,
               workers: int = 2, ahead: int = 4) -> Iterator[Union[Landmarks, CephaloError]]:
        """Each image's Landmarks, or the :class:`sdk.CephaloError` that names why it failed, in order, as they are
        ready. ``workers`` threads read images at once, so that one image's decoding, resizing and local stage run
        while another's network does (1: one after the other); at most ``ahead`` images are in flight. The results
        are the same as calling the Detector on each image. ``spacing``: one value or one per image."""
        images = list(images)
        spacings = self._spacings(spacing, len(images))
        for name, v in (("workers", workers), ("ahead", ahead)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise CephaloError(f"{name} must be a positive integer, got {v!r}")

        def one(j: int) -> Union[Landmarks, CephaloError]:
            try:
                return self._detect(images[j], spacings[j]).result
            except Exception as e:   # MemoryError included: one image's failure stays its own
                return _as_error(e, images[j], j)

        if workers == 1 or len(images) < 2:
            for j in range(len(images)):
                yield one(j)
            return
        det = self._concurrent(workers)

        def one(j: int) -> Union[Landmarks, CephaloError]:     # noqa: F811 (the same, on the concurrent twin)
            try:
                return det._detect(images[j], spacings[j]).result
            except Exception as e:
                return _as_error(e, images[j], j)


        with ThreadPoolExecutor(min(workers, len(images)), thread_name_prefix="cephalo") as pool:
            todo = iter(range(len(images)))
            pending = deque(pool.submit(one, j) for j in islice(todo, max(ahead, workers)))
            while pending:
                res = pending.popleft().result()
                j = next(todo, None)
                if j is not None:
                    pending.append(pool.submit(one, j))
                yield res

    def batch(self, images: Sequence[ImageInput], spacing: Optional[Union[float, Sequence[Optional[float]]]] = None,
              batch_size: int = 4, on_error: str = "raise", workers: int = 2) -> List[Union[Landmarks, CephaloError]]:
        """Landmarks of several images, read as :meth:`stream` reads them (``workers`` threads, up to ``batch_size``
        images in flight). ``spacing``: one value or one per image.

        Every image is read even when some fail. ``on_error='raise'`` (default): if any failed, a
        :class:`sdk.BatchError` is raised after all were read; its ``results`` holds each image's Landmarks or
        its error, in order. ``on_error='return'``: that list is returned instead.
        """
        if on_error not in ("raise", "return"):
            raise CephaloError(f"on_error must be 'raise' or 'return', got {on_error!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise CephaloError(f"batch_size must be a positive integer, got {batch_size!r}")
        out = list(self.stream(images, spacing, workers, batch_size))
        failed = [(j, r) for j, r in enumerate(out) if isinstance(r, Exception)]
        if failed and on_error == "raise":
            raise BatchError(out, failed)
        return out

    def _concurrent(self, workers: int) -> "Detector":
        """This Detector with its networks set up for ``workers`` calls at once (each with a share of the threads:
        OpenVINO streams, onnxruntime sessions), made once and kept; single calls keep the latency set-up."""
        with self._twins_lock:
            twin = self._twins.get(workers)
            if twin is None:

                twin = copy(self)
                twin._backend = self._backend.concurrent(workers)
                twin.local = self.local.concurrent(workers) if self.local is not None else None
                twin._twins, twin._overlaps = {}, False
                self._twins[workers] = twin
            return twin

    @staticmethod
    def _spacings(spacing, n: int) -> List[Optional[float]]:
        """One checked spacing (or None) per image, before any work."""
        spacings = list(spacing) if isinstance(spacing, (list, tuple)) else [spacing] * n
        if len(spacings) != n:
            raise CephaloError(f"got {len(spacings)} spacings for {n} images")
        return [None if s is None else check_spacing(s, f"spacing= of image {i}") for i, s in enumerate(spacings)]

    def draw(self, image: ImageInput, result: Landmarks, analyses: Optional[Sequence[str]] = None) -> np.ndarray:
        """(H, W, 3) uint8 BGR overlay of ``result`` on ``image``: numbered points (flagged ones marked), the
        tracing of the measurements of ``analyses`` (default: all the schema gives) with their lines, and legends
        of the landmark names and of the measurements (value, norm, ISBI class; '(check)' when a landmark it uses
        is flagged)."""
        from .draw import draw_landmarks
        from .tracing import tracing

        lines, text = tracing(result, analyses)
        ruler = None if result.ruler is None else np.array([result.ruler["p1"], result.ruler["p2"]])
        rods = None
        if result.ear_rods is not None:
            rings, mp = result.ear_rods.drawn()
            rods = (rings, mp, result.ear_rods.anatomical, result.ear_rods.certain)
        return draw_landmarks(load_image(image).gray, result.xy, names=result.names, flagged=result.flagged,
                              lines=lines, measurements=text, repaired=np.array(result.repaired, bool),
                              first_reading=result.first_reading, ruler=ruler, ear_rods=rods)


NO_MACHINE_PORION = "no ear rod found: not machine porion"
FAINT_RODS = "faint ear-rod ring: machine porion to check"


def _full_image(p, reduction: int):
    """A point of an image decoded at 1/``reduction`` -> [x, y] in the full image's pixels, rounded for a record."""
    return [round(float(v) * reduction + (reduction - 1) / 2, 2) for v in p]


def _name(image: ImageInput) -> str:
    if isinstance(image, (str, Path)):
        return str(image)
    return "<array>" if isinstance(image, np.ndarray) else f"<{type(image).__name__}>"


def _as_error(e: Exception, image: ImageInput, index: int) -> CephaloError:
    """Any failure of one image as a CephaloError whose message names it (path, or its index in the batch)."""
    name = _name(image)
    where = name if not name.startswith("<") else f"{name} #{index}"
    if isinstance(e, CephaloError):
        return e if where in str(e) else type(e)(f"{where}: {e}")
    err = CephaloError(f"{where}: {type(e).__name__}: {cause(e)}")
    err.__cause__ = e
    return err
