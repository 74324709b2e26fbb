"""Where the repair re-reads an implausible point (issue 33: "the local stage re-centred on that position, or the
best first-stage heatmap peak within the spread; choose by validation").

    python -m lab.studies.repair_source [--out lab/results/repair/repair_source.txt]

Sources, each kept only when the configuration then passes the shape check at the point and the local stage's
peak there is at least sdk.repair.MIN_PEAK (the shipped acceptance):
  local     the local stage on a patch centred where the other points put the landmark, its prior widened to
            the conditional spread (shipped);
  heatmap   the first stage's heatmap maximum inside the conditional 99% ellipse, then the local stage from there
            with its ordinary prior.
Readings: the 30-image validation carve x every variant (but the mirrored one, which the Detector turns round
first), nothing from Test. Three sets of implausible points:
  real      what the shape check calls implausible on those readings (the decisive set: the only real failures);
  moved     one point moved 8-30 mm before the local stage (lab/studies/repair_sim.py): the first stage's heatmap
            still peaks at the truth, which favours the heatmap source;
  rival     a look-alike: a second peak 1.25x the first stage's own, 8-30 mm away, added to one landmark's heatmap,
            so the first stage reads it and its true peak is left as the runner-up (the failure the issue names).
"""
from pathlib import Path

import click
import numpy as np

from lab.studies import report

CHI2_99 = 9.21      # 99% of a 2-D Gaussian inside this squared Mahalanobis distance


def heatmap_candidates(hm, lb, stride, pos, cov, idx):
    """(n, 2) original pixels of each landmark's first-stage heatmap maximum within the 99% ellipse of its
    conditional position ``pos`` (n, 2) and covariance ``cov`` (n, 2, 2); NaN where the ellipse holds no cell."""
    from sdk.decode import heatmap_to_input

    h, w = hm.shape[-2:]
    u, v = np.meshgrid(np.arange(w), np.arange(h))
    cells = lb.to_image(heatmap_to_input(np.stack([u, v], -1).reshape(-1, 2).astype(np.float64), stride))
    out = np.full((len(idx), 2), np.nan)
    for j, i in enumerate(idx):
        d = cells - pos[j]
        m2 = np.einsum("ni,ij,nj->n", d, np.linalg.inv(cov[j]), d)
        inside = m2 <= CHI2_99
        if inside.any():
            vals = np.where(inside, hm[i].reshape(-1), -np.inf)
            out[j] = cells[int(vals.argmax())]
    return out


@click.command()
@click.option("--data", "data_dir", type=click.Path(exists=True, path_type=Path),
              default=Path("../shared/data/isbi2015"))
