"""Would a second reading, the image turned upright, pay only for heads tilted beyond a threshold? (issue 50)

    python -m lab.studies.upright_threshold --data ../shared/data/isbi2015 [--backend onnxruntime]

Each ISBI Test1/Test2 image, and the tilt benchmark's copies (10 Test1 images turned by -10 ... 10 deg), is read as
given and again turned upright by :func:`sdk.local_stage.head_turn`. Offline, per threshold: the upright reading
alone, or the mean of both (``sdk.compare.steady_reading``'s), where the head's turn reaches the threshold. Reports
how many of the images the threshold sends to a second reading (the Detector's cost), Test1/Test2 MRE against the
mean of both clinicians (reporting only: nothing is chosen on them), and the tilt benchmark's spread. Figures in
lab/RESULTS.md (2026-12-07, fourth session).
"""
from __future__ import annotations

from pathlib import Path

import click
import cv2
import numpy as np

ANGLES = (-10, -8, -5, 5, 8, 10)
RUNS = (("as read", 1e9), ("up", 0.0), ("up", 3.0), ("mean", 0.0), ("mean", 1.0), ("mean", 3.0))


def _both(det, gray):
    """(the reading as given, the reading turned upright mapped back, the turn) of ``gray``."""
    from sdk.compare import turned
    from sdk.local_stage import head_turn

    r1 = det(gray)
    t = head_turn(r1.xy, r1._schema())
    img, m = turned(gray, -t)
    back = (det(img).xy - m[:, 2]) @ np.linalg.inv(m[:, :2]).T
    return r1.xy, back, t


def _pick(first, up, turn, how, threshold):
    if abs(turn) < threshold or how == "as read":
        return first
    return up if how == "up" else (first + up) / 2


def _angles(xy, names):
    s, n, a, b = (xy[names.index(k)] for k in ("sella", "nasion", "subspinale", "supramentale"))

    def at_n(p):
        u, v = s - n, p - n
        return np.degrees(np.arctan2(u[0] * v[1] - u[1] * v[0], u @ v))
    return np.array([at_n(a), at_n(b), at_n(a) - at_n(b)])


@click.command()
@click.option("--data", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True)
@click.option("--backend", default="onnxruntime", show_default=True)
def main(data, backend):
    from sdk import Detector
    from sdk.compare import turned
    from sdk.schemas import ISBI19
    from train.datasets import load_folder

    det, names = Detector(backend=backend), list(ISBI19.names)
    test = [(_both(det, s.image if hasattr(s.image, "shape") else cv2.imread(str(s.image), cv2.IMREAD_GRAYSCALE)),
             s.points) for split in ("test1", "test2")
            for s in load_folder(data, ISBI19, split=[split], annotators=("senior", "junior"))]
    tilt = []
    for f in sorted((data / "images").glob("*.jpg"))[150:160]:
        gray = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE)
        copies = []
        for deg in ANGLES:
            img, m = turned(gray, deg)
            a, b, t = _both(det, img)
            inv = np.linalg.inv(m[:, :2]).T
            copies.append(((a - m[:, 2]) @ inv, (b - m[:, 2]) @ inv, t))
        tilt.append((_both(det, gray), copies))
    turns = np.abs([t for (_, _, t), _ in test])
    print(f"heads' own turn: median {np.median(turns):.2f} deg; beyond 1/2/3/4 deg: "
          + " / ".join(f"{np.mean(turns >= x):.0%}" for x in (1, 2, 3, 4)))
    print("| reading | threshold | Test1 MRE | Test2 MRE | tilt p50 / p95 mm | SNA / SNB / ANB p95 deg | read twice |")
    print("|---|---|---|---|---|---|---|")
    for how, thr in RUNS:
        err = np.array([np.linalg.norm(_pick(*r, how, thr) - gt, axis=1).mean() * 0.1 for r, gt in test])
        dist, change = [], []
        for base, copies in tilt:
            b = _pick(*base, how, thr)
            for c in copies:
                x = _pick(*c, how, thr)
                dist.append(np.linalg.norm(x - b, axis=1) * 0.1)
                change.append(np.abs(_angles(x, names) - _angles(b, names)))
        d, ch = np.concatenate(dist), np.percentile(change, 95, axis=0)
        print(f"| {how} | {'' if thr > 100 else thr} | {err[:150].mean():.4f} | {err[150:].mean():.4f} | "
              f"{np.median(d):.3f} / {np.percentile(d, 95):.3f} | {ch[0]:.2f} / {ch[1]:.2f} / {ch[2]:.2f} | "
              f"{np.mean(turns >= thr):.0%} |")


if __name__ == "__main__":
    main()
