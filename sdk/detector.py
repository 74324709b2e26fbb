"""``Detector``: image -> landmarks in original pixels and mm. ``preprocess -> backend.run -> postprocess``."""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .backends import open_backend
from .decode import decode_to_image
from .errors import CephaloError, ModelError
from .image_io import ImageInput, LoadedImage, load_image
from .measurements import measure
from .preprocess import Letterbox, prepare, preprocess
from .refine import LOCAL_STAGE, STAGE_KEY, LocalStage, local_stage_path

MODELS_DIR = Path(__file__).resolve().parent / "models"
DEFAULT_MODEL = "isbi19_default_int8.onnx"  # see models/MODEL_CARD.md for what it is


@dataclass(frozen=True)
class Landmarks:
    """The landmarks of one image.

    xy: (K, 2) float64, original-image pixels (pixel centres at integers). scores: (K,) float32 in [0, 1], the
    heatmap peak (low = unsure). spacing: mm per pixel or None; spacing_source: 'caller' | 'dicom' | 'ruler' | None.
    view: how the image was read: 'as given', or 'mirrored' / 'inverted' / 'mirrored+inverted' when the image was
    a facing-left or negative cephalogram (points are always in the given image's pixels).
    """

    xy: np.ndarray
    scores: np.ndarray
    names: Tuple[str, ...]
    image_size: Tuple[int, int]           # (height, width) in pixels
    spacing: Optional[float] = None
    spacing_source: Optional[str] = None
    schema: str = ""
    view: str = "as given"

    @property
    def confidence(self) -> float:
        """Mean heatmap peak over the landmarks; below ``LOW_CONFIDENCE`` the result is not to be trusted."""
        return float(np.mean(self.scores)) if len(self.scores) else 0.0

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
        if not s > 0:
            raise CephaloError(f"pixel spacing must be > 0 mm, got {s!r}")
        return self.xy * float(s)

    def distance_mm(self, a: str, b: str) -> float:
        """Distance between landmarks ``a`` and ``b`` in mm."""
        pts = self.mm()
        return float(np.linalg.norm(pts[self.names.index(a)] - pts[self.names.index(b)]))

    def measurements(self) -> Dict[str, Dict]:
        """Cephalometric angles/ratios computable from this schema (see :mod:`sdk.measurements`)."""
        return measure({n: self.xy[i] for i, n in enumerate(self.names)})

    def to_dict(self) -> Dict:
        d = {
            "schema": self.schema,
            "image_size": {"height": self.image_size[0], "width": self.image_size[1]},
            "spacing_mm": self.spacing,
            "spacing_source": self.spacing_source,
            "view": self.view,
            "confidence": round(self.confidence, 4),
            "landmarks": [
                {"name": n, "x": round(float(self.xy[i, 0]), 3), "y": round(float(self.xy[i, 1]), 3),
                 "score": round(float(self.scores[i]), 4)} for i, n in enumerate(self.names)],
            "measurements": self.measurements(),
        }
        if self.confidence < LOW_CONFIDENCE:
            d["warning"] = (f"low confidence ({self.confidence:.2f} < {LOW_CONFIDENCE}): the image may not be a "
                            f"lateral cephalogram this model knows; check the landmarks")
        if self.spacing is not None:
            mm = self.mm()
            for i, lm in enumerate(d["landmarks"]):
                lm["x_mm"], lm["y_mm"] = round(float(mm[i, 0]), 3), round(float(mm[i, 1]), 3)
        return d

    def to_json(self, **kw) -> str:
        return json.dumps(self.to_dict(), **kw)


# Mean heatmap peak below which a result is doubted (and, with auto_view, the other views are tried). The bundled
# 320 model gives 0.88-0.93 on 40 ISBI Test1/Test2 images, 0.11-0.44 on them mirrored, 0.04-0.15 inverted (the
# 384 model before it: 0.04-0.34 mirrored, so 0.5 was the bar); 0.6 keeps a margin on both sides. A 256-input
# candidate read one mirrored validation image at 0.52 and kept it as given.
LOW_CONFIDENCE = 0.6
_VIEWS = ("mirrored", "inverted", "mirrored+inverted")


