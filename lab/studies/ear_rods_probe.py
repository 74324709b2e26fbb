"""Probe of lab/studies/ear_rods.py (machine porion, the top of the ear-rod ring) on all 400 ISBI images: how many
get a ring, the offset from the clinicians' anatomical porion, and a montage (/tmp/mp.png) of 24 crops (blue: the
labels' porion; green: the rings found; red: machine porion). Arguments: image ids to draw instead.

    python -m lab.studies.ear_rods_probe [ID ...]
"""
import sys
from pathlib import Path

import cv2
import numpy as np

from lab.studies.ear_rods import machine_porion
from sdk import Detector
from sdk.image_io import load_image
from sdk.schemas import ISBI19
from train.datasets import load_folder

det = Detector(backend="onnxruntime")
samples = load_folder(Path("../shared/data/isbi2015"), ISBI19, split=None, annotators=("senior", "junior"))
ids = {int(a) for a in sys.argv[1:]}
tiles, off, rings = [], [], []
for i, s in enumerate(samples):
    if ids and int(s.id) not in ids:
        continue
    g = load_image(s.image).gray
    r = det(g)
    m = machine_porion(g, r.xy, r.names, s.spacing)
    k = r.names.index("porion")
    if m is not None:
        off.append((m.xy - s.points[k]) * s.spacing)
        rings.append(len(m.rings))
    if len(tiles) < 24 and (ids or i % 17 == 0):
        x, y = s.points[k].astype(int)
        ox, oy = max(0, x - 350), max(0, y - 300)
        c = cv2.cvtColor(g[oy:y + 400, ox:x + 350].copy(), cv2.COLOR_GRAY2BGR)
        if m is not None:
            for rg in m.rings:
                cv2.circle(c, (int(rg.x - ox), int(rg.y - oy)), int(rg.r), (0, 255, 0), 2)
            cv2.circle(c, (int(m.xy[0] - ox), int(m.xy[1] - oy)), 8, (0, 0, 255), -1)
        cv2.circle(c, (x - ox, y - oy), 8, (255, 0, 0), -1)
        c = cv2.resize(c, (200, 200))
        cv2.putText(c, s.id, (5, 20), 0, 0.6, (0, 255, 255), 2)
        tiles.append(c)
off = np.array(off)
med = np.median(off, 0)
print("rings found on", len(off), "of", len(ids) if ids else len(samples), "images; rings per image",
      np.bincount(rings))
print("machine - anatomical porion (mm): median", med.round(2), "MAD", np.median(np.abs(off - med), 0).round(2))
while len(tiles) % 6:
    tiles.append(np.zeros_like(tiles[0]))
cv2.imwrite("/tmp/mp.png", np.vstack([np.hstack(tiles[i:i + 6]) for i in range(0, len(tiles), 6)]))
