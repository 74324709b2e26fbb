"""Augmentation for cephalograms from other machines and sites.

Geometric: one affine (rotation, scale, translation, optional horizontal flip) applied to the letterboxed input by
``cv2.warpAffine``; points move by the same 2x3 matrix in pixel-centre coordinates, so they stay exactly on their
pixels. Intensity: gamma, contrast/brightness, Gaussian noise, Gaussian blur, and (``processing_p`` > 0) the
processing other sites' machines and viewers apply before export: CLAHE and unsharp masking (edge enhancement).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Tuple

import cv2
import numpy as np


@dataclass(frozen=True)
class AugmentConfig:
    rotate_deg: float = 10.0
    scale: Tuple[float, float] = (0.9, 1.1)
    translate: float = 0.05          # fraction of the input size
    hflip_p: float = 0.0             # lateral cephalograms facing left exist; ISBI faces right
    gamma: Tuple[float, float] = (0.7, 1.5)
    contrast: Tuple[float, float] = (0.75, 1.3)
    brightness: float = 0.08         # fraction of full range
    noise_std: float = 0.03          # fraction of full range, upper bound
    blur_sigma: float = 1.0          # upper bound, pixels
    p_geometric: float = 0.9
    p_intensity: float = 0.9
    # other sites' processing: each of CLAHE and unsharp masking applies with this probability (0 = never, as the
    # recipe of the models up to the 320 first stage)
    processing_p: float = 0.0
    clahe_clip: Tuple[float, float] = (1.5, 4.0)
    clahe_tiles: int = 8             # tiles per side of the augmented image (8 = ~30 mm on a whole cephalogram)
    unsharp_amount: Tuple[float, float] = (0.3, 2.0)
    unsharp_sigma: Tuple[float, float] = (1.5, 8.0)   # pixels of the augmented image (~1-5 mm at 384 input)
    # other machines' artifacts: each of shutters, text, a ruler and a tone curve applies with this probability
    artifacts_p: float = 0.0
    shutter_frac: Tuple[float, float] = (0.03, 0.2)    # of the image side a shutter covers


def with_processing(cfg: AugmentConfig, p: float, gamma_max: float, px_scale: float = 1.0,
                    clahe_tiles: int = 8) -> AugmentConfig:
    """``cfg`` with other sites' processing at probability ``p`` and, when ``gamma_max`` differs from its upper
    gamma, the gamma range (min(lower, 1/gamma_max), gamma_max). ``px_scale``: pixels of the augmented image per
    first-stage input pixel at 384 (the local stage's patches are finer), so that the unsharp mask's radius keeps
    its size in mm."""
    if not 0 <= p <= 1:
        raise ValueError(f"processing probability must be in [0, 1], got {p}")
    if not gamma_max >= 1:
        raise ValueError(f"largest augmentation gamma must be >= 1, got {gamma_max}")
    lo, hi = cfg.unsharp_sigma
    gamma = cfg.gamma if gamma_max == cfg.gamma[1] else (min(cfg.gamma[0], 1.0 / gamma_max), gamma_max)
    return replace(cfg, processing_p=p, gamma=gamma,
                   unsharp_sigma=(lo * px_scale, hi * px_scale), clahe_tiles=clahe_tiles)


def random_affine(rng: np.random.Generator, hw: Tuple[int, int], cfg: AugmentConfig) -> np.ndarray:
    """A 2x3 float64 matrix mapping input pixels to augmented input pixels, about the input's centre."""
    h, w = hw
    if rng.random() >= cfg.p_geometric:
        return np.array([[1.0, 0, 0], [0, 1.0, 0]])
    a = math.radians(rng.uniform(-cfg.rotate_deg, cfg.rotate_deg))
    s = rng.uniform(*cfg.scale)
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    tx, ty = rng.uniform(-cfg.translate, cfg.translate, size=2) * (w, h)
    f = -1.0 if rng.random() < cfg.hflip_p else 1.0
    ca, sa = s * math.cos(a), s * math.sin(a)
    lin = np.array([[ca * f, -sa], [sa * f, ca]])
    t = np.array([cx + tx, cy + ty]) - lin @ np.array([cx, cy])
    return np.hstack([lin, t[:, None]])


def warp_image(img: np.ndarray, m: np.ndarray, pad_value: float) -> np.ndarray:
    """(H, W) image warped by the 2x3 matrix ``m`` (input -> output pixels), same size, border = pad_value."""
    h, w = img.shape[:2]
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=float(pad_value))


def warp_points(xy: np.ndarray, m: np.ndarray) -> np.ndarray:
    """(K, 2) points moved by the 2x3 matrix ``m``."""
    return xy @ m[:, :2].T + m[:, 2]


