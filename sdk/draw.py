"""Overlay drawing: numbered landmarks on the image with a legend of their names, flagged ones marked, written as
PNG (paths handled as bytes: non-ASCII and Windows paths work)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from .errors import ImageError

_OK, _FLAGGED, _TEXT = (0, 0, 255), (0, 165, 255), (0, 255, 255)   # BGR: red points, orange when flagged
_RULER = (0, 200, 0)               # BGR green: the ruler's P1/P2
_REPAIRED = (255, 128, 0)          # BGR blue: a repaired point, a square, with a line from its first reading
_RODS = (255, 0, 200)             # BGR violet: the ear rods' rings and the machine porion on their top


_LINE = (255, 200, 0)     # BGR: the tracing's lines, light blue


def draw_landmarks(gray: np.ndarray, xy: np.ndarray, labels=None, radius: int = 0,
                   names: Optional[Sequence[str]] = None, flagged: Optional[np.ndarray] = None,
                   lines: Sequence[Tuple[int, int]] = (),
                   measurements: Sequence[Tuple[str, bool]] = (), repaired: Optional[np.ndarray] = None,
                   first_reading: Optional[np.ndarray] = None, ruler: Optional[np.ndarray] = None,
                   ear_rods=None) -> np.ndarray:
    """(H, W) uint8 gray + (K, 2) points -> BGR overlay with numbered points (1-based, or ``labels``).

    ``names``: a legend panel ``number  name`` is added on the right, so numbers beside the points stay short
    and the image itself is not covered. ``flagged`` (K,) bool: those points are drawn as rings, in orange, and
    marked in the legend. ``lines``: (i, j) landmark pairs drawn first, as a tracing; ``measurements``: (text,
    doubtful) lines of a second panel (doubtful ones in orange). ``repaired`` (K,) bool with ``first_reading``
    (K, 2): those points are drawn as blue squares, a thin line from where they were first read, and marked
    '(repaired)' in the legend. ``ruler`` (2, 2): the ruler's P1 and P2, marked and joined. ``ear_rods``: (rings
    (M, 3) x, y, r; the machine porion (2,); the anatomical porion it replaced (2,) or None; certain): the rings
    drawn thin, the machine porion marked 'MPo' (orange when uncertain) and a replaced anatomical porion 'Po'.
    Sizes scale with the image so the overlay reads at its own size."""
    img = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    scale = max(gray.shape) / 1000.0
    r = radius or max(2, int(round(6 * scale)))
    thick = max(1, int(round(2 * scale)))
    flagged = np.zeros(len(xy), bool) if flagged is None else np.asarray(flagged, bool)
    repaired = np.zeros(len(xy), bool) if repaired is None or not len(repaired) else np.asarray(repaired, bool)
    pts = np.asarray(xy, float)
    for i, j in lines:
        a, b = pts[i], pts[j]
        if np.isfinite(a).all() and np.isfinite(b).all():
            cv2.line(img, (int(round(a[0])), int(round(a[1]))), (int(round(b[0])), int(round(b[1]))), _LINE,
                     max(1, thick // 2 + 1), cv2.LINE_AA)
    if ruler is not None:
        a, b = (tuple(int(round(v)) for v in p) for p in ruler)
        cv2.line(img, a, b, _RULER, thick, cv2.LINE_AA)
        for p, name in ((a, "P1"), (b, "P2")):
            cv2.drawMarker(img, p, _RULER, cv2.MARKER_CROSS, 3 * r, thick, cv2.LINE_AA)
            cv2.putText(img, name, (p[0] + 2 * r, p[1]), cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, _RULER, thick,
                        cv2.LINE_AA)
    if ear_rods is not None:
        rings, mp, anatomical, certain = ear_rods
        colour = _RODS if certain else _FLAGGED
        for cx, cy, rr in rings:
            cv2.circle(img, (int(round(cx * 4)), int(round(cy * 4))), int(round(rr * 4)), colour, max(1, thick // 2),
                       cv2.LINE_AA, shift=2)
        for p, name in ((mp, "MPo"), (anatomical, "Po")):
            if p is None:
                continue
            c = (int(round(p[0])), int(round(p[1])))
            cv2.drawMarker(img, c, colour if name == "MPo" else _LINE, cv2.MARKER_DIAMOND, 3 * r, thick, cv2.LINE_AA)
            cv2.putText(img, name, (c[0] - 6 * r, c[1] - 2 * r), cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale,
                        colour if name == "MPo" else _LINE, thick, cv2.LINE_AA)
    placed: list = []
    for i, (x, y) in enumerate(np.asarray(xy, float)):
        if not (np.isfinite(x) and np.isfinite(y)):
            continue
        c = (int(round(x)), int(round(y)))
        if repaired[i] and first_reading is not None:
            f = (int(round(first_reading[i][0])), int(round(first_reading[i][1])))
            cv2.line(img, f, c, _REPAIRED, max(1, thick // 2), cv2.LINE_AA)
            cv2.drawMarker(img, f, _REPAIRED, cv2.MARKER_TILTED_CROSS, 2 * r, max(1, thick // 2), cv2.LINE_AA)
            cv2.rectangle(img, (c[0] - r, c[1] - r), (c[0] + r, c[1] + r), _REPAIRED, thick, cv2.LINE_AA)
        else:
            colour = _FLAGGED if flagged[i] else _OK
            cv2.circle(img, c, r + (thick if flagged[i] else 0), colour, thick if flagged[i] else -1, cv2.LINE_AA)
        text = str(labels[i]) if labels is not None else str(i + 1)
        org = _label_place(text, c, r, scale, thick, placed, pts)
        cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, _TEXT, thick, cv2.LINE_AA)
    panels = [img]
    if names is not None:
        marks = ["  (check)" if flagged[i] else "  (repaired)" if repaired[i] else "" for i in range(len(names))]
        panels.append(_legend([f"{labels[i] if labels is not None else i + 1:>2}  {n}{marks[i]}"
                               for i, n in enumerate(names)], flagged, img.shape[0], scale))
    if measurements:
        panels.append(_legend([t for t, _ in measurements], np.array([d for _, d in measurements], bool),
                              img.shape[0], scale))
    return np.hstack(panels) if len(panels) > 1 else img


def _label_place(text: str, c, r: int, scale: float, thick: int, placed: list, pts: np.ndarray):
    """Where a point's number goes: the first of eight spots around it whose box overlaps no number placed
    before and covers no other point (menton and gnathion sit a few pixels apart); up-right when none is free.
    The chosen box is added to ``placed``."""
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, thick)
    gap = r + 2
    spots = [(gap, -gap), (gap, gap + th), (-gap - tw, -gap), (-gap - tw, gap + th), (gap + 2, th // 2),
             (-gap - tw - 2, th // 2), (-tw // 2, -gap - 2), (-tw // 2, gap + th + 2)]
    finite = pts[np.isfinite(pts).all(axis=1)]
    for dx, dy in spots:
        x0, y1 = c[0] + dx, c[1] + dy                  # putText's origin is the text's bottom-left
        box = (x0, y1 - th, x0 + tw, y1 + base)
        hits_box = any(not (box[2] < b[0] or b[2] < box[0] or box[3] < b[1] or b[3] < box[1]) for b in placed)
        near = ((finite[:, 0] >= box[0] - r) & (finite[:, 0] <= box[2] + r)
                & (finite[:, 1] >= box[1] - r) & (finite[:, 1] <= box[3] + r))
        if not hits_box and not near.any():
            placed.append(box)
            return x0, y1
    placed.append((c[0] + gap, c[1] - gap - th, c[0] + gap + tw, c[1] - gap + base))
    return c[0] + gap, c[1] - gap


def _legend(lines: Sequence[str], flagged: np.ndarray, height: int, scale: float) -> np.ndarray:
    """A dark panel of text lines (flagged ones in orange)."""
    font, fs, thick = cv2.FONT_HERSHEY_SIMPLEX, 0.55 * scale, max(1, int(round(1.5 * scale)))
    (tw, th), _ = cv2.getTextSize(max(lines, key=len), font, fs, thick)
    step = max(th + 4, min(int(th * 2.0), (height - 2 * th) // max(1, len(lines))))
    panel = np.full((height, tw + 2 * th, 3), 32, np.uint8)
    for i, line in enumerate(lines):
        y = th + (i + 1) * step
        if y > height - 2:
            break
        cv2.putText(panel, line, (th, y), font, fs, _FLAGGED if flagged[i] else _TEXT, thick, cv2.LINE_AA)
    return panel


def save_png(img: np.ndarray, path: Union[str, Path]) -> Path:
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise ImageError(f"cannot encode the overlay for {path}")
    path = Path(path)
    path.write_bytes(buf.tobytes())
    return path


_BEFORE, _AFTER = (255, 160, 0), (0, 0, 255)        # BGR: the earlier tracing blue, the later red


def draw_comparison(result: dict, after, after_gray: np.ndarray) -> np.ndarray:
    """The picture of a comparison (:func:`sdk.compare.compare`): both tracings, the earlier one carried onto the
    later image by the overall superimposition, over the later image faded; a legend naming the two, the
    superimposition and the changes beyond reading error, and a 10 mm scale bar when there is a spacing."""
    from .tracing import tracing

    faded = (128 + np.asarray(after_gray, np.float32) * 0.5).astype(np.uint8)
    img = cv2.cvtColor(faded, cv2.COLOR_GRAY2BGR)
    scale = max(after_gray.shape) / 1000.0
    thick = max(1, int(round(2 * scale)))
    lines, _ = tracing(after)
    for xy, colour in ((np.asarray(result["before_on_after_px"], float), _BEFORE), (np.asarray(after.xy), _AFTER)):
        for i, j in lines:
            a, b = xy[i], xy[j]
            cv2.line(img, (int(round(a[0])), int(round(a[1]))), (int(round(b[0])), int(round(b[1]))), colour,
                     thick, cv2.LINE_AA)
        for p in xy:
            cv2.circle(img, (int(round(p[0])), int(round(p[1]))), max(2, int(round(4 * scale))), colour, -1,
                       cv2.LINE_AA)
    if after.spacing:
        n = int(round(10.0 / after.spacing))
        y, x0 = img.shape[0] - int(30 * scale) - 10, int(30 * scale) + 10
        cv2.line(img, (x0, y), (x0 + n, y), (0, 0, 0), thick + 2)
        cv2.putText(img, "10 mm", (x0, y - int(10 * scale)), cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, (0, 0, 0),
                    thick, cv2.LINE_AA)
    overall = result["superimpositions"]["overall"]
    text = [f"blue: {result['before']['label']}", f"red: {result['after']['label']}",
            f"superimposed on the {overall['region']} ({overall['method']})"]
    beyond = [f"{k} {c['change']:+.1f} {c['unit']}" for k, c in result["changes"].items()
              if c["within_reading_error"] is False]
    unit = "mm" if result["units"] == "mm" else "px"
    moved = [f"{r['name']} {r[f'distance_{unit}']:.1f} {unit}" for r in result["displacements"]["overall"]
             if not r["within_reading_error"]]
    text += ["changed beyond reading error:"] + (beyond or ["no measurement"])
    text += ["moved beyond reading error (overall):"] + (moved or ["no landmark"])
    text += result["doubtful"] + result["notes"]
    panel = _legend(text, np.array([t in result["doubtful"] for t in text]), img.shape[0], scale)
    return np.hstack([img, panel])
