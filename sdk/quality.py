"""Whether a result can be trusted: per-landmark flags and per-image flags, computed from the points alone.

- **Shape**: the schema's mean landmark configuration (``sdk/shapes/<schema>.json``, fitted on clinicians'
  labels by :mod:`train.shape_model`) is fitted to the points by a similarity transform (Umeyama 1991) with
  iterative reweighting, so one point far off (porion on the ruler) cannot drag the fit. With the configurations'
  covariance, each point is compared with where the *other* points put it (Mahalanobis distance, Gaussian
  conditioning); above ``COND_Z`` the skull's configuration cannot put it there. (A shape file without covariance:
  the residual from the mean shape above ``SHAPE_Z`` times the landmark's RMS.) When a large share of the points
  is off, the image is not a cephalogram this model reads.
- **Outside the image**: a point outside the image's pixels.
- **Low score**: the heatmap peak below ``LOW_SCORE``.
- **Stages disagree**: the local stage moved the first stage's point by more than ``MAX_SHIFT`` first-stage
  input pixels: one of the two has locked onto something else.
- **Unlikely within tolerance**: with a calibration in the local stage's metadata (:class:`Calibration`, fitted
  on held-out images by ``cephalo calibrate``), each point gets ``reliability``, the estimated probability that it
  lies within ``tolerance_mm`` of where clinicians put it; below ``cut`` the point is flagged. This replaces the
  low-score and disagreement rules, which are its inputs.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

SHAPES_DIR = Path(__file__).resolve().parent / "shapes"
SHAPE_Z = 5.0             # residual / landmark RMS residual above which a point is implausible (no covariance)
COND_Z = 4.5              # conditional distance above which it is: doubts <= 0.1% of right validation points
SHAPE_IMAGE_SHARE = 0.25  # share of implausible points above which the whole configuration is
LOW_SCORE = 0.25          # heatmap peak below which a point is doubted
MAX_SHIFT = 6.0           # first-stage input px the local stage may move a point before the two disagree


@dataclass(frozen=True)
class ShapeModel:
    """Mean configuration of a schema's landmarks. ``mean``: (K, 2), centred, unit RMS radius. ``rms``: (K,)
    each landmark's RMS residual after a similarity fit, same units. ``names``: the schema's landmark order.
    ``cov``: (2K, 2K) covariance of the aligned configurations (x0, y0, x1, ...; same units), when fitted: with it
    each point is judged by where the *other* points put it (:meth:`conditional_z`), not by the mean alone."""

    schema: str
    names: Tuple[str, ...]
    mean: np.ndarray
    rms: np.ndarray
    source: str = ""
    cov: Optional[np.ndarray] = None

    def to_dict(self) -> Dict:
        d = {"schema": self.schema, "names": list(self.names), "mean": np.round(self.mean, 6).tolist(),
             "rms": np.round(self.rms, 6).tolist(), "source": self.source}
        if self.cov is not None:
            d["cov"] = np.round(self.cov, 9).tolist()
        return d

    @classmethod
    def from_dict(cls, d: Dict) -> "ShapeModel":
        cov = np.asarray(d["cov"], np.float64) if d.get("cov") is not None else None
        return cls(d["schema"], tuple(d["names"]), np.asarray(d["mean"], np.float64),
                   np.asarray(d["rms"], np.float64), d.get("source", ""), cov)

    def conditional_z(self, xy: np.ndarray) -> np.ndarray:
        """(K, 2) points -> (K,) each point's Mahalanobis distance from the position the other points predict
        (Gaussian conditioning on the aligned configurations). Unlike :meth:`z_scores` this knows that soft-tissue
        pogonion follows the chin and the lips, so a point slid along an outline stands out. Each point is aligned
        and predicted from the others alone; points that do not fit the shape at all (:meth:`z_scores` > 3) are
        left out of the others, so one gross error cannot hide another. Without ``cov``, :meth:`z_scores`."""
        xy = np.asarray(xy, np.float64)
        iso = self.z_scores(xy)
        if self.cov is None:
            return iso
        k = len(xy)
        inlier = iso <= 3.0
        others = np.tile(inlier, (k, 1))
        if inlier.sum() - 1 < k // 2:      # most points off: condition on all the others rather than a few
            others[:] = True
        np.fill_diagonal(others, False)
        aligned = similarity_fits(xy, self.mean, others.astype(np.float64))[0].reshape(k, 2 * k)
        dev = aligned - self.mean.reshape(-1)           # row i: the image aligned without point i
        if others.sum() == k * (k - 1):                   # every row "all but i": the precomputed case
            gain, prec = self._all_but_one()
            r = dev.reshape(k, k, 2)[np.arange(k), np.arange(k)] - np.einsum("kij,kj->ki", gain, dev)
            return np.sqrt(np.maximum(np.einsum("ki,kij,kj->k", r, prec, r), 0.0))
        out = np.empty(k)
        for i in range(k):
            gain, prec = self._conditioner(i, np.flatnonzero(others[i]))
            r = dev[i, 2 * i:2 * i + 2] - gain @ dev[i]
            out[i] = float(np.sqrt(max(r @ prec @ r, 0.0)))
        return out

    def conditional_positions(self, xy: np.ndarray, idx: Sequence[int]) -> Tuple[np.ndarray, np.ndarray]:
        """Where the other points put each point of ``idx``: ((n, 2) positions, (n, 2, 2) covariances) in the
        pixels of ``xy`` (K, 2). As in :meth:`conditional_z`, the points that fit no shape are left out of the
        others. Needs ``cov``."""
        xy = np.asarray(xy, np.float64)
        k = len(xy)
        inlier = self.z_scores(xy) <= 3.0
        pos, covs = [], []
        for i in idx:
            others = inlier.copy()
            others[i] = False
            if others.sum() < k // 2:
                others = np.arange(k) != i
            aligned = similarity_fits(xy, self.mean, others[None].astype(np.float64))[0][0]
            # the fit is affine in xy: recover it (aligned = xy @ a.T + t) to map the prediction back
            sol = np.linalg.lstsq(np.c_[xy, np.ones(k)], aligned, rcond=None)[0]
            a, t = sol[:2].T, sol[2]
            gain, prec = self._conditioner(i, np.flatnonzero(others))
            p = self.mean[i] + gain @ (aligned - self.mean).reshape(-1)
            inv = np.linalg.inv(a)
            pos.append(inv @ (p - t))
            covs.append(inv @ np.linalg.inv(prec) @ inv.T)
        return np.array(pos).reshape(-1, 2), np.array(covs).reshape(-1, 2, 2)

    def _conditioner(self, i: int, o: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Point ``i`` given points ``o``: the (2, 2K) gain (zero outside ``o``'s columns) and (2, 2) precision."""
        oi, ii = np.r_[2 * o, 2 * o + 1], np.array([2 * i, 2 * i + 1])
        s_io = self.cov[np.ix_(ii, oi)]
        g = np.linalg.solve(self.cov[np.ix_(oi, oi)], s_io.T).T
        gain = np.zeros((2, len(self.cov)))
        gain[:, oi] = g
        return gain, np.linalg.inv(self.cov[np.ix_(ii, ii)] - g @ s_io.T)

    def _all_but_one(self) -> Tuple[np.ndarray, np.ndarray]:
        """(K, 2, 2K) gains and (K, 2, 2) precisions of each point given all the others, computed once."""
        cached = self.__dict__.get("_abo")
        if cached is None:
            k = len(self.names)
            pairs = [self._conditioner(i, np.delete(np.arange(k), i)) for i in range(k)]
            cached = (np.stack([g for g, _ in pairs]), np.stack([p for _, p in pairs]))
            self.__dict__["_abo"] = cached     # frozen dataclass: a derived cache, not a field
        return cached

    def z_scores(self, xy: np.ndarray) -> np.ndarray:
        """(K, 2) points -> (K,) residual of each point from the fitted mean shape, in units of its RMS."""
        xy = np.asarray(xy, np.float64)
        w = np.ones(len(xy))
        z = np.zeros(len(xy))
        for _ in range(4):
            fitted, scale = similarity_fit(self.mean, xy, w)
            z = np.linalg.norm(xy - fitted, axis=1) / np.maximum(self.rms * scale, 1e-9)
            # refit on the points that fit, keeping at least half of them
            keep = z <= max(3.0, float(np.quantile(z, 0.5)))
            if keep.sum() < 3 or np.array_equal(keep, w > 0):
                break
            w = keep.astype(np.float64)
        return z


