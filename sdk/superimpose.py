"""Superimposing two cephalograms of one patient: a rigid registration (rotation and translation, never scale:
growth is what is measured) from the later image onto the earlier one, in millimetres.

Each superimposition starts from landmarks (the overall one puts S on S and S-N along S-N; the regional ones fit
their region's landmarks) and is then refined on the images themselves over its region (OpenCV's ECC, Euclidean
motion), as a clinician's structural superimposition is made on the structures, not on points. A refinement
that does not converge, or that moves more than :data:`MAX_REFINE_MM` / :data:`MAX_REFINE_DEG` from its start,
is dropped and the landmark-based start kept, and said.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

GRID_MM = 0.25              # the refinement's sampling of its region
MAX_REFINE_MM, MAX_REFINE_DEG = 3.0, 3.0


@dataclass(frozen=True)
class Region:
    """A superimposition: its ``name``, the landmarks its start is fitted on, and its image region: a box along
    the line from the first to the second of ``axis`` (``before`` mm; ``pad_along`` beyond each end, ``across``
    either side)."""

    name: str
    description: str
    landmarks: Tuple[str, ...]
    axis: Tuple[str, str]
    pad_along: float
    across: float
    shows: Tuple[str, ...] = ()         # a regional superimposition's displacements: its bone's landmarks only


REGIONS = (
    Region("overall", "anterior cranial base (S-N at S)", ("sella", "nasion"), ("sella", "nasion"), 8.0, 12.0),
    Region("maxilla", "palate (ANS-PNS)", ("anterior_nasal_spine", "posterior_nasal_spine"),
           ("posterior_nasal_spine", "anterior_nasal_spine"), 4.0, 6.0,
           ("anterior_nasal_spine", "posterior_nasal_spine", "subspinale", "upper_incisal_incision")),
    Region("mandible", "symphysis (Go-Me, refined on the symphysis)", ("gonion", "menton"),
           ("gonion", "menton"), 0.0, 0.0,
           ("supramentale", "pogonion", "gnathion", "menton", "gonion", "lower_incisal_incision", "articulare")),
)
SYMPHYSIS = ("supramentale", "pogonion", "gnathion", "menton")


@dataclass
class Registration:
    """``after`` mm -> ``before`` mm: ``x' = R x + t`` with ``R`` a rotation by ``angle_deg``."""

    name: str
    region: str
    angle_deg: float
    t: np.ndarray
    landmarks: Tuple[str, ...]
    shows: Tuple[str, ...] = ()
    centre: np.ndarray = field(default_factory=lambda: np.zeros(2))    # its landmarks' centroid, before mm
    span_mm: float = 0.0                # how far apart its landmarks lie (their largest distance)
    residual_mm: float = 0.0            # RMS of the start's landmarks after registration
    image: Optional[str] = None         # what the image refinement did
    score: Optional[float] = None       # the refinement's correlation over the region
    notes: List[str] = field(default_factory=list)

    @property
    def rotation(self) -> np.ndarray:
        a = np.radians(self.angle_deg)
        return np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])

    def apply(self, xy: np.ndarray) -> np.ndarray:
        """(..., 2) after mm -> before mm."""
        return np.asarray(xy, np.float64) @ self.rotation.T + self.t

    def inverse(self, xy: np.ndarray) -> np.ndarray:
        """(..., 2) before mm -> after mm."""
        return (np.asarray(xy, np.float64) - self.t) @ self.rotation

    def error_at(self, xy: np.ndarray) -> float:
        """The registration's own error at ``xy`` (before mm): its residual, and the turn that residual allows
        (residual over half its landmarks' span) times the distance from their centroid."""
        turn = self.residual_mm / max(self.span_mm / 2, 10.0)
        return float(np.hypot(self.residual_mm, turn * np.linalg.norm(np.asarray(xy) - self.centre)))

    def to_dict(self) -> dict:
        return {"region": self.region, "landmarks": list(self.landmarks), "rotation_deg": round(self.angle_deg, 3),
                "shift_mm": [round(float(v), 3) for v in self.t], "residual_mm": round(self.residual_mm, 3),
                "method": "landmarks + image" if self.image == "refined" else "landmarks (an approximation)",
                "image": self.image, "image_correlation": None if self.score is None else round(self.score, 4),
                "notes": list(self.notes)}


def rigid_fit(src: np.ndarray, dst: np.ndarray) -> Tuple[float, np.ndarray]:
    """The rotation (degrees) and translation taking (n, 2) ``src`` onto ``dst`` best in least squares (no scale,
    no reflection; n >= 2)."""
    a, b = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    ca, cb = a.mean(axis=0), b.mean(axis=0)
    h = (a - ca).T @ (b - cb)
    angle = np.arctan2(h[0, 1] - h[1, 0], h[0, 0] + h[1, 1])
    r = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return float(np.degrees(angle)), cb - r @ ca


def start(region: Region, before: dict, after: dict) -> Optional[Registration]:
    """The landmark-based start of ``region`` from {name: (2,) mm} of each image; None without its landmarks."""
    names = [n for n in region.landmarks if n in before and n in after]
    if len(names) < 2:
        return None
    src, dst = np.array([after[n] for n in names]), np.array([before[n] for n in names])
    if region.name == "overall":        # S on S, S-N along S-N: the line's direction, not a fit of both ends
        u, v = dst[1] - dst[0], src[1] - src[0]
        angle = np.degrees(np.arctan2(u[1], u[0]) - np.arctan2(v[1], v[0]))
        angle = (angle + 180.0) % 360.0 - 180.0
        a = np.radians(angle)
        r = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        t = dst[0] - r @ src[0]
    else:
        angle, t = rigid_fit(src, dst)
    span = max(float(np.linalg.norm(p - q)) for p in dst for q in dst)
    reg = Registration(region.name, region.description, float(angle), t, tuple(names), region.shows,
                       dst.mean(axis=0), span)
    reg.residual_mm = _residual(reg, src, dst)
    return reg