def random_intensity(img: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig,
                     content: Tuple[slice, slice] = (slice(None), slice(None))) -> np.ndarray:
    """(H, W) uint8 -> (H, W) float32 in [0, 255]; only ``content`` (the unpadded area) is changed."""
    x = img.astype(np.float32) * np.float32(1 / 255.0)
    if rng.random() < cfg.p_intensity:
        c = x[content]
        if cfg.processing_p > 0 and rng.random() < cfg.processing_p:
            clahe = cv2.createCLAHE(rng.uniform(*cfg.clahe_clip), (cfg.clahe_tiles, cfg.clahe_tiles))
            c = clahe.apply(np.ascontiguousarray(img[content]).astype(np.uint8)).astype(np.float32) / 255.0
        c = np.power(c, rng.uniform(*cfg.gamma), dtype=np.float32)
        m = c.mean()
        c = (c - m) * rng.uniform(*cfg.contrast) + m + rng.uniform(-cfg.brightness, cfg.brightness)
        if cfg.processing_p > 0 and rng.random() < cfg.processing_p:
            amount, radius = rng.uniform(*cfg.unsharp_amount), rng.uniform(*cfg.unsharp_sigma)
            c = c + amount * (c - cv2.GaussianBlur(c, (0, 0), radius))
        if cfg.artifacts_p > 0:
            c = machine_artifacts(c, rng, cfg)
        sigma = rng.uniform(0, cfg.blur_sigma)
        if sigma > 0.3:
            c = cv2.GaussianBlur(c, (0, 0), sigma)
        c = c + rng.normal(0, rng.uniform(0, cfg.noise_std), size=c.shape).astype(np.float32)
        x[content] = np.clip(c, 0, 1)
    return x * np.float32(255.0)


_TEXT_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 -:/^."


def _paint(c: np.ndarray, mask: np.ndarray, value: float) -> np.ndarray:
    """``c`` with ``value`` drawn where the 8-bit ``mask`` is set (its anti-aliased edges blended)."""
    a = mask.astype(np.float32) * np.float32(1 / 255.0)
    return c * (1 - a) + np.float32(value) * a


def machine_artifacts(c: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """(H, W) float32 in [0, 1] with other machines' artifacts drawn in, each with probability ``artifacts_p``."""
    c = np.array(c, dtype=np.float32, copy=True)
    h, w = c.shape
    p = cfg.artifacts_p
    if rng.random() < p:          # tone curve: a sigmoid about a random grey
        mid, width = rng.uniform(0.35, 0.65), rng.uniform(0.06, 0.2)
        c = 1.0 / (1.0 + np.exp(-(c - mid) / width, dtype=np.float32))
    if rng.random() < p:          # burned-in text lines and a label block
        mask = np.zeros((h, w), np.uint8)      # OpenCV draws text on 8-bit images only
        scale = rng.uniform(0.6, 1.6) * h / 1000.0
        for _ in range(rng.integers(1, 5)):
            text = "".join(rng.choice(list(_TEXT_CHARS), size=rng.integers(4, 24)))
            org = (int(rng.uniform(0, 0.8) * w), int(rng.uniform(0.03, 1.0) * h))
            cv2.putText(mask, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.9 * scale, 255, max(1, int(2 * scale)),
                        cv2.LINE_AA)
        if rng.random() < 0.5:
            bh, bw = int(rng.uniform(0.03, 0.08) * h), int(rng.uniform(0.08, 0.2) * w)
            y, x = int(rng.uniform(0, 1) * (h - bh)), int(rng.uniform(0, 1) * (w - bw))
            mask[y:y + bh, x:x + bw] = 255
        c = _paint(c, mask, rng.uniform(0.8, 1.0))
    if rng.random() < p:          # a ruler: a bar with a comb of ticks, anywhere, upright or lying
        mask = np.zeros((h, w), np.uint8)
        pitch = rng.uniform(0.006, 0.02) * h
        n = int(rng.integers(6, 20))
        length, tick = pitch * n, rng.uniform(0.008, 0.025) * h
        x0, y0 = rng.uniform(0, 0.9) * w, rng.uniform(0, 0.9) * h
        th = max(1, int(rng.uniform(0.002, 0.006) * h))
        lines = [(x0, y0, x0, y0 + length)] + [(x0, y0 + i * pitch, x0 + tick * (1.6 if i % 5 == 0 else 1.0),
                                                 y0 + i * pitch) for i in range(n + 1)]
        upright = rng.random() < 0.6
        for a, b, cc, d in lines:
            p0, p1 = ((a, b), (cc, d)) if upright else ((b, a), (d, cc))
            cv2.line(mask, tuple(map(int, p0)), tuple(map(int, p1)), 255, th)
        c = _paint(c, mask, rng.uniform(0.7, 1.0))
    if rng.random() < p:          # collimator shutters on one to three sides (a shutter on top cuts the skull)
        fill = 0.0 if rng.random() < 0.85 else 1.0
        for side in rng.choice(4, size=rng.integers(1, 4), replace=False):
            f = rng.uniform(*cfg.shutter_frac)
            if side == 0:
                c[:int(f * h)] = fill
            elif side == 1:
                c[h - int(f * h):] = fill
            elif side == 2:
                c[:, :int(f * w)] = fill
            else:
                c[:, w - int(f * w):] = fill
    return c
