"""The second, local stage: square crops around the first stage's points at a finer scale, and the way back.

The first stage sees the whole cephalogram at its input size (0.625 mm per input pixel for ISBI at 384); its
heatmaps have stride 4. The local stage crops ``size x size`` patches from the same image resized to ``factor``
times the first stage's scale (a "fine" image), centred on each first-stage point, and a small model finds the
landmark in its patch. Scales are relative to the letterbox, not to a pixel spacing, so images without a known
spacing work the same way.

A local-stage file that knows the head's size it learnt at (``extra.head_size``) also cuts its patches at the
head's own scale (:meth:`LocalStage.zoom`): a head that fills less of the canvas (a wider exposure, a turned copy
on a grown canvas, a crop kept larger) is read at the size it was trained at, not at the canvas's.

Coordinates: pixel centres at integers everywhere (see :mod:`sdk.preprocess`). A patch is cut by a 2x3 affine
matrix ``fine -> patch``. At inference it is turned by the head's tilt (:func:`head_turn`), so that every patch is
read in the head's own frame and a tilted head reads as an upright one; a head already upright gets a pure integer
translation (no resampling). In training the patch also rotates and scales about its centre. Training and the
Detector both call :func:`patch_matrix` and :func:`cut_patches`, so the two cannot drift apart.
"""
from __future__ import annotations

import math
from copy import copy
from dataclasses import dataclass, replace
from pathlib import Path
from typing import List, Optional, Tuple

import cv2
import numpy as np

from .backends import open_backend
from .decode import decode_heatmaps, heatmap_to_input
from .errors import ImageError, ModelError
from .preprocess import Letterbox, normalize, pad_pixel
from .quality import Calibration


@dataclass(frozen=True)
class FineImage:
    """The source image at ``(sx, sy)`` fine pixels per original pixel, stored as ``pixels`` at ``(zx, zy)`` fine
    pixels per stored pixel: 1 when the image was resized to the fine scale, else the decoded image itself, which
    patches are cut from directly (:meth:`stored_matrices`) and so skips a whole-image resize."""

    pixels: np.ndarray      # (h, w) uint8
    sx: float
    sy: float
    zx: float = 1.0
    zy: float = 1.0

    def to_fine(self, xy: np.ndarray) -> np.ndarray:
        """(..., 2) original pixels -> fine pixels."""
        xy = np.asarray(xy, dtype=np.float64)
        return np.stack([(xy[..., 0] + 0.5) * self.sx - 0.5, (xy[..., 1] + 0.5) * self.sy - 0.5], axis=-1)

    def to_image(self, xy: np.ndarray) -> np.ndarray:
        """(..., 2) fine pixels -> original pixels (inverse of :meth:`to_fine`)."""
        xy = np.asarray(xy, dtype=np.float64)
        return np.stack([(xy[..., 0] + 0.5) / self.sx - 0.5, (xy[..., 1] + 0.5) / self.sy - 0.5], axis=-1)

    def stored_matrices(self, mats: np.ndarray) -> np.ndarray:
        """(N, 2, 3) fine -> patch matrices as stored-pixel -> patch matrices (the same patches, cut from
        ``pixels``)."""
        mats = np.asarray(mats, dtype=np.float64)
        if self.zx == 1.0 and self.zy == 1.0:
            return mats
        z = np.array([self.zx, self.zy])
        out = mats.copy()
        out[:, :, :2] = mats[:, :, :2] * z                       # A @ diag(z)
        out[:, :, 2] = mats[:, :, 2] + mats[:, :, :2] @ (z / 2 - 0.5)   # A @ c + t, c = z / 2 - 1/2
        return out


# Cutting patches straight from the decoded image (bilinear) instead of from an area-resized copy, as long as it
# shrinks by no more than this: more would alias (bilinear reads only the nearest source pixels).
DIRECT_MIN_ZOOM = 0.75


