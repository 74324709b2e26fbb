"""Could the ear rods' search run as an ONNX graph, holding no GIL while it runs (issue 45)? A probe of its dense
part: the coarse crop's ridge filter and circular vote (``sdk.ear_rods._ridges`` and ``_hough``) as one graph,
checked against numpy on ISBI images (around the clinicians' porion, the images with ring labels) and timed on one
thread beside numpy's.

    python -m lab.studies.ear_rods_graph_probe --data ../shared/data/isbi2015 [--images 16]

onnxruntime is already the SDK's dependency and releases the GIL during a run. Figures in lab/RESULTS.md
(2026-12-07, fourth session).
"""
from __future__ import annotations

import csv
import time
from pathlib import Path

import click
import cv2
import numpy as np
from onnx import TensorProto as TP
from onnx import helper as oh
from onnx import numpy_helper as nh

from sdk import ear_rods as E


class G:
    """A graph under construction: named nodes and constants."""

    def __init__(self):
        self.nodes, self.inits, self.n = [], [], 0
    def name(self, p="t"):
        self.n += 1
        return f"{p}{self.n}"
    def const(self, arr, dtype=np.float32):
        nm = self.name("c")
        self.inits.append(nh.from_array(np.asarray(arr, dtype), nm))
        return nm
    def op(self, kind, *ins, **attrs):
        out = self.name(kind.lower())
        self.nodes.append(oh.make_node(kind, list(ins), [out], **attrs))
        return out
    def ops(self, kind, ins, nout, **attrs):
        outs = [self.name(kind.lower()) for _ in range(nout)]
        self.nodes.append(oh.make_node(kind, list(ins), outs, **attrs))
        return outs

def conv_sep(g, x, kx, ky):
    """x (N,1,H,W): separable correlation with reflect-101 borders (OpenCV's default)."""
    px, py = len(kx) // 2, len(ky) // 2
    x = g.op("Pad", x, g.const([0, 0, py, px, 0, 0, py, px], np.int64), mode="reflect")
    x = g.op("Conv", x, g.const(np.asarray(kx, np.float32).reshape(1, 1, 1, -1)))
    return g.op("Conv", x, g.const(np.asarray(ky, np.float32).reshape(1, 1, -1, 1)))

def gauss(g, x, s):
    k = cv2.getGaussianKernel(int(round(s * 8 + 1)) | 1, s).ravel()
    return conv_sep(g, x, k, k)

