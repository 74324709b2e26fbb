"""Images as other sites' machines would make them, with the labels moved along: for measuring (robustness,
cross_site) and for fitting the flags' calibration on held-out images (``cephalo calibrate``).

Each variant is ``(image transform, point transform given (K, 2) points and the original (h, w), spacing
factor)``: the changed image's mm per pixel is the original's times the factor. Transforms take the full-size
(H, W) uint8 gray image (ISBI: 1935 x 2400 at 0.1 mm/px); the cross-site ones assume ISBI's framing.
"""
from __future__ import annotations

import cv2
import numpy as np


def _gamma(g, p):
    return np.clip(255.0 * (g / 255.0) ** p, 0, 255).astype(np.uint8)


def _contrast(g, c):
    m = g.mean()
    return np.clip((g.astype(np.float32) - m) * c + m, 0, 255).astype(np.uint8)


def _unsharp(g, amount, sigma):
    """Edge enhancement as many digital cephalostats apply before export: g + amount * (g - blur(g))."""
    g32 = g.astype(np.float32)
    return np.clip(g32 + amount * (g32 - cv2.GaussianBlur(g32, (0, 0), sigma)), 0, 255).astype(np.uint8)


def _jpeg(g, quality):
    ok, buf = cv2.imencode(".jpg", g, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)


def _u16_hot_pixel(g):
    """12-bit data in a 16-bit container with one saturated marker pixel (a burned-in overlay), as some exports
    have: the SDK's 16-bit windowing must not squeeze the anatomy into a few grey levels because of it."""
    out = g.astype(np.uint16) * 16
    out[0, 0] = 65535
    return out


def _u16_label(g):
    """The same with a burned-in white label block (0.4% of the pixels) at 65535."""
    out = g.astype(np.uint16) * 16
    out[20:100, 20:260] = 65535
    return out