def _residual(reg: Registration, src: np.ndarray, dst: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.sum((reg.apply(src) - dst) ** 2, axis=1))))


def _box(region: Region, before: dict) -> Optional[Tuple[np.ndarray, np.ndarray, float, float]]:
    """(origin, unit along, half length, half width) of the region's box in ``before`` mm."""
    if region.name == "mandible":       # the symphysis: around its landmarks
        pts = np.array([before[n] for n in SYMPHYSIS if n in before])
        if len(pts) < 2:
            return None
        c = pts.mean(axis=0)
        return c, np.array([1.0, 0.0]), 9.0, 9.0
    a, b = (np.asarray(before[n], np.float64) for n in region.axis)
    d = b - a
    length = float(np.linalg.norm(d))
    if length < 1.0:
        return None
    return (a + b) / 2, d / length, length / 2 + region.pad_along, region.across


def refine(reg: Registration, region: Region, before: dict, gray_b: np.ndarray, mm_b: float,
           gray_a: np.ndarray, mm_a: float) -> Registration:
    """``reg`` refined on the images over ``region``'s box (each image's pixels at ``mm_b`` / ``mm_a`` mm)."""
    box = _box(region, before)
    if box is None:
        reg.image = "not refined: the region's landmarks are missing"
        return reg
    c, u, hl, hw = box
    v = np.array([-u[1], u[0]])
    n_u, n_v = int(2 * hl / GRID_MM), int(2 * hw / GRID_MM)
    # grid pixel (i, j) -> before mm: c + (i - n_u/2) g u + (j - n_v/2) g v
    g = np.array([u * GRID_MM, v * GRID_MM]).T              # (2, 2) columns: along, across
    o = c - g @ np.array([n_u / 2, n_v / 2])

    def sample(gray, mm, to_image):
        jj, ii = np.mgrid[0:n_v, 0:n_u].astype(np.float64)
        pts = o + np.stack([ii, jj], -1) @ g.T              # before mm
        px = to_image(pts) / mm
        return cv2.remap(gray.astype(np.float32), px[..., 0].astype(np.float32), px[..., 1].astype(np.float32),
                         cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)

    template = sample(gray_b, mm_b, lambda p: p)
    moving = sample(gray_a, mm_a, reg.inverse)
    if template.std() < 1.0 or moving.std() < 1.0:
        reg.image = "not refined: the region is flat in one image"
        return reg
    warp = np.eye(2, 3, dtype=np.float32)
    try:
        score, warp = cv2.findTransformECC(template, moving, warp, cv2.MOTION_EUCLIDEAN,
                                           (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 200, 1e-6), None, 5)
    except cv2.error:
        reg.image = "not refined: the image registration did not converge"
        reg.notes.append("the image refinement did not converge: the landmark-based start is kept")
        return reg
    # moving(W x) ~ template(x), x in grid px: before mm p = o + G x; the refined before->after map is
    # inverse(o + G W G^-1 (p - o))
    w = warp.astype(np.float64)
    gi = np.linalg.inv(g)
    lin = g @ w[:, :2] @ gi
    shift = o + g @ w[:, 2] - lin @ o            # before mm -> before mm (where the after image's copy lies)
    d_angle = np.degrees(np.arctan2(lin[1, 0], lin[0, 0]))
    moved = float(np.linalg.norm(lin @ c + shift - c))
    if abs(d_angle) > MAX_REFINE_DEG or moved > MAX_REFINE_MM:
        reg.image = "not refined: the image registration moved too far from the landmarks"
        reg.notes.append(f"the image refinement moved {moved:.1f} mm / {d_angle:.1f} deg from the landmarks' start: "
                         f"dropped")
        return reg
    # after mm -> before mm: x -> inverse of (p -> lin p + shift) applied to reg(x)
    r_inv = np.linalg.inv(lin)
    new_r = r_inv @ reg.rotation
    new_t = r_inv @ (reg.t - shift)
    reg.angle_deg = float(np.degrees(np.arctan2(new_r[1, 0], new_r[0, 0])))
    reg.t = new_t
    reg.image, reg.score = "refined", float(score)
    return reg


def superimpose(before: dict, after: dict, gray_b=None, mm_b: float = 1.0, gray_a=None, mm_a: float = 1.0,
                regions: Sequence[Region] = REGIONS) -> List[Registration]:
    """Each region's registration, after mm -> before mm ({name: (2,) mm} of each reading; with the images, each
    refined on them), in ``regions``' order; a region whose landmarks are missing is left out."""
    out = []
    for region in regions:
        reg = start(region, before, after)
        if reg is None:
            continue
        if gray_b is not None and gray_a is not None:
            reg = refine(reg, region, before, gray_b, mm_b, gray_a, mm_a)
            src = np.array([after[n] for n in reg.landmarks])
            dst = np.array([before[n] for n in reg.landmarks])
            reg.residual_mm = _residual(reg, src, dst)
        out.append(reg)
    return out