@click.option("--out", type=click.Path(path_type=Path), default=Path("lab/results/repair/repair_source.txt"))
def main(data_dir, out):
    from sdk import Detector
    from sdk.decode import decode_to_image, input_to_heatmap
    from sdk.quality import COND_Z, IMPLAUSIBLE, assess, shape_model
    from sdk.repair import MIN_PEAK, ReadingFrame, repair_points
    from sdk.schemas import ISBI19
    from train.data.variants import CROSS_SITE, VARIANTS, variant_readings
    from train.datasets import load_train_val

    rng = np.random.default_rng(0)
    _, val = load_train_val(data_dir, ISBI19, "auto", ["train"], ("senior", "junior"), 30, 0)
    variants = [v for v in dict.fromkeys(list(VARIANTS) + list(CROSS_SITE)) if not v.startswith("facing left")]
    det = Detector(backend="onnxruntime", threads=2, repair=False)
    m, model = det.meta, shape_model(ISBI19.id, ISBI19.names)
    stride = m.heatmap_stride
    rows = []   # (set, error before mm, error after local mm, after heatmap mm, local kept, heatmap kept)
    for s, v, img, gt, inside, px_mm in variant_readings(val, variants):
        x, lb, loaded = det.preprocess(img)
        hm0 = det.run_network(x[None])[0]
        frame = ReadingFrame(loaded.gray, lb, loaded.reduction, np.zeros(2))
        for kind in ("real", "moved", "rival"):
            hm = hm0.copy()
            target = np.array([], int)
            if kind != "real":
                target = rng.choice(np.flatnonzero(inside), size=1, replace=False)
                ang, dist = rng.uniform(0, 2 * np.pi), rng.uniform(8.0, 30.0) / px_mm
            if kind == "rival":
                i = int(target[0])
                fake = gt[i] + np.array([np.cos(ang), np.sin(ang)]) * dist
                fu, fv = input_to_heatmap(lb.to_input(fake), stride)
                hh, ww = hm.shape[-2:]
                if not (0 <= fu < ww and 0 <= fv < hh):
                    continue
                yy, xx = np.mgrid[0:hh, 0:ww]
                hm[i] += 1.25 * hm[i].max() * np.exp(-((xx - fu) ** 2 + (yy - fv) ** 2) / (2 * m.sigma ** 2))
            xy, scores = decode_to_image(hm, lb, stride, m.sigma, m.decoder)
            if kind == "moved":
                xy[target] += np.array([np.cos(ang), np.sin(ang)]) * dist
                xy[target] = np.clip(xy[target], 0, np.array(img.shape[1::-1]) - 1)
            local, _ = det.local.locate_with_peaks(loaded.gray, lb, xy, loaded.reduction)
            a = assess(local, scores, img.shape[:2], m.schema.id, m.schema.names)
            bad = np.array([r == IMPLAUSIBLE for r in a.reasons]) & inside
            if not bad.any() or "implausible_shape" in a.flags:
                continue
            err0 = np.linalg.norm(local - gt, axis=1) * px_mm
            rep = repair_points(local, bad, det.local, frame, model, COND_Z)
            err_l = np.linalg.norm(rep.xy - gt, axis=1) * px_mm
            # the heatmap source, one round, the same acceptance
            idx = np.flatnonzero(bad)
            pos, cov = model.conditional_positions(local, idx)
            cand = heatmap_candidates(hm, lb, stride, pos, cov, idx)
            got = ~np.isnan(cand[:, 0])
            after = local.copy()
            kept = np.zeros(len(local), bool)
            if got.any():
                new, pk = det.local.locate_at(frame.gray, lb, cand[got], idx[got], frame.reduction)
                trial = local.copy()
                trial[idx[got]] = new
                ok = (model.conditional_z(trial)[idx[got]] <= COND_Z) & (pk >= MIN_PEAK)
                after[idx[got][ok]] = new[ok]
                kept[idx[got][ok]] = True
            err_h = np.linalg.norm(after - gt, axis=1) * px_mm
            which = idx if kind == "real" else np.intersect1d(idx, target)
            rows += [(kind, err0[i], err_l[i], err_h[i], bool(rep.repaired[i]), bool(kept[i])) for i in which]
    lines = [f"{len(val)} validation images x {len(variants)} variants; implausible points re-read by each source "
             f"(acceptance: shape check passes there, local peak >= {MIN_PEAK})", "",
             "| set | implausible points | > 4 mm before | source | repaired | > 4 mm back within 4 mm | "
             "made worse by > 1 mm | > 4 mm after | > 10 mm after |",
             "|---|---|---|---|---|---|---|---|---|"]
    for kind in ("real", "moved", "rival"):
        r = [t for t in rows if t[0] == kind]
        if not r:
            continue
        e0 = np.array([t[1] for t in r])
        for name, col, kcol in (("local (shipped)", 2, 4), ("heatmap", 3, 5)):
            e1 = np.array([t[col] for t in r])
            k = np.array([t[kcol] for t in r])
            lines.append(f"| {kind} | {len(r)} | {int((e0 > 4).sum())} | {name} | {int(k.sum())} | "
                         f"{int(((e0 > 4) & (e1 <= 4)).sum())} | {int((e1 > e0 + 1).sum())} | {int((e1 > 4).sum())} | "
                         f"{int((e1 > 10).sum())} |")
    lines += ["", "real implausible points: error before, after local, after heatmap (mm); repaired by local, heatmap"]
    lines += [f"  {t[1]:6.2f} {t[2]:6.2f} {t[3]:6.2f}  {int(t[4])} {int(t[5])}" for t in rows if t[0] == "real"]
    report(lines, out)


if __name__ == "__main__":
    main()