class Detector:
    """Finds cephalometric landmarks with an ONNX or OpenVINO model that carries the cephalo metadata.

    ``Detector()`` uses the bundled model. ``backend``: 'auto' (OpenVINO when installed, else onnxruntime),
    'openvino' or 'onnxruntime'. ``threads``: inference threads (default: all cores). ``fast_decode``: decode
    large JPEG files at 1/2-1/8 scale (about 12 ms less per 4.6 MP image here; points move ~0.1 mm on average,
    Test1 MRE +0.003 mm with the bundled model). ``auto_view``: when a result's confidence is low, also read the
    image mirrored (a facing-left cephalogram), inverted (a negative) and both, and keep the reading the model is
    sure of; costs nothing on a normal image. ``refine``: run the model's local stage (a second, small model on
    crops around each landmark at a finer scale, :mod:`sdk.refine`): True uses ``<model>.local.onnx`` beside the
    model file when there is one, a path names the file, False turns it off. Calls are thread-safe.
    """

    local: Optional[LocalStage] = None     # the local stage in use, if any

    def __init__(self, model: Union[str, Path, None] = None, backend: str = "auto", threads: Optional[int] = None,
                 fast_decode: bool = False, auto_view: bool = True, refine: Union[bool, str, Path] = True):
        path = Path(model) if model is not None else MODELS_DIR / DEFAULT_MODEL
        if not path.is_file():
            raise ModelError(f"model file {path} does not exist" +
                             ("" if model is not None else " (the bundled model is missing from this install)"))
        self.model_path = path
        self._backend = open_backend(path, backend, threads)
        self.meta = self._backend.meta
        if self.meta.extra.get(STAGE_KEY) == LOCAL_STAGE:
            raise ModelError(f"model {path} is a local-stage model (patches, not whole images): pass it as "
                             f"refine= beside its first-stage model")
        self.schema = self.meta.schema
        self.fast_decode = bool(fast_decode)
        self.auto_view = bool(auto_view)
        if refine is True and local_stage_path(path).is_file():
            refine = local_stage_path(path)
        if refine is not True and refine is not False and refine is not None:
            self.local = LocalStage(refine, backend, threads, self.meta.input_hw)
            self.local.check_pairs_with(self.meta, path)

    @property
    def info(self) -> Dict:
        """Model metadata plus the backend and thread count actually in use."""
        m = self.meta
        return {"model": str(self.model_path), "backend": self._backend.name, "threads": self._backend.threads,
                "schema": m.schema.id, "landmarks": list(m.schema.names), "input_hw": list(m.input_hw),
                "channels": m.channels, "heatmap_stride": m.heatmap_stride, "sigma": m.sigma, "decoder": m.decoder,
                "trained_on": m.trained_on, "accuracy": m.accuracy, **m.extra,
                "local_stage": str(self.local.path) if self.local else None,
                "local_stage_accuracy": self.local.meta.accuracy if self.local else None}

    # -- the three steps -----------------------------------------------------------------------------------------
    def preprocess(self, image: ImageInput) -> Tuple[np.ndarray, Letterbox, LoadedImage]:
        """Image -> ((C, H, W) float32 input, its Letterbox, the decoded image)."""
        m = self.meta
        return prepare(image, m.input_hw, m.mean, m.std, m.pad_value, m.channels, self.fast_decode)

    def postprocess(self, heatmaps: np.ndarray, lb: Letterbox, loaded: LoadedImage,
                    spacing: Optional[float], gray: Optional[np.ndarray] = None) -> Landmarks:
        """(K, h, w) heatmaps -> Landmarks in original pixels (and mm when a spacing is known).

        With a local stage, each point is then refined on ``gray`` (default ``loaded.gray``: the pixels the first
        stage saw). Scores stay the first stage's heatmap peaks.
        """
        m = self.meta
        if heatmaps.shape[0] != m.schema.k:
            raise ModelError(f"model {self.model_path} outputs {heatmaps.shape[0]} heatmaps, its schema "
                             f"{m.schema.id!r} has {m.schema.k} landmarks")
        xy, scores = decode_to_image(heatmaps, lb, m.heatmap_stride, m.sigma, m.decoder)
        if self.local is not None:
            xy = self.local.refine(loaded.gray if gray is None else gray, lb, xy, loaded.reduction)
        src = None
        if spacing is not None:
            if not (isinstance(spacing, (int, float)) and np.isfinite(spacing) and spacing > 0):
                raise CephaloError(f"spacing must be a positive number of mm per pixel, got {spacing!r}")
            spacing, src = float(spacing), "caller"
        elif loaded.spacing is not None:
            spacing, src = loaded.spacing, "dicom"
        elif m.schema.ruler is not None:
            a, b, mm = m.schema.ruler
            d = float(np.linalg.norm(xy[m.schema.names.index(a)] - xy[m.schema.names.index(b)]))
            if d > 1.0:
                spacing, src = mm / d, "ruler"
        return Landmarks(xy, scores, m.schema.names, (lb.src_h, lb.src_w), spacing, src, m.schema.id)

    def __call__(self, image: ImageInput, spacing: Optional[float] = None) -> Landmarks:
        """Landmarks of one image (path, file bytes, or (H, W[, C]) uint8/uint16 array)."""
        x, lb, loaded = self.preprocess(image)
        hm = self._backend.run(x[None])
        return self._other_views(self.postprocess(hm[0], lb, loaded, spacing), loaded, spacing)

    def _other_views(self, res: Landmarks, loaded: LoadedImage, spacing: Optional[float]) -> Landmarks:
        """``res`` itself, or, when it is doubtful, the reading of a mirrored/inverted image the model is sure of."""
        if not self.auto_view or res.confidence >= LOW_CONFIDENCE:
            return res
        m, g = self.meta, loaded.gray
        best = res
        for view in _VIEWS:
            img = g[:, ::-1] if view.startswith("mirrored") else g
            img = 255 - img if view.endswith("inverted") else img
            x, lb = preprocess(np.ascontiguousarray(img), m.input_hw, m.mean, m.std, m.pad_value, m.channels,
                               loaded.full_hw, loaded.reduction)
            cand = self.postprocess(self._backend.run(x[None])[0], lb, loaded, spacing, np.ascontiguousarray(img))
            if view.startswith("mirrored"):
                xy = cand.xy.copy()
                xy[:, 0] = loaded.full_hw[1] - 1 - xy[:, 0]    # back to the given image's pixels
                cand = replace(cand, xy=xy)
            if cand.confidence > best.confidence:
                best = replace(cand, view=view)
        return best if best.confidence >= LOW_CONFIDENCE else res

    def batch(self, images: Sequence[ImageInput], spacing: Optional[Union[float, Sequence[Optional[float]]]] = None,
              batch_size: int = 4) -> List[Landmarks]:
        """Landmarks of several images, ``batch_size`` per model call. ``spacing``: one value or one per image."""
        images = list(images)
        spacings = list(spacing) if isinstance(spacing, (list, tuple)) else [spacing] * len(images)
        if len(spacings) != len(images):
            raise CephaloError(f"got {len(spacings)} spacings for {len(images)} images")
        out: List[Landmarks] = []
        for i in range(0, len(images), max(1, int(batch_size))):
            prepared = [self.preprocess(im) for im in images[i:i + batch_size]]
            hm = self._backend.run(np.stack([p[0] for p in prepared]))
            out += [self._other_views(self.postprocess(hm[j], p[1], p[2], spacings[i + j]), p[2], spacings[i + j])
                    for j, p in enumerate(prepared)]
        return out

    def draw(self, image: ImageInput, result: Landmarks) -> np.ndarray:
        """(H, W, 3) uint8 BGR overlay of ``result`` on ``image``."""
        from .draw import draw_landmarks

        return draw_landmarks(load_image(image).gray, result.xy)