def fine_image(gray: np.ndarray, lb: Letterbox, factor: float, reduction: int = 1,
               direct: bool = False) -> FineImage:
    """``gray`` (the source, or its 1/``reduction`` decode) at ``factor`` x the letterbox's scale.

    Area interpolation when shrinking (anti-aliased, like the first stage's input), linear when enlarging.
    ``direct``: no resize when the fine scale is at least ``DIRECT_MIN_ZOOM`` of ``gray``'s (the Detector after a
    reduced decode): patches are then cut from ``gray`` itself.
    """
    if not factor > 0:
        raise ValueError(f"fine factor must be > 0, got {factor!r}")
    want = (-(-lb.src_h // reduction), -(-lb.src_w // reduction))
    if gray.shape[:2] != want:
        raise ImageError(f"image is {gray.shape[:2]}, letterbox was computed for {(lb.src_h, lb.src_w)}")
    fw = max(1, int(round(lb.src_w * lb.scale_x * factor)))
    fh = max(1, int(round(lb.src_h * lb.scale_y * factor)))
    zx, zy = fw / gray.shape[1], fh / gray.shape[0]
    if direct and min(zx, zy) >= DIRECT_MIN_ZOOM and (fh, fw) != gray.shape[:2]:
        return FineImage(np.ascontiguousarray(gray), fw / lb.src_w, fh / lb.src_h, zx, zy)
    if (fh, fw) == gray.shape[:2]:
        pixels = np.ascontiguousarray(gray)
    else:
        interp = cv2.INTER_AREA if fh < gray.shape[0] else cv2.INTER_LINEAR
        pixels = cv2.resize(gray, (fw, fh), interpolation=interp)
    return FineImage(pixels, fw / lb.src_w, fh / lb.src_h)


def patch_matrix(center: np.ndarray, size: int, angle_deg: float = 0.0, scale: float = 1.0) -> np.ndarray:
    """2x3 float64 matrix fine pixels -> patch pixels placing ``center`` at patch pixel ``(size // 2, size // 2)``,
    rotated by ``angle_deg`` and scaled by ``scale`` about it. Round ``center`` first for a resampling-free cut."""
    a = math.radians(angle_deg)
    ca, sa = scale * math.cos(a), scale * math.sin(a)
    lin = np.array([[ca, -sa], [sa, ca]])
    c = np.asarray(center, dtype=np.float64)
    t = np.array([size // 2, size // 2], dtype=np.float64) - lin @ c
    return np.hstack([lin, t[:, None]])


def cut_patches(fine: np.ndarray, matrices: np.ndarray, size: int, pad_value: float) -> np.ndarray:
    """(N, 2, 3) matrices -> (N, size, size) uint8 patches of ``fine``; outside the image = ``pad_value``."""
    out = np.empty((len(matrices), size, size), dtype=np.uint8)
    for i, m in enumerate(matrices):
        out[i] = cv2.warpAffine(fine, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                                borderValue=float(pad_value))
    return out


def apply_matrix(xy: np.ndarray, m: np.ndarray) -> np.ndarray:
    """(..., 2) points moved by the 2x3 matrix ``m``."""
    return np.asarray(xy, dtype=np.float64) @ m[:, :2].T + m[:, 2]


def patch_to_fine(xy: np.ndarray, m: np.ndarray) -> np.ndarray:
    """(..., 2) patch pixels -> fine pixels for the patch cut with matrix ``m``."""
    return apply_matrix(xy, cv2.invertAffineTransform(m))


def centred_matrices(points_fine: np.ndarray, size: int, turn: float = 0.0) -> np.ndarray:
    """(K, 2) fine-pixel points -> (K, 2, 3) inference matrices centring each point (rounded: a first stage that
    moves a point by a hundredth of a pixel cuts the same patch): integer translations, or turned by ``turn``
    degrees about the point."""
    return np.stack([patch_matrix(np.round(p), size, turn) for p in np.asarray(points_fine, dtype=np.float64)])


# The S-N line's usual direction in the images the local stage learnt from (ISBI 001-150, face to the right, y
# down: the median angle of S->N). The patches of a head tilted from it are turned back by the difference.
USUAL_SN_DEG = -6.5
TURN_STEP_DEG = 0.5         # turns are rounded to this: the same head cuts the same patches; a smaller tilt is not
                            # turned at all, so an upright head keeps the exact integer cut


def head_turn(xy: np.ndarray, schema) -> float:
    """Degrees that turn an image's patches into the head's usual frame: the angle from the S-N line of ``xy``
    ((K, 2) points of ``schema``) to :data:`USUAL_SN_DEG` (mirrored for a face to the left); 0 when the schema has
    no sella or nasion. Rounded to :data:`TURN_STEP_DEG`."""
    try:
        s, n = xy[schema.index("sella")], xy[schema.index("nasion")]
    except KeyError:
        return 0.0
    d = np.asarray(n, np.float64) - np.asarray(s, np.float64)
    if not np.isfinite(d).all() or not d.any():
        return 0.0
    usual = USUAL_SN_DEG if d[0] >= 0 else 180.0 - USUAL_SN_DEG
    turn = (usual - np.degrees(np.arctan2(d[1], d[0])) + 180.0) % 360.0 - 180.0
    return float(np.round(turn / TURN_STEP_DEG) * TURN_STEP_DEG) + 0.0      # + 0.0: never -0.0


def head_size(xy: np.ndarray) -> float:
    """The head's size in ``xy``'s pixels: the RMS distance of the landmarks (those found) from their centroid;
    NaN with fewer than three. It turns and shifts with the head, and scales with it."""
    xy = np.asarray(xy, dtype=np.float64)
    xy = xy[np.isfinite(xy).all(axis=1)]
    if len(xy) < 3:
        return float("nan")
    return float(np.sqrt(((xy - xy.mean(axis=0)) ** 2).sum(axis=1).mean()))


def anatomy(schema) -> np.ndarray:
    """Indices of ``schema``'s anatomical landmarks: all but its ruler's points (whose place is the machine's, not
    the head's), for :func:`head_size`."""
    ruler = set(schema.ruler[:2]) if getattr(schema, "ruler", None) else set()
    return np.array([i for i, n in enumerate(schema.names) if n not in ruler], dtype=int)


def head_zoom(learnt: float, xy: np.ndarray, lb: Letterbox) -> float:
    """The zoom over the canvas's scale that brings a head whose points are ``xy`` (original pixels) to the size
    ``learnt`` (:func:`head_size` in first-stage input px of letterbox ``lb``); 1 without a ``learnt`` size or when
    the points give none. Held to :data:`ZOOM_RANGE`, rounded to :data:`ZOOM_STEP`."""
    if not learnt > 0:
        return 1.0
    size = head_size(xy) * math.sqrt(lb.scale_x * lb.scale_y)
    if not size > 0:
        return 1.0
    z = min(max(learnt / size, ZOOM_RANGE[0]), ZOOM_RANGE[1])
    return float(np.round(z / ZOOM_STEP) * ZOOM_STEP)


ZOOM_RANGE = (0.8, 1.25)    # the head-size zoom is held to this: beyond it the first stage's points are more
                            # likely wrong than the head that small or large
ZOOM_STEP = 0.01            # rounded to this: the same head cuts the same patches, a usual one unzoomed


STAGE_KEY = "stage"          # ModelMeta.extra[STAGE_KEY] == LOCAL_STAGE marks a local-stage model file
LOCAL_STAGE = "local"
HEAD_KEY = "head_size"       # ModelMeta.extra[HEAD_KEY]: the head's size (head_size, first-stage input px at
                             # first_stage_input) in the images it learnt from, their median
LOCAL_SUFFIX = ".local"      # model.onnx -> model.local.onnx: the local stage found beside a first-stage file


CONSENSUS = "consensus"      # the default labels: the clinicians' consensus, in <stem>.local.onnx


def local_stage_path(model_path, labels: str = CONSENSUS) -> Path:
    """Where the local stage of ``model_path`` lives: ``<stem>.local<suffix>`` beside it, or for another labelling
    convention (e.g. 'challenge', the ISBI 2015 challenge's ground truth) ``<stem>.<labels>.local<suffix>``."""
    p = Path(model_path)
    infix = "" if labels == CONSENSUS else "." + labels
    return p.with_name(p.stem + infix + LOCAL_SUFFIX + p.suffix)


def local_stage_conventions(model_path) -> List[str]:
    """The labelling conventions whose local stage lies beside ``model_path`` (``CONSENSUS`` first when present)."""
    p = Path(model_path)
    found = [CONSENSUS] if local_stage_path(p).is_file() else []
    for f in sorted(p.parent.glob(p.stem + ".*" + LOCAL_SUFFIX + p.suffix)):
        name = f.name[len(p.stem) + 1:-len(LOCAL_SUFFIX + p.suffix)]
        if name and "." not in name:
            found.append(name)
    return found


def rescale_for_first_stage(factor: float, prior_sd: float, trained_behind, first_input) -> Tuple[float, float]:
    """(factor, prior sd) of a local stage trained behind a ``trained_behind`` (H, W) first stage when it runs behind
    a ``first_input`` one. The letterbox scale is proportional to the input size, so factor x trained/first keeps
    the patches at the trained scale, and the prior (first-stage input px) shrinks by the same ratio."""
    (th, tw), (fh, fw) = trained_behind, first_input
    if th * fw != tw * fh:
        raise ValueError(f"trained behind a {tuple(trained_behind)} first stage; a {tuple(first_input)} first stage "
                         f"letterboxes to another aspect ratio, so its patches would not have the trained scale")
    ratio = th / fh
    return factor * ratio, prior_sd / ratio


class LocalStage:
    """A local-stage model file (an ONNX/IR with the cephalo metadata and ``extra.stage == 'local'``) at run time.

    Its metadata gives the patch size (``input_h``), the heatmap stride and sigma, the normalisation, and in
    ``extra``: ``factor`` (fine scale over the first stage's letterbox scale) and ``first_stage_input`` (the
    first-stage input size it was trained behind). ``first_input``: the input (H, W) of the first stage it runs
    behind, when that differs: the factor and the decode prior are rescaled so that patches keep the scale the
    model was trained on (the letterbox scale is proportional to the input size), e.g. a 320 first stage gets
    factor x 384/320 from a local stage trained behind 384.
    """

    def __init__(self, path, backend: str = "auto", threads=None, first_input=None, precision: str = "f32"):
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"local-stage model {self.path} does not exist")
        self._backend = open_backend(self.path, backend, threads, precision)
        m = self.meta = self._backend.meta
        if m.extra.get(STAGE_KEY) != LOCAL_STAGE:
            raise ModelError(f"model {self.path} is not a local-stage model (its metadata has no "
                             f"extra.{STAGE_KEY} = {LOCAL_STAGE!r})")
        try:
            factor = float(m.extra["factor"])
            self.trained_behind = tuple(int(v) for v in m.extra["first_stage_input"])
        except (KeyError, TypeError, ValueError) as e:
            raise ModelError(f"local-stage model {self.path}: metadata needs extra.factor and "
                             f"extra.first_stage_input ({e})") from None
        if m.input_h != m.input_w or factor <= 0 or min(self.trained_behind) <= 0:
            raise ModelError(f"local-stage model {self.path}: square patches, factor > 0 and a positive "
                             f"first_stage_input expected, got {m.input_h}x{m.input_w}, factor {factor}, "
                             f"{self.trained_behind}")
        self.first_input = tuple(int(v) for v in (first_input or self.trained_behind))
        try:
            self.factor, prior = rescale_for_first_stage(factor, float(m.extra.get("prior_sd", 0.0)),
                                                         self.trained_behind, self.first_input)
        except ValueError as e:
            raise ModelError(f"local-stage model {self.path}: {e}") from None
        try:
            self.calibration = (Calibration.from_dict(m.extra["calibration"]) if m.extra.get("calibration")
                                else None)   # per-point reliability (sdk.quality), fitted on held-out images
        except (KeyError, TypeError, ValueError) as e:
            raise ModelError(f"local-stage model {self.path}: malformed calibration metadata ({e})") from None
        try:
            head = float(m.extra.get(HEAD_KEY, 0.0))
        except (TypeError, ValueError):
            head = float("nan")
        if not (math.isfinite(head) and head >= 0):
            raise ModelError(f"local-stage model {self.path}: extra.{HEAD_KEY} must be a size >= 0, got "
                             f"{m.extra.get(HEAD_KEY)!r}")
        # first-stage input px scale with the input size: the head's size behind this first stage
        self.head = head * self.first_input[0] / self.trained_behind[0]
        self._anatomy = anatomy(m.schema)
        self.size = m.input_h
        self.params = LocalParams(m.input_h, self.factor, m.heatmap_stride, m.sigma, m.mean, m.std, m.pad_value,
                                  m.channels, m.decoder, prior)

    def concurrent(self, workers: int) -> "LocalStage":
        """This local stage with its network set up for ``workers`` callers at once (see :meth:`Backend.concurrent`)."""

        twin = copy(self)
        twin._backend = self._backend.concurrent(workers)
        return twin

    def check_pairs_with(self, first_meta, first_path) -> None:
        """A local stage must share the first stage's landmarks, and be set up for its input size."""
        if first_meta.schema.names != self.meta.schema.names:
            raise ModelError(f"local-stage model {self.path} has landmarks {list(self.meta.schema.names)[:4]}..., "
                             f"model {first_path} has {list(first_meta.schema.names)[:4]}...: they do not pair")
        if tuple(first_meta.input_hw) != self.first_input:
            raise ModelError(f"local-stage model {self.path} is set up behind a {self.first_input} first stage, "
                             f"model {first_path} takes {tuple(first_meta.input_hw)}")

    def run_network(self, x: np.ndarray) -> np.ndarray:
        """The patch network alone: (n, C, size, size) float32 patches -> (n, K, h, w) heatmaps. Fewer than K
        patches (a repair's few) run padded to K: one compiled shape serves every call, where each new batch size
        would hold a compiled model of its own in memory for the rest of the process."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        n, k = len(x), self.meta.schema.k
        if 0 < n < k:
            padded = np.zeros((k,) + x.shape[1:], np.float32)
            padded[:n] = x
            return self._backend.run(padded)[:n]
        return self._backend.run(x)

    def zoom(self, xy: np.ndarray, lb: Letterbox) -> float:
        """How much finer than the canvas's scale to cut the patches of a head whose first-stage points are ``xy``
        (original pixels): :func:`head_zoom` to the size the model learnt at (``extra.head_size``), by its
        anatomical points."""
        return head_zoom(self.head, np.asarray(xy)[self._anatomy], lb)

    def zoomed(self, zoom: float) -> "LocalParams":
        """The cut-and-read parameters at ``zoom`` x the fine scale: the decode prior keeps its size in patch
        pixels, so a head read at its own scale is read the same whatever the canvas."""
        p = self.params
        return p if zoom == 1.0 else replace(p, factor=p.factor * zoom, prior_sd=p.prior_sd / zoom)

    def fine(self, gray: np.ndarray, lb: Letterbox, reduction: int = 1, zoom: float = 1.0) -> FineImage:
        """The fine image the Detector cuts patches from (the decoded image itself when close enough in scale)."""
        return fine_image(gray, lb, self.factor * zoom, reduction, direct=True)

    def locate(self, gray: np.ndarray, lb: Letterbox, xy: np.ndarray, reduction: int = 1) -> np.ndarray:
        """(K, 2) first-stage points in original pixels -> (K, 2) local-stage points, one model call for K patches.

        ``gray`` is the image the first stage saw (or its 1/``reduction`` decode); ``lb`` its letterbox.
        """
        return self.locate_with_peaks(gray, lb, xy, reduction)[0]

    def locate_with_peaks(self, gray: np.ndarray, lb: Letterbox, xy: np.ndarray, reduction: int = 1,
                          turn: Optional[float] = None, zoom: Optional[float] = None):
        """:meth:`locate`, plus the (K,) local heatmap peak each point was read at. ``turn``: the patches' turn in
        degrees (default: :func:`head_turn` of ``xy``); ``zoom``: their scale over the canvas's (default:
        :meth:`zoom` of ``xy``)."""
        zoom = self.zoom(xy, lb) if zoom is None else zoom
        p = self.zoomed(zoom)
        fine = self.fine(gray, lb, reduction, zoom)
        turn = head_turn(xy, self.meta.schema) if turn is None else turn
        x, mats = local_inputs(fine, xy, p, turn)
        hm = self.run_network(x)
        if hm.shape[:2] != (len(xy), self.meta.schema.k):
            raise ModelError(f"local-stage model {self.path} gave heatmaps {hm.shape} for {len(xy)} patches")
        return local_points(hm, mats, fine, p, xy, return_peaks=True)

    def locate_at(self, gray: np.ndarray, lb: Letterbox, xy: np.ndarray, landmarks: np.ndarray, reduction: int = 1,
                  prior_sd: Optional[float] = None, turn: float = 0.0,
                  zoom: float = 1.0) -> Tuple[np.ndarray, np.ndarray]:
        """Landmarks ``landmarks`` (n,) re-read around ``xy`` (n, 2) original pixels: one model call for n patches,
        each read on its landmark's channel; ``prior_sd`` (first-stage input px) widens the decode prior;
        ``turn`` and ``zoom``: the patches' turn in degrees and scale over the canvas's (the whole reading's
        :func:`head_turn` and :meth:`zoom`). Returns ((n, 2) points, (n,) peaks)."""
        p = self.zoomed(zoom)
        if prior_sd is not None:
            p = replace(p, prior_sd=max(p.prior_sd, prior_sd / zoom))
        fine = self.fine(gray, lb, reduction, zoom)
        x, mats = local_inputs(fine, xy, p, turn)
        hm = self.run_network(x)
        return local_points(hm, mats, fine, p, xy, return_peaks=True, channels=np.asarray(landmarks))


@dataclass(frozen=True)
class LocalParams:
    """What cutting and reading patches needs; from a local-stage file's metadata or a training config."""

    size: int
    factor: float
    stride: int
    sigma: float
    mean: float
    std: float
    pad_value: float
    channels: int = 1
    decoder: str = "dark"
    prior_sd: float = 0.0     # first-stage input pixels; > 0 weights each patch heatmap by a Gaussian around
                              # the first-stage point (its error spread), so a look-alike far off loses


def local_inputs(fine: FineImage, xy: np.ndarray, p: LocalParams, turn: float = 0.0) -> Tuple[np.ndarray, np.ndarray]:
    """(K, 2) points (original pixels) -> ((K, C, size, size) float32 patches of the fine image centred on them,
    turned by ``turn`` degrees, (K, 2, 3) matrices). Patch ``i`` belongs to landmark ``i``."""
    mats = centred_matrices(fine.to_fine(xy), p.size, turn)
    patches = cut_patches(fine.pixels, fine.stored_matrices(mats), p.size, pad_pixel(p.pad_value))
    return np.stack([normalize(q, p.mean, p.std, p.channels) for q in patches]), mats


def _prior(h: int, centres: np.ndarray, p: LocalParams) -> np.ndarray:
    """(K, h, h) Gaussian weights around each patch's first-stage point (``centres``: (K, 2) patch pixels, not
    rounded, so the weight does not jump with the patch's integer cut), sd ``prior_sd`` first-stage input pixels
    = ``prior_sd * factor`` patch pixels."""
    c = heatmap_to_input(np.arange(h), p.stride)
    sd = p.prior_sd * p.factor
    gx = np.exp(-0.5 * ((c[None, :] - centres[:, 0:1]) / sd) ** 2)
    gy = np.exp(-0.5 * ((c[None, :] - centres[:, 1:2]) / sd) ** 2)
    return (gy[:, :, None] * gx[:, None, :]).astype(np.float32)


def local_points(heatmaps: np.ndarray, mats: np.ndarray, fine: FineImage, p: LocalParams,
                 first: np.ndarray, return_peaks: bool = False, channels: Optional[np.ndarray] = None):
    """(K, K, h, w) patch-model output for the patches of :func:`local_inputs` around ``first`` ((K, 2) original
    pixels) -> (K, 2) original pixels: patch ``i`` is read on its own landmark's channel ``i``. With
    ``return_peaks``: also the (K,) peak each point was read at (prior-weighted; low = the patch model is unsure
    or found its landmark far from the first stage's point). ``channels``: patch ``i``'s landmark when the patches
    are not one per landmark in order."""
    k = len(mats)
    own = np.asarray(heatmaps, dtype=np.float32)[np.arange(k), np.arange(k) if channels is None else channels]
    if p.prior_sd > 0:
        centres = np.stack([apply_matrix(q, m) for q, m in zip(fine.to_fine(first), mats)])
        own = own * _prior(own.shape[-1], centres, p)
    pxy, peaks = decode_heatmaps(own[:, None], p.sigma, p.decoder)
    patch_xy = heatmap_to_input(pxy[:, 0], p.stride)
    xy = fine.to_image(np.stack([patch_to_fine(patch_xy[i], mats[i]) for i in range(k)]))
    return (xy, peaks[:, 0]) if return_peaks else xy