def build(h, w, step, radii, box):
    g = G()
    img, valid = "img", "valid"
    s = E.NORM_MM / step
    d = g.op("Sub", img, gauss(g, img, s))
    sd = g.op("Sqrt", gauss(g, g.op("Mul", d, d), s))
    n_all = h * w
    flat = g.op("Reshape", sd, g.const([-1], np.int64))
    lo = g.ops("TopK", [flat, g.const([n_all // 2 + 1], np.int64)], 2, largest=0, sorted=1)[0]
    med = g.op("Gather", lo, g.const(n_all // 2, np.int64))
    floor = g.op("Max", g.op("Mul", med, g.const(0.5)), g.const(E.NOISE_FLOOR))
    nrm = g.op("Div", d, g.op("Max", sd, floor))
    best = cos2 = sin2 = None
    for width in E.RIDGE_MM:
        sig = width / step
        gg = gauss(g, nrm, sig)
        dxx = conv_sep(g, gg, [1, -2, 1], [1, 2, 1])
        dyy = conv_sep(g, gg, [1, 2, 1], [1, -2, 1])
        dxy = conv_sep(g, gg, [-1, 0, 1], [-1, 0, 1])
        gx = conv_sep(g, gg, [-1 / 8, 0, 1 / 8], [1, 2, 1])
        gy = conv_sep(g, gg, [1, 2, 1], [-1 / 8, 0, 1 / 8])
        tr = g.op("Add", dxx, dyy)
        dd = g.op("Sub", dxx, dyy)
        two = g.op("Mul", dxy, g.const(2.0))
        root = g.op("Sqrt", g.op("Add", g.op("Mul", dd, dd), g.op("Mul", two, two)))
        lmin = g.op("Mul", g.op("Sub", tr, root), g.const(0.5))
        lmax = g.op("Mul", g.op("Add", tr, root), g.const(0.5))
        grad = g.op("Sqrt", g.op("Add", g.op("Mul", gx, gx), g.op("Mul", gy, gy)))
        r = g.op("Sub", g.op("Mul", g.op("Sub", g.op("Mul", lmin, g.const(-0.25)), g.op("Mul", g.op("Abs", lmax), g.const(0.25))), g.const(sig ** 2)),
                 g.op("Mul", grad, g.const(E.EDGE_WEIGHT * sig)))
        r = g.op("Max", r, g.const(0.0))
        pos = g.op("Greater", root, g.const(0.0))
        c2 = g.op("Where", pos, g.op("Div", dd, g.op("Max", root, g.const(1e-30))), g.const(1.0))
        s2 = g.op("Where", pos, g.op("Div", two, g.op("Max", root, g.const(1e-30))), g.const(0.0))
        if best is None:
            best, cos2, sin2 = r, c2, s2
        else:
            take = g.op("Greater", r, best)
            best, cos2, sin2 = g.op("Where", take, r, best), g.op("Where", take, c2, cos2), g.op("Where", take, s2, sin2)
    # n = (-sin a, cos a): nx^2 = (1 - cos2a)/2, nx ny = -sin2a/2, ny^2 = (1 + cos2a)/2
    best = g.op("Mul", best, valid)
    axx = g.op("Mul", best, g.op("Mul", g.op("Sub", g.const(1.0), cos2), g.const(0.5)))
    axy = g.op("Mul", best, g.op("Mul", sin2, g.const(-0.5)))
    ayy = g.op("Mul", best, g.op("Mul", g.op("Add", g.const(1.0), cos2), g.const(0.5)))
    tensor = g.op("Concat", axx, axy, ayy, axis=1)
    # the vote
    strength = g.op("Reshape", g.op("Add", axx, ayy), g.const([-1], np.int64))
    p = 0.9 * (n_all - 1)
    low = int(np.floor(p))
    frac = p - low
    kk = n_all - low
    vals, idx = g.ops("TopK", [strength, g.const([kk], np.int64)], 2, largest=1, sorted=1)
    v_lo = g.op("Gather", vals, g.const(kk - 1, np.int64))
    v_hi = g.op("Gather", vals, g.const(kk - 2, np.int64))
    thr = g.op("Add", v_lo, g.op("Mul", g.op("Sub", v_hi, v_lo), g.const(frac)))
    wgt = g.op("Where", g.op("Greater", vals, thr), vals, g.const(0.0))
    fxx = g.op("Gather", g.op("Reshape", axx, g.const([-1], np.int64)), idx)
    fxy = g.op("Gather", g.op("Reshape", axy, g.const([-1], np.int64)), idx)
    fyy = g.op("Gather", g.op("Reshape", ayy, g.const([-1], np.int64)), idx)
    den = g.op("Max", vals, g.const(1e-12))
    nx = g.op("Sqrt", g.op("Div", g.op("Max", fxx, g.const(0.0)), den))
    ny = g.op("Mul", g.op("Sign", fxy), g.op("Sqrt", g.op("Div", g.op("Max", fyy, g.const(0.0)), den)))
    idxf = g.op("Cast", idx, to=TP.FLOAT)
    ys = g.op("Floor", g.op("Div", idxf, g.const(float(w))))
    xs = g.op("Sub", idxf, g.op("Mul", ys, g.const(float(w))))
    x0, y0, x1, y1 = (int(v) for v in box)
    bh, bw = y1 - y0, x1 - x0
    rs = np.concatenate([radii, -radii]).astype(np.float32)[:, None]        # (2R, 1): both ways
    cx = g.op("Sub", g.op("Round", g.op("Add", xs, g.op("Mul", g.const(rs), nx))), g.const(float(x0)))
    cy = g.op("Sub", g.op("Round", g.op("Add", ys, g.op("Mul", g.const(rs), ny))), g.const(float(y0)))
    ok = g.op("And", g.op("And", g.op("GreaterOrEqual", cx, g.const(0.0)), g.op("Less", cx, g.const(float(bw)))),
              g.op("And", g.op("GreaterOrEqual", cy, g.const(0.0)), g.op("Less", cy, g.const(float(bh)))))
    R = len(radii)
    ridx = np.concatenate([np.arange(R), np.arange(R)]).astype(np.float32)[:, None] * (bh * bw)
    cell = g.op("Add", g.const(ridx), g.op("Add", g.op("Mul", cy, g.const(float(bw))), cx))
    cell = g.op("Cast", g.op("Where", ok, cell, g.const(float(R * bh * bw))), to=TP.INT64)
    wv = g.op("Where", ok, g.op("Mul", g.op("Unsqueeze", wgt, g.const([0], np.int64)), g.const(np.ones((2 * R, 1), np.float32))), g.const(0.0))
    acc = g.op("ScatterElements", g.const(np.zeros(R * bh * bw + 1, np.float32)), g.op("Reshape", cell, g.const([-1], np.int64)),
               g.op("Reshape", wv, g.const([-1], np.int64)), reduction="add")
    acc = g.op("Slice", acc, g.const([0], np.int64), g.const([R * bh * bw], np.int64))
    acc = g.op("Div", g.op("Reshape", acc, g.const([R, 1, bh, bw], np.int64)), g.const(np.asarray(radii, np.float32).reshape(R, 1, 1, 1)))
    acc = g.op("Reshape", gauss(g, acc, 1.0), g.const([R, bh, bw], np.int64))
    graph = oh.make_graph(g.nodes, "rings", [oh.make_tensor_value_info("img", TP.FLOAT, [1, 1, h, w]),
                                             oh.make_tensor_value_info("valid", TP.FLOAT, [1, 1, h, w])],
                          [oh.make_tensor_value_info(tensor, TP.FLOAT, [1, 3, h, w]), oh.make_tensor_value_info(acc, TP.FLOAT, [R, bh, bw])],
                          initializer=g.inits)
    return oh.make_model(graph, opset_imports=[oh.make_opsetid("", 18)])


def _cases(data: Path, n: int):
    por = {}
    for who in ("senior", "junior"):
        for r in csv.DictReader(open(data / f"{who}.csv")):
            por.setdefault(r["image"], []).append((float(r["porion_x"]), float(r["porion_y"])))
    rows = list(csv.DictReader(open(Path(__file__).parents[1] / "data" / "ear_rods" / "isbi_rings.csv")))[:n]
    for r in rows:
        yield cv2.imread(str(data / "images" / r["image"]), cv2.IMREAD_GRAYSCALE), np.mean(por[r["image"]], axis=0)


@click.command()
@click.option("--data", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True)
@click.option("--images", "n", type=int, default=16, show_default=True)
def main(data, n):
    import onnxruntime as ort

    crops = [E._Crop(g, p, 0.1, E.COARSE_MM, E.BOX_MM) for g, p in _cases(data, n)]
    h, w = crops[0].img.shape
    radii = np.arange(E.RADIUS_MM[0], E.RADIUS_MM[1] + 1e-6, 0.5) / E.COARSE_MM
    x0, y0, x1, y1 = ((np.array(E.CENTRE_MM) - np.array(E.BOX_MM[:2] * 2)) / E.COARSE_MM).round().astype(int)
    m = E._VOTE_MARGIN
    box = (max(0, x0 - m), max(0, y0 - m), min(w, x1 + 1 + m), min(h, y1 + 1 + m))
    model = build(h, w, E.COARSE_MM, radii, box).SerializeToString()
    for level in ("basic", "all"):
        so = ort.SessionOptions()
        so.intra_op_num_threads = so.inter_op_num_threads = 1
        so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_BASIC if level == "basic"
                                       else ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
        sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
        t_np, t_ort, err_t, err_v = [], [], 0.0, 0.0
        for r in range(4):
            for c in crops:
                feed = {"img": c.img[None, None].astype(np.float32), "valid": c.valid[None, None].astype(np.float32)}
                t = time.perf_counter()
                a = E._ridges(c.img, E.COARSE_MM) * c.valid
                acc = E._hough(a, radii, box)
                t_np.append(time.perf_counter() - t)
                t = time.perf_counter()
                ten, votes = sess.run(None, feed)
                t_ort.append(time.perf_counter() - t)
                err_t = max(err_t, float(np.abs(ten[0] - a).max() / max(a.max(), 1e-9)))
                err_v = max(err_v, float(np.abs(votes - acc).max() / max(acc.max(), 1e-9)))
        print(f"{level}: crop {h}x{w}; ridge tensor max rel. diff {err_t:.1e}, votes {err_v:.1e}; "
              f"numpy {np.median(t_np) * 1e3:.2f} ms, onnxruntime 1 thread {np.median(t_ort) * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