def similarity_fit(src: np.ndarray, dst: np.ndarray, w: np.ndarray) -> Tuple[np.ndarray, float]:
    """``src`` moved by the rotation, uniform scale and translation that best fit it to ``dst`` in weighted
    least squares (Umeyama, IEEE TPAMI 1991; no reflection); returns ((K, 2) moved points, scale)."""
    moved, scale = similarity_fits(np.asarray(src, np.float64), np.asarray(dst, np.float64),
                                   np.asarray(w, np.float64)[None])
    return moved[0], float(scale[0])


def similarity_fits(src: np.ndarray, dst: np.ndarray, weights: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """:func:`similarity_fit` for many weightings at once: (N, K) ``weights`` -> ((N, K, 2) ``src`` moved onto
    ``dst`` by the fit each row of weights gives, (N,) scales)."""
    w = weights / np.maximum(weights.sum(axis=1, keepdims=True), 1e-12)
    ms, md = w @ src, w @ dst
    s0, d0 = src[None] - ms[:, None], dst[None] - md[:, None]
    cov = np.einsum("nk,nki,nkj->nij", w, d0, s0)
    u, sv, vt = np.linalg.svd(cov)
    sign = np.sign(np.linalg.det(u @ vt))
    sign[sign == 0] = 1.0
    rot = u @ (np.eye(2)[None] * np.stack([np.ones_like(sign), sign], axis=1)[:, None, :]) @ vt
    var = np.einsum("nk,nki->n", w, s0 ** 2)
    scale = (sv[:, 0] + sign * sv[:, 1]) / np.maximum(var, 1e-12)
    return scale[:, None, None] * np.einsum("nki,nji->nkj", s0, rot) + md[:, None], scale


@lru_cache(maxsize=None)
def shape_model(schema_id: str, names: Tuple[str, ...]) -> Optional[ShapeModel]:
    """The bundled shape model of a schema whose landmark names match, or None (no shape check)."""
    path = SHAPES_DIR / f"{schema_id}.json"
    if not path.is_file():
        return None
    m = ShapeModel.from_dict(json.loads(path.read_text(encoding="utf-8")))
    return m if m.names == tuple(names) else None


FEATURES = ("first_score", "local_peak", "shift", "shape_z")


def point_features(first_score: np.ndarray, local_peak: np.ndarray, shift: np.ndarray,
                   shape_z: np.ndarray) -> np.ndarray:
    """(K, 4) inputs of :class:`Calibration`: logits of the two stages' heatmap peaks, log(1 + the local stage's
    move in first-stage input px), log(1 + the shape check's distance, :meth:`ShapeModel.conditional_z`)."""
    def logit(p):
        p = np.clip(np.asarray(p, np.float64), 1e-3, 1 - 1e-3)
        return np.log(p / (1 - p))

    return np.stack([logit(first_score), logit(local_peak), np.log1p(np.asarray(shift, np.float64)),
                     np.log1p(np.asarray(shape_z, np.float64))], axis=1)


@dataclass(frozen=True)
class Calibration:
    """P(point within ``tolerance_mm`` of the reference labels) = sigmoid(features @ coef + bias[landmark]):
    a logistic regression on :func:`point_features`, fitted on held-out images. Points below ``cut`` are flagged."""

    coef: np.ndarray            # (4,)
    bias: np.ndarray            # (K,) one intercept per landmark (porion and gonion are off more often)
    tolerance_mm: float = 4.0
    cut: float = 0.5
    fitted_on: str = ""

    def probability(self, features: np.ndarray, landmark: Optional[np.ndarray] = None) -> np.ndarray:
        """(K, 4) features of one result (rows in landmark order) -> (K,) probability of being within tolerance;
        or (N, 4) pooled points with ``landmark`` (N,) their landmark indices."""
        bias = self.bias if landmark is None else self.bias[np.asarray(landmark)]
        return 1.0 / (1.0 + np.exp(-(np.asarray(features, np.float64) @ self.coef + bias)))

    def to_dict(self) -> Dict:
        return {"features": list(FEATURES), "coef": np.round(self.coef, 6).tolist(),
                "bias": np.round(self.bias, 6).tolist(), "tolerance_mm": self.tolerance_mm, "cut": self.cut,
                "fitted_on": self.fitted_on}

    @classmethod
    def from_dict(cls, d: Dict) -> "Calibration":
        if tuple(d.get("features", ())) != FEATURES:
            raise ValueError(f"calibration features {d.get('features')} are not {list(FEATURES)}")
        return cls(np.asarray(d["coef"], np.float64), np.asarray(d["bias"], np.float64),
                   float(d.get("tolerance_mm", 4.0)), float(d.get("cut", 0.5)), str(d.get("fitted_on", "")))


def mirror_x(xy: np.ndarray) -> np.ndarray:
    """(K, 2) points reflected about x = 0 (a shape fit allows no reflection; a facing-left skull needs one)."""
    return np.asarray(xy, np.float64) * np.array([-1.0, 1.0])


# Per-landmark flag reasons, in the order they are reported when several apply.
OUTSIDE, IMPLAUSIBLE, DISAGREE, LOW = "outside the image", "implausible position", "stages disagree", "low score"
UNLIKELY = "likely off by more than {tol:g} mm"


@dataclass(frozen=True)
class Assessment:
    """What :func:`assess` found: ``reasons`` (K,) ('' = not flagged), image-level ``flags``, the shape residual
    ``shape_z`` (K,), and ``reliability`` (K,) when a calibration was given."""

    reasons: Tuple[str, ...]
    flags: Tuple[str, ...]
    shape_z: np.ndarray
    reliability: Optional[np.ndarray] = None


def assess(xy: np.ndarray, scores: np.ndarray, image_hw: Tuple[int, int], schema_id: str, names: Tuple[str, ...],
           shift: Optional[np.ndarray] = None, local_peak: Optional[np.ndarray] = None,
           calibration: Optional[Calibration] = None, mirrored: bool = False) -> Assessment:
    """Flags of one result. ``xy`` (K, 2) original pixels, ``scores`` (K,) first-stage peaks, ``image_hw`` (H, W),
    ``shift`` (K,) local-stage move in first-stage input px and ``local_peak`` (K,) its heatmap peak (None without
    a local stage); ``calibration``: turns those into per-point reliabilities (needs the local stage's inputs).
    ``mirrored``: the points are those of a facing-left image; the shape is checked on their mirror image."""
    h, w = image_hw
    k = len(xy)
    reasons = [""] * k
    outside = (xy[:, 0] < -0.5) | (xy[:, 1] < -0.5) | (xy[:, 0] > w - 0.5) | (xy[:, 1] > h - 0.5)
    model = shape_model(schema_id, tuple(names))
    z, limit = np.zeros(k), np.inf
    if model is not None:
        z = model.conditional_z(mirror_x(xy) if mirrored else xy)
        limit = COND_Z if model.cov is not None else SHAPE_Z
    implausible = z > limit
    reliability = None
    if calibration is not None and shift is not None and local_peak is not None and len(calibration.bias) == k:
        reliability = calibration.probability(point_features(scores, local_peak, shift, z))
        doubtful = [((reliability[i] < calibration.cut), UNLIKELY.format(tol=calibration.tolerance_mm))
                    for i in range(k)]
    else:
        disagree = shift > MAX_SHIFT if shift is not None else np.zeros(k, bool)
        low = np.asarray(scores) < LOW_SCORE
        doubtful = [(disagree[i], DISAGREE) if disagree[i] else (low[i], LOW) for i in range(k)]
    for i in range(k):
        for hit, why in ((outside[i], OUTSIDE), (implausible[i], IMPLAUSIBLE), doubtful[i]):
            if hit:
                reasons[i] = why
                break
    image_flags = []
    if outside.any():
        image_flags.append("points_outside_image")
    if model is not None and implausible.mean() > SHAPE_IMAGE_SHARE:
        image_flags.append("implausible_shape")
    return Assessment(tuple(reasons), tuple(image_flags), z, reliability)
