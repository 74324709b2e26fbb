"""How far the Detector's measurements are from the clinicians': the ISBI 2015 eight, per test split.

    python -m benchmarks.measurement_error --data ../shared/data/isbi2015 [--model FILE] [--out DIR]

For each measurement (SNA, SNB, ANB, FMA = the challenge's FHA, ODI, APDI, FHI, MW) and each of Test1 and Test2:
the mean absolute difference between the value from the Detector's landmarks and the value from the clinicians'
landmarks, and the class success rate (the share of images whose ISBI 2015 class matches), against challenge.csv
(the official ground truth) and against the mean of both annotators; beside them the same two figures between the
senior and the junior annotator (how far two clinicians agree). Writes ``measurements.json`` and
``measurements.md``.
"""
from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Dict, List, Optional

import click
import numpy as np

ISBI8 = ("SNA", "SNB", "ANB", "FMA", "ODI", "APDI", "FHI", "MW")

# The published figure we could find and cite: the challenge winner's paper reports the mean class success over
# the eight measurements on the two test sets as 77% - 79% (C. Lindner and T. F. Cootes, "Fully automatic
# cephalometric evaluation using Random Forest regression-voting", Proc. ISBI 2015 Grand Challenges in Dental
# X-ray Image Analysis, abstract). Per-measurement tables of Wang et al., Med Image Anal 31 (2016) were not
# reachable from this project's machines.
PUBLISHED_MEAN_CLASS_PCT = {"Lindner & Cootes, ISBI 2015 (Test1/Test2 range)": (77.0, 79.0)}


def values(points: np.ndarray, spacing: float) -> Dict[str, Dict]:
    """The ISBI measurements of one (19, 2) label or prediction set."""
    from sdk.measurements import measure
    from sdk.schemas import ISBI19

    m = measure({n: points[i] for i, n in enumerate(ISBI19.names)}, ISBI19, spacing)
    return {k: m[k] for k in ISBI8}


def compare(a: List[Dict], b: List[Dict]) -> Dict[str, Dict]:
    """Per measurement: mean |a - b| of the values and % of images whose ISBI class agrees."""
    out = {}
    for k in ISBI8:
        va = np.array([x[k]["value"] for x in a])
        vb = np.array([x[k]["value"] for x in b])
        same = np.array([x[k]["isbi_class"] == y[k]["isbi_class"] for x, y in zip(a, b)])
        out[k] = {"mad": float(np.abs(va - vb).mean()), "class_agreement_pct": float(same.mean() * 100)}
    return out


def run(data: Path, model: Optional[Path], splits=("test1", "test2")) -> Dict:
    from sdk import Detector
    from sdk.schemas import ISBI19
    from train.datasets import load_folder

    det = Detector(model)
    res = {"model": str(det.model_path), "local_stage": str(det.local.path) if det.local else None, "splits": {}}
    for split in splits:
        labels = {a: load_folder(data, ISBI19, split=[split], annotators=ann)
                  for a, ann in (("challenge", ("challenge",)), ("mean", ("senior", "junior")),
                                 ("senior", ("senior",)), ("junior", ("junior",)))}
        samples = labels["challenge"]
        pred = [values(det(s.image).xy, s.spacing) for s in samples]
        ref = {a: [values(s.points, s.spacing) for s in v] for a, v in labels.items()}
        res["splits"][split] = {"images": len(samples),
                                "detector_vs_challenge": compare(pred, ref["challenge"]),
                                "detector_vs_mean": compare(pred, ref["mean"]),
                                "senior_vs_junior": compare(ref["senior"], ref["junior"])}
    return res


def markdown(res: Dict) -> str:
    units = {"FHI": "", "MW": " mm"}
    lines = [f"Model `{Path(res['model']).name}` with local stage `{Path(res['local_stage']).name if res['local_stage'] else 'none'}`"
             f"; {res['date']}, {res['machine']}. MAD: mean absolute difference of the value (deg unless noted); "
             "class: % of images whose ISBI 2015 class matches.", ""]
    for split, r in res["splits"].items():
        lines += [f"### {split} ({r['images']} images)", "",
                  "| measurement | MAD vs challenge | class vs challenge | MAD vs mean labels | class vs mean labels | "
                  "senior vs junior MAD | senior vs junior class |", "|---|---|---|---|---|---|---|"]
        for k in ISBI8:
            c, m, o = r["detector_vs_challenge"][k], r["detector_vs_mean"][k], r["senior_vs_junior"][k]
            u = units.get(k, "")
            fmt = "{:.3f}" if k == "FHI" else "{:.2f}"
            lines.append(f"| {k} | {fmt.format(c['mad'])}{u} | {c['class_agreement_pct']:.1f}% | "
                         f"{fmt.format(m['mad'])}{u} | {m['class_agreement_pct']:.1f}% | {fmt.format(o['mad'])}{u} | "
                         f"{o['class_agreement_pct']:.1f}% |")
        mean = {key: np.mean([r[key][k]["class_agreement_pct"] for k in ISBI8])
                for key in ("detector_vs_challenge", "detector_vs_mean", "senior_vs_junior")}
        lines.append(f"| **mean of the eight** | | {mean['detector_vs_challenge']:.1f}% | | "
                     f"{mean['detector_vs_mean']:.1f}% | | {mean['senior_vs_junior']:.1f}% |")
        lines.append("")
    for who, (lo, hi) in PUBLISHED_MEAN_CLASS_PCT.items():
        lines.append(f"Published, mean class success of the eight: {who}: {lo:.0f}% - {hi:.0f}%.")
    return "\n".join(lines)


@click.command()
@click.option("--data", "data_dir", type=click.Path(path_type=Path, exists=True), required=True)
@click.option("--model", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=None)
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("results/measurements"),
              show_default=True)
def main(data_dir, model, out_dir):
    """Measurement error and ISBI class success rate of the Detector on Test1/Test2."""
    res = run(data_dir, model)
    res["date"], res["machine"] = time.strftime("%Y-%m-%d"), platform.processor() or platform.machine()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "measurements.json").write_text(json.dumps(res, indent=2))
    (out_dir / "measurements.md").write_text(markdown(res))
    click.echo(markdown(res))


if __name__ == "__main__":
    main()
