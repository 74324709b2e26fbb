"""A small labelling aid for the ear rods' rings (issue 45): it proposes candidate circles, draws them on
contrast-stretched crops, and takes a person's choice and corrections; the labels are kept as data.

    python -m lab.studies.ring_labels propose --data ../shared/data/isbi2015 --images 001,005,... [--state F]
    python -m lab.studies.ring_labels sheet --data ... --images 001,005,... --out sheet.png [--only-rings]
    python -m lab.studies.ring_labels pick 001 2,5            # the rings are candidates 2 and 5
    python -m lab.studies.ring_labels set 001 0 cx cy r       # ring 0 by hand (full-image px), e.g. after a nudge
    python -m lab.studies.ring_labels nudge 001 0 dx dy dr    # move ring 0 (full-image px)
    python -m lab.studies.ring_labels export [--out CSV]

The state (candidates, chosen rings, how each was made) is ``lab/data/ear_rods/isbi_rings.json``; ``export``
writes ``isbi_rings.csv`` beside it: per image each ring's centre and radius (full-image pixels) and the machine
porion by the stated convention (the mean of the rings' tops: the highest point of each ring in the image).
Candidates come from :func:`sdk.ear_rods.ring_candidates` on the whole-resolution image, centred on the clinicians'
anatomical porion (the mean of senior and junior), so that the labels do not depend on the model's reading.
"""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
from typing import Tuple

import cv2
import numpy as np

HERE = Path(__file__).resolve().parents[1] / "data" / "ear_rods"
STATE = HERE / "isbi_rings.json"
COLOURS = [(0, 0, 255), (0, 200, 0), (255, 64, 0), (0, 200, 255), (255, 0, 255), (255, 255, 0), (128, 128, 255),
           (0, 128, 255)]
CROP = 340          # tile size, full-image pixels (34 mm at 0.1 mm/px)


def _load(state: Path = STATE) -> dict:
    return json.loads(state.read_text()) if state.exists() else {}


def _save(d: dict, state: Path = STATE) -> None:
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text(json.dumps(d, indent=1, sort_keys=True))


def _porion(data: Path) -> dict:
    """Image id -> the clinicians' anatomical porion (mean of senior and junior), full-image px."""
    out = {}
    for who in ("senior", "junior"):
        with open(data / f"{who}.csv", newline="") as f:
            for r in csv.DictReader(f):
                k = r["image"].split(".")[0]
                out.setdefault(k, []).append((float(r["porion_x"]), float(r["porion_y"])))
    return {k: np.mean(v, axis=0) for k, v in out.items()}


def propose(data: Path, ids, state: Path = STATE) -> None:
    from sdk.ear_rods import ring_candidates

    d, por = _load(state), _porion(data)
    for k in ids:
        gray = cv2.imread(str(data / "images" / f"{k}.jpg"), cv2.IMREAD_GRAYSCALE)
        cands = ring_candidates(gray, por[k], 0.1, n=8)
        e = d.setdefault(k, {})
        e["candidates"] = [[round(float(c.x), 1), round(float(c.y), 1), round(float(c.r), 1), round(float(c.score), 3)]
                           for c in cands]
        e["porion"] = [round(float(v), 1) for v in por[k]]
        print(k, len(cands))
    _save(d, state)


def tile_origin(centre) -> Tuple[int, int]:
    """The full-image pixel at a tile's top-left corner: tiles are on a 10-pixel grid, so that the grid's numbers
    read as full-image coordinates."""
    return int(round((centre[0] - CROP / 2) / 10) * 10), int(round((centre[1] - CROP / 2) / 10) * 10)


def _tile(gray: np.ndarray, centre, circles, label: str, grid: bool = False) -> np.ndarray:
    x0, y0 = tile_origin(centre)
    pad = CROP
    g = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
    c = g[y0 + pad:y0 + pad + CROP, x0 + pad:x0 + pad + CROP]
    c = cv2.createCLAHE(2.5, (4, 4)).apply(cv2.GaussianBlur(c, (0, 0), 1.2))
    z = 2
    t = cv2.cvtColor(cv2.resize(c, None, fx=z, fy=z, interpolation=cv2.INTER_CUBIC), cv2.COLOR_GRAY2BGR)
    if grid:        # every 1 mm (10 px) faint, every 5 mm with its full-image coordinate
        for v in range(0, CROP + 1, 10):
            strong = (v + x0) % 50 == 0
            cv2.line(t, (v * z, 0), (v * z, CROP * z), (90, 160, 90) if strong else (60, 90, 60), 1)
            if strong:
                cv2.putText(t, str(v + x0), (v * z + 2, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 255, 255), 1)
        for v in range(0, CROP + 1, 10):
            strong = (v + y0) % 50 == 0
            cv2.line(t, (0, v * z), (CROP * z, v * z), (90, 160, 90) if strong else (60, 90, 60), 1)
            if strong:
                cv2.putText(t, str(v + y0), (2, v * z - 2), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 255, 255), 1)
    for j, (cx, cy, r, col, name) in enumerate(circles):
        p = (int(round((cx - x0) * z * 4)), int(round((cy - y0) * z * 4)))
        cv2.circle(t, p, int(round(r * z * 4)), col, 1, cv2.LINE_AA, shift=2)
        top = (int(round((cx - x0) * z)), int(round((cy - r - y0) * z)))
        cv2.putText(t, name, (top[0] - 6 + 14 * (j % 3), top[1] - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.5, col, 1,
                    cv2.LINE_AA)
    cv2.putText(t, label, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 255, 0), 2, cv2.LINE_AA)
    return t


