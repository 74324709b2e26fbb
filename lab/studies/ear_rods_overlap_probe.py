"""Where the ear rods' search could run beside the networks (issue 45): on the Detector's helper thread (as shipped),
or in a worker process that holds no share of this process's GIL; and how busy the second core already is.

    python -m lab.studies.ear_rods_overlap_probe --data ../shared/data/isbi2015 [--backend openvino] [--rounds 5]

Three Detectors read the same 16 Test1 images in interleaved rounds: ear rods off, on (the helper thread), and on
with the search sent to a worker process (a crop 40 mm around the first stage's porion over a pipe; the same
:func:`sdk.ear_rods.find_rings`, so the same rings). Then each thread's CPU time over 64 calls of the Detector
without ear rods (Linux ``/proc``): what the inference runtime's own threads leave of the second core.
A probe: the worker process is not a product path (an embedded interpreter has no Python to start it with).
"""
from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REACH_MM = 40.0


def _worker():
    """The worker's loop: a header (JSON) and a grey crop in, the rings (JSON) out, until the pipe closes."""
    from sdk.ear_rods import find_rings

    inp, out = sys.stdin.buffer, sys.stdout.buffer
    while True:
        head = inp.read(4)
        if len(head) < 4:
            return
        meta = json.loads(inp.read(struct.unpack("<I", head)[0]))
        h, w = meta["shape"]
        found = find_rings(np.frombuffer(inp.read(h * w), np.uint8).reshape(h, w), meta["porion"], meta["mm"])
        res = None if found is None else {"rings": [[g.x, g.y, g.r, g.score, g.outer] for g in found.rings],
                                          "mp": [float(v) for v in found.machine_porion], "score": found.score}
        body = json.dumps(res).encode()
        out.write(struct.pack("<I", len(body)) + body)
        out.flush()


def _process_detector(backend: str, proc: subprocess.Popen):
    """A Detector whose ring search runs in ``proc``."""
    from sdk import Detector
    from sdk.detector import decode_to_image, to_gray
    from sdk.ear_rods import EarRods, Ring

    class Pending:
        def __init__(self, offset):
            self.offset = offset

        def result(self):
            body = json.loads(proc.stdout.read(struct.unpack("<I", proc.stdout.read(4))[0]))
            if body is None:
                return None
            o = self.offset
            return EarRods(tuple(Ring(x + o[0], y + o[1], r, s, u) for x, y, r, s, u in body["rings"]),
                           np.array(body["mp"]) + o, body["score"])

    class Remote(Detector):
        def _seek_ear_rods(self, heatmaps, lb, loaded, spacing):
            m = self.meta
            xy = decode_to_image(heatmaps[self._rod_points], lb, m.heatmap_stride, m.sigma, m.decoder)[0]
            p, mm, g = to_gray(xy[0], loaded.reduction), self._rods_scale(loaded, spacing, xy), loaded.gray
            r = REACH_MM / mm
            x0, y0 = max(0, int(p[0] - r)), max(0, int(p[1] - r))
            x1, y1 = min(g.shape[1], int(p[0] + r) + 1), min(g.shape[0], int(p[1] + r) + 1)
            crop = np.ascontiguousarray(g[y0:y1, x0:x1])
            meta = json.dumps({"shape": crop.shape, "porion": [p[0] - x0, p[1] - y0], "mm": mm}).encode()
            proc.stdin.write(struct.pack("<I", len(meta)) + meta + crop.tobytes())
            proc.stdin.flush()
            return Pending(np.array([x0, y0], np.float64)), xy[0]

        def _found_ear_rods(self, reading, loaded, seek):
            return super()._found_ear_rods(reading, loaded, (seek[0].result(), seek[1]))

    return Remote(backend=backend)


def _thread_cpu() -> dict:
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for t in os.listdir("/proc/self/task"):
        stat = open(f"/proc/self/task/{t}/stat").read().rsplit(")", 1)[1].split()
        out[t] = (int(stat[11]) + int(stat[12])) / tick
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data/isbi2015"))
    ap.add_argument("--backend", default="openvino")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        return _worker()
    from benchmarks.cpu_bench import cpu_name
    from sdk import Detector

    files = sorted((a.data / "images").glob("*.jpg"))[150:166]
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, "-m", "lab.studies.ear_rods_overlap_probe", "--worker"], cwd=root,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    dets = {"off": Detector(backend=a.backend, ear_rods=False), "thread": Detector(backend=a.backend),
            "process": _process_detector(a.backend, proc)}
    for f in files[:2]:
        for d in dets.values():
            d(f)
    # the crop's own coordinates round differently in the last digits
    same = all(np.allclose(dets["process"](f).ear_rods.machine_porion, dets["thread"](f).ear_rods.machine_porion,
                           rtol=0, atol=1e-6) for f in files[:4])
    names, times = list(dets), {k: [] for k in dets}
    for r in range(a.rounds):
        for i, f in enumerate(files):
            for k in names[(r + i) % 3:] + names[:(r + i) % 3]:
                t = time.perf_counter()
                dets[k](f)
                times[k].append((time.perf_counter() - t) * 1000)
    proc.stdin.close()
    proc.wait()
    print(f"{cpu_name()['cpu']}, {a.backend}; {len(files)} Test1 images x {a.rounds} rounds, interleaved; "
          f"the process's machine porion equals the thread's (1e-6 px): {same}")
    off = np.median(times["off"])
    for k, v in times.items():
        print(f"  {k:8s} p50 {np.median(v):5.1f} ms  p90 {np.percentile(v, 90):5.1f}  added {np.median(v) - off:+.1f}")
    det = dets["off"]
    before, t = _thread_cpu(), time.perf_counter()
    for _ in range(4):
        for f in files:
            det(f)
    wall, after = time.perf_counter() - t, _thread_cpu()
    busy = sorted((after[k] - before.get(k, 0.0) for k in after), reverse=True)
    print("  CPU per thread over 64 calls without ear rods, as a share of the wall time: "
          + ", ".join(f"{b / wall:.0%}" for b in busy if b > 0.01 * wall))


if __name__ == "__main__":
    main()
