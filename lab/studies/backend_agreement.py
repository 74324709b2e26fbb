"""Do onnxruntime and OpenVINO give the same points? The same INT8 graph, run by two runtimes' own kernels, over
Test1 and Test2 (a report, nothing is chosen on it).

    python -m lab.studies.backend_agreement [--data ../shared/data/isbi2015] [--out lab/results/consistency/backends.txt]
"""
import csv
from pathlib import Path

import click
import numpy as np

from lab.studies import report


@click.command()
@click.option("--data", "data_dir", type=click.Path(exists=True, path_type=Path),
              default=Path("../shared/data/isbi2015"))
@click.option("--out", type=click.Path(path_type=Path), default=Path("lab/results/consistency/backends.txt"))
def main(data_dir, out):
    from sdk import Detector
    from sdk.schemas import ISBI19

    split = {r["image"]: r["split"] for r in csv.DictReader(open(data_dir / "splits.csv"))}
    labels = [{r[0]: np.array(r[1:], float).reshape(-1, 2) for r in list(csv.reader(open(data_dir / f"{w}.csv")))[1:]}
              for w in ("senior", "junior")]
    ids = [k for k, v in split.items() if v in ("test1", "test2")]
    dets = {b: Detector(backend=b, threads=2) for b in ("onnxruntime", "openvino")}
    apart, err, one_flags = [], {b: [] for b in dets}, 0
    for i in ids:
        gt = (labels[0][i] + labels[1][i]) / 2
        r = {b: d(str(data_dir / "images" / i)) for b, d in dets.items()}
        apart.append(np.linalg.norm(r["onnxruntime"].xy - r["openvino"].xy, axis=1) * 0.1)
        for b in dets:
            err[b].append(np.linalg.norm(r[b].xy - gt, axis=1) * 0.1)
        one_flags += sum(bool(a) != bool(c) for a, c in zip(r["onnxruntime"].point_flags, r["openvino"].point_flags))
    d = np.array(apart)
    lines = [f"Test1 + Test2: {len(ids)} images, {d.size} points; distance between the backends' points (mm): median "
             f"{np.median(d):.3f}, mean {d.mean():.3f}; over 0.5 mm {(d > .5).sum()}, 1 mm {(d > 1).sum()}, 2 mm "
             f"{(d > 2).sum()}, 4 mm {(d > 4).sum()}; points flagged by one backend only: {one_flags}", ""]
    for b in dets:
        e = np.array(err[b])
        lines.append(f"{b}: MRE {e.mean():.4f} mm, SDR@2mm {(e <= 2).mean() * 100:.2f}%, > 4 mm {(e > 4).sum()}, "
                     f"> 10 mm {(e > 10).sum()}")
    lines += ["", "points over 2 mm apart: image, landmark, apart, error with onnxruntime, with OpenVINO (mm)"]
    lines += [f"  {ids[a]} {ISBI19.names[k]} {d[a, k]:.1f} {err['onnxruntime'][a][k]:.1f} {err['openvino'][a][k]:.1f}"
              for a, k in np.argwhere(d > 2)]
    report(lines, out)


if __name__ == "__main__":
    main()