def sheet(data: Path, ids, out: Path, only_rings: bool = False, cols: int = 2, state: Path = STATE,
          grid: bool = False, plain: bool = False, side: bool = False) -> None:
    d = _load(state)
    tiles = []
    for k in ids:
        e = d[k]
        gray = cv2.imread(str(data / "images" / f"{k}.jpg"), cv2.IMREAD_GRAYSCALE)
        if plain:
            circles = []
        elif only_rings:
            circles = [(x, y, r, COLOURS[j], str(j)) for j, (x, y, r) in enumerate(e.get("rings", []))]
        else:
            circles = [(x, y, r, COLOURS[j % len(COLOURS)], str(j))
                       for j, (x, y, r, _) in enumerate(e["candidates"][:4])]
        pts = [(c[0], c[1]) for c in circles] or [e["porion"]]
        centre = np.mean(pts, axis=0) if only_rings and circles else np.array(e["porion"]) + (0, 80)
        at = centre if not plain else np.array(e["porion"]) + (0, 80)
        tile = _tile(gray, at, circles, k, grid)
        if side:        # the image alone beside it, to see the rims the circles cover
            tile = np.hstack([_tile(gray, at, [], k, grid), tile])
        tiles.append(tile)
    while len(tiles) % cols:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.hstack(tiles[i:i + cols]) for i in range(0, len(tiles), cols)]
    cv2.imwrite(str(out), np.vstack(rows))


def _snap_one(gray: np.ndarray, ring, reach: float = 15.0):
    """A roughly placed ring moved onto the nearest bright rim: the mean ridge along the whole circle (not the
    detector's completeness), hill-climbed over centre and radius within ``reach`` pixels, full resolution."""
    x, y, r = ring
    pad = int(r + reach + 20)
    x0, y0 = int(x) - pad, int(y) - pad
    c = gray[max(0, y0):y0 + 2 * pad, max(0, x0):x0 + 2 * pad].astype(np.float32)
    ox, oy = max(0, x0), max(0, y0)
    g = cv2.GaussianBlur(c - cv2.GaussianBlur(c, (0, 0), 20), (0, 0), 2.5)
    dxx, dyy, dxy = (cv2.Sobel(g, cv2.CV_32F, *o, ksize=3) for o in ((2, 0), (0, 2), (1, 1)))
    tr, root = dxx + dyy, np.sqrt((dxx - dyy) ** 2 + 4 * dxy ** 2)
    rid = np.maximum(-(tr - root) / 2, 0)
    ang = 0.5 * np.arctan2(2 * dxy, dxx - dyy)
    nx, ny = -np.sin(ang), np.cos(ang)
    a = (rid * nx * nx, rid * nx * ny, rid * ny * ny)
    th = np.linspace(0, 2 * np.pi, 360, endpoint=False)
    ca, sa = np.cos(th), np.sin(th)

    def fit(cx, cy, rr):
        best = None
        for dr in (-2, -1, 0, 1, 2):
            xi = np.clip(np.rint(cx - ox + (rr + dr) * ca).astype(int), 0, c.shape[1] - 1)
            yi = np.clip(np.rint(cy - oy + (rr + dr) * sa).astype(int), 0, c.shape[0] - 1)
            v = a[0][yi, xi] * ca * ca + 2 * a[1][yi, xi] * ca * sa + a[2][yi, xi] * sa * sa
            best = v if best is None else np.maximum(best, v)
        return float(best.mean())

    cur = (fit(x, y, r), x, y, r)
    for step in (4.0, 2.0, 1.0, 0.5):
        moved = True
        while moved:
            moved = False
            for d in ((step, 0, 0), (-step, 0, 0), (0, step, 0), (0, -step, 0), (0, 0, step), (0, 0, -step)):
                cand = (cur[1] + d[0], cur[2] + d[1], cur[3] + d[2])
                if max(abs(cand[0] - x), abs(cand[1] - y), abs(cand[2] - r)) > reach:
                    continue
                f = fit(*cand)
                if f > cur[0] + 1e-9:
                    cur, moved = (f, *cand), True
    return [round(v, 1) for v in cur[1:]]