def _scale(g, s):
    h, w = g.shape
    return cv2.resize(g, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


# name -> (image transform, point transform given (K, 2) points and the original (h, w), spacing factor)
VARIANTS = {
    "as is": (lambda g: g, lambda p, hw: p, 1.0),
    "gamma 0.6 (brighter)": (lambda g: _gamma(g, 0.6), lambda p, hw: p, 1.0),
    "gamma 1.6 (darker)": (lambda g: _gamma(g, 1.6), lambda p, hw: p, 1.0),
    "contrast x0.6": (lambda g: _contrast(g, 0.6), lambda p, hw: p, 1.0),
    "inverted grey (negative film)": (lambda g: 255 - g, lambda p, hw: p, 1.0),
    "blur sigma 3 px": (lambda g: cv2.GaussianBlur(g, (0, 0), 3), lambda p, hw: p, 1.0),
    "noise sd 12": (lambda g: np.clip(g + np.random.default_rng(0).normal(0, 12, g.shape), 0, 255).astype(np.uint8),
                    lambda p, hw: p, 1.0),
    "half resolution (0.2 mm/px)": (lambda g: _scale(g, 0.5), lambda p, hw: (p + 0.5) * 0.5 - 0.5, 2.0),
    "crop 10% each side": (lambda g: g[g.shape[0] // 10: -g.shape[0] // 10, g.shape[1] // 10: -g.shape[1] // 10],
                           lambda p, hw: p - np.array([hw[1] // 10, hw[0] // 10]), 1.0),
    "wide canvas (+50% width, padded)": (lambda g: cv2.copyMakeBorder(g, 0, 0, g.shape[1] // 4, g.shape[1] // 4,
                                                                      cv2.BORDER_CONSTANT, value=0),
                                         lambda p, hw: p + np.array([hw[1] // 4, 0]), 1.0),
    "facing left (mirrored)": (lambda g: g[:, ::-1].copy(), lambda p, hw: np.c_[hw[1] - 1 - p[:, 0], p[:, 1]], 1.0),
    # processing other sites' machines and viewers apply before export (CLAHE and unsharp masking are in the
    # training augmentation only with --aug-processing-p; histogram equalisation and JPEG never)
    "CLAHE (clip 2, 8x8 tiles)": (lambda g: cv2.createCLAHE(2.0, (8, 8)).apply(g), lambda p, hw: p, 1.0),
    "unsharp mask (x1.5, sigma 20 px)": (lambda g: _unsharp(g, 1.5, 20.0), lambda p, hw: p, 1.0),
    "histogram equalised": (cv2.equalizeHist, lambda p, hw: p, 1.0),
    "JPEG quality 20": (lambda g: _jpeg(g, 20), lambda p, hw: p, 1.0),
    "16-bit, 12-bit data + a saturated pixel": (_u16_hot_pixel, lambda p, hw: p, 1.0),
    "16-bit, 12-bit data + a burned-in label": (_u16_label, lambda p, hw: p, 1.0),
}




def in_frame(points: np.ndarray, shape) -> np.ndarray:
    """(K,) bool: which (K, 2) labels lie on an image of ``shape`` (a variant may move some out of the frame;
    those have no pixels to find and are not scored)."""
    return (points[:, 0] >= 0) & (points[:, 1] >= 0) & (points[:, 0] < shape[1]) & (points[:, 1] < shape[0])


def variant_readings(samples, variants):
    """Each sample under each variant, as the studies and the calibration read them: yields ``(sample, variant,
    image, labels, inside, mm_per_px)`` with the labels moved with the image, ``inside`` the labels still in its
    frame (:func:`in_frame`) and the variant's pixel spacing. Each sample's image is decoded once."""
    from sdk.image_io import load_image

    for s in samples:
        g = load_image(s.image).gray
        for v in variants:
            fimg, fpts, factor = VARIANTS[v]
            img = fimg(g)
            gt = fpts(s.points, g.shape)
            yield s, v, img, gt, in_frame(gt, img.shape), s.spacing * factor


def _resized(g, s):
    """``g`` resized by ``s`` (area when shrinking) and the exact point map of that resize."""
    h, w = g.shape
    nh, nw = max(1, round(h * s)), max(1, round(w * s))
    return cv2.resize(g, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR), (nw / w, nh / h)


def _machine_box(hw):
    """The tighter field as (y0, y1, x0, x1), in proportion to the image (on ISBI: rows 140-2260, columns 235-)."""
    h, w = hw
    return round(h * 140 / 2400), round(h * 2260 / 2400), round(w * 235 / 1935), w


def _other_machine(g):
    """A tighter field (about 170 x 212 mm on ISBI: the occiput and the skull's top cut off) at 0.127 mm/px."""
    y0, y1, x0, x1 = _machine_box(g.shape)
    return _resized(g[y0:y1, x0:x1], 0.1 / 0.127)[0]


def _other_machine_pts(p, hw):
    y0, y1, x0, x1 = _machine_box(hw)
    ch, cw = y1 - y0, x1 - x0
    nw, nh = max(1, round(cw * 0.1 / 0.127)), max(1, round(ch * 0.1 / 0.127))
    q = p - np.array([x0, y0])
    return np.c_[(q[:, 0] + 0.5) * nw / cw - 0.5, (q[:, 1] + 0.5) * nh / ch - 0.5]


def _wider(g):
    """A wider field, padded 20% on every side, at 0.15 mm/px."""
    h, w = g.shape
    pad = cv2.copyMakeBorder(g, h // 5, h // 5, w // 5, w // 5, cv2.BORDER_CONSTANT, value=0)
    return _resized(pad, 0.1 / 0.15)[0]


def _wider_pts(p, hw):
    h, w = hw
    ph, pw = h + 2 * (h // 5), w + 2 * (w // 5)
    nh, nw = max(1, round(ph * 0.1 / 0.15)), max(1, round(pw * 0.1 / 0.15))
    q = p + np.array([w // 5, h // 5])
    return np.c_[(q[:, 0] + 0.5) * nw / pw - 0.5, (q[:, 1] + 0.5) * nh / ph - 0.5]


def _ruler_elsewhere(g):
    """The nasion rod's ruler (upper right on ISBI) copied onto the back of the head: a second, misplaced
    ruler such as other head holders have (porion and articulare were put on a ruler 70 mm away at another clinic)."""
    out = g.copy()
    h, w = g.shape
    src = g[0:round(h * 1000 / 2400), int(w * 0.76):int(w * 0.76) + round(w * 260 / 1935)]   # ISBI: 1000 x 260
    y, x = round(h * 700 / 2400), round(w * 40 / 1935)
    n = max(0, min(src.shape[0], h - y))
    out[y:y + n, x:x + src.shape[1]] = src[:n, :max(0, min(src.shape[1], w - x))]
    return out


def _burned_in_text(g):
    """Burned-in patient text and a white label block, as exports from practice software carry."""
    out = g.copy()
    h, w = g.shape
    s = h / 1000.0
    for i, line in enumerate(("DOE^JANE  1998-04-12  F", "CEPH LAT  80 kV 10 mA 0.5 s", "2026-11-30 09:41")):
        cv2.putText(out, line, (int(30 * s), int((40 + 35 * i) * s)), cv2.FONT_HERSHEY_SIMPLEX, 0.9 * s, 255,
                    max(1, int(2 * s)), cv2.LINE_AA)
    out[h - int(120 * s):h - int(30 * s), w - int(330 * s):w - int(30 * s)] = 255
    cv2.putText(out, "R", (w - int(250 * s), h - int(50 * s)), cv2.FONT_HERSHEY_SIMPLEX, 2.5 * s, 0, int(5 * s))
    return out


def _collimated(g):
    """Collimator shutters: the top 12% and bottom 6% black, the left 8% black."""
    out = g.copy()
    h, w = g.shape
    out[:int(h * 0.12)] = 0
    out[h - int(h * 0.06):] = 0
    out[:, :int(w * 0.08)] = 0
    return out


def _s_curve(g):
    """A sigmoid tone curve (strong contrast processing)."""
    x = g.astype(np.float32)
    return np.clip(255.0 / (1.0 + np.exp(-(x - 128.0) / 28.0)), 0, 255).astype(np.uint8)


VARIANTS.update({
    "other machine (170x212 mm field, 0.127 mm/px)": (_other_machine, _other_machine_pts, 1.27),
    "wider field (+20% each side, 0.15 mm/px)": (_wider, _wider_pts, 1.5),
    "a second ruler on the back of the head": (_ruler_elsewhere, lambda p, hw: p, 1.0),
    "burned-in text and label": (_burned_in_text, lambda p, hw: p, 1.0),
    "collimated (shutters top, bottom, left)": (_collimated, lambda p, hw: p, 1.0),
    "sigmoid tone curve": (_s_curve, lambda p, hw: p, 1.0),
})

# Variants standing for other clinics' machines, the set the flags' calibration and the cross-site benchmark use.
CROSS_SITE = ("as is", "other machine (170x212 mm field, 0.127 mm/px)", "wider field (+20% each side, 0.15 mm/px)",
              "a second ruler on the back of the head", "burned-in text and label",
              "collimated (shutters top, bottom, left)", "sigmoid tone curve", "CLAHE (clip 2, 8x8 tiles)",
              "unsharp mask (x1.5, sigma 20 px)", "crop 10% each side", "gamma 1.6 (darker)",
              "half resolution (0.2 mm/px)")


def pick_variants(spec: str):
    """Names of VARIANTS named in ``spec`` (comma-separated names or name prefixes), in table order; all if empty."""
    wanted = [w.strip() for w in spec.split(",") if w.strip()]
    if not wanted:
        return list(VARIANTS)
    out = set()
    for w in wanted:
        hits = [n for n in VARIANTS if n.startswith(w)]
        if not hits:
            raise ValueError(f"--variants: {w!r} names no variant; choose from {list(VARIANTS)}")
        out.update(hits)
    return [n for n in VARIANTS if n in out]