def snap(data: Path, k: str, state: Path = STATE) -> None:
    d = _load(state)
    gray = cv2.imread(str(data / "images" / f"{k}.jpg"), cv2.IMREAD_GRAYSCALE)
    d[k]["rings"] = [_snap_one(gray, r) for r in d[k]["rings"]]
    d[k]["how"] = d[k].get("how", "") + "; snapped"
    _save(d, state)


def pick(k: str, which, state: Path = STATE) -> None:
    d = _load(state)
    e = d[k]
    e["rings"] = [e["candidates"][j][:3] for j in which]
    e["how"] = f"picked candidates {','.join(map(str, which))}"
    _save(d, state)


def set_ring(k: str, i: int, ring, state: Path = STATE) -> None:
    d = _load(state)
    e = d[k]
    rings = e.setdefault("rings", [])
    while len(rings) <= i:
        rings.append(None)
    rings[i] = [round(float(v), 1) for v in ring]
    e["how"] = (e.get("how", "") + f"; ring {i} set by hand").lstrip("; ")
    _save(d, state)


def from_view(k: str, i: int, cx: float, cy: float, r: float, scale: float, state: Path = STATE) -> None:
    """Ring ``i`` of image ``k`` from a circle read off its plain tile as shown (``cx``, ``cy``, ``r`` in the
    shown tile's pixels, the tile's top-left at 0, 0; ``scale``: image pixels per shown pixel)."""
    d = _load(state)
    x0, y0 = tile_origin(np.array(d[k]["porion"]) + (0, 80))
    set_ring(k, i, (x0 + cx * scale, y0 + cy * scale, r * scale), state)


def nudge(k: str, i: int, delta, state: Path = STATE) -> None:
    d = _load(state)
    ring = [a + b for a, b in zip(d[k]["rings"][i], delta)]
    set_ring(k, i, ring, state)


def machine_porion(rings, gray: np.ndarray) -> np.ndarray:
    """The stated convention: the mean of the rings' tops (each ring's highest point in the image: the top of its
    rim's outer edge, measured from the labelled circle by :func:`sdk.ear_rods.outer_radius`)."""
    from sdk.ear_rods import outer_radius

    blur = cv2.GaussianBlur(gray.astype(np.float32), (0, 0), 1.5)
    return np.mean([(x, y - outer_radius(blur, x, y, r, 25.0)) for x, y, r in rings], axis=0)


def export(out: Path, data: Path, state: Path = STATE) -> None:
    d = _load(state)
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "rings", "ring1_x", "ring1_y", "ring1_r", "ring2_x", "ring2_y", "ring2_r",
                    "machine_porion_x", "machine_porion_y", "how"])
        for k in sorted(d):
            rings = [r for r in d[k].get("rings", []) if r]
            if not rings:
                continue
            mp = machine_porion(rings, cv2.imread(str(data / "images" / f"{k}.jpg"), cv2.IMREAD_GRAYSCALE))
            flat = [v for r in rings[:2] for v in r] + [""] * (6 - 3 * min(2, len(rings)))
            w.writerow([f"{k}.jpg", len(rings), *flat, round(float(mp[0]), 1), round(float(mp[1]), 1),
                        d[k].get("how", "")])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("cmd", choices=["propose", "sheet", "pick", "set", "view", "nudge", "snap", "export"])
    ap.add_argument("args", nargs="*")
    ap.add_argument("--data", type=Path, default=Path("../shared/data/isbi2015"))
    ap.add_argument("--images", default="")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--only-rings", action="store_true")
    ap.add_argument("--grid", action="store_true", help="a 1 mm grid, numbered in full-image pixels every 5 mm")
    ap.add_argument("--plain", action="store_true", help="no circles: the image and the grid, to label by eye")
    ap.add_argument("--side", action="store_true", help="the image alone beside each tile")
    ap.add_argument("--cols", type=int, default=2)
    a = ap.parse_args()
    ids = [s.strip() for s in a.images.split(",") if s.strip()]
    if a.cmd == "propose":
        propose(a.data, ids)
    elif a.cmd == "sheet":
        sheet(a.data, ids, a.out or Path("ring_sheet.png"), a.only_rings, a.cols, grid=a.grid, plain=a.plain,
              side=a.side)
    elif a.cmd == "pick":
        for k, which in zip(a.args[::2], a.args[1::2]):      # pick 001 0,2 002 1 ...
            pick(k, [int(v) for v in which.split(",")])
    elif a.cmd == "snap":
        for k in a.args:
            snap(a.data, k)
    elif a.cmd == "set":
        set_ring(a.args[0], int(a.args[1]), [float(v) for v in a.args[2:5]])
    elif a.cmd == "view":       # view K I CX CY R SCALE: a ring read off the shown tile
        from_view(a.args[0], int(a.args[1]), *[float(v) for v in a.args[2:6]])
    elif a.cmd == "nudge":
        nudge(a.args[0], int(a.args[1]), [float(v) for v in a.args[2:5]])
    else:
        export(a.out or STATE.with_suffix(".csv"), a.data)


if __name__ == "__main__":
    main()
