"""Training the local stage (:mod:`sdk.local_stage`, :class:`train.local_model.PatchNet`) with the first stage's
:class:`train.trainer.Trainer`: :class:`LocalTrainer` overrides its task methods only (data, model, loss,
validation, checkpoint contents), so both stages share the loop, the schedule, checkpoints, resume and fine-tuning.

Training patches are centred on the true point plus a random displacement that imitates the first stage's errors
(mostly Gaussian, a share spread evenly over the patch), rotated, scaled and intensity-jittered. Validation uses
the first stage's real guesses on the held-out images, so the number it prints is what the two stages give
together. Checkpoints are written atomically every epoch; a rerun with the same ``--out`` resumes.
"""
from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from sdk.decode import gaussian_heatmaps, input_to_heatmap
from sdk.image_io import load_image
from sdk.local_stage import (
    FineImage,
    anatomy,
    apply_matrix,
    cut_patches,
    fine_image,
    head_size,
    head_turn,
    head_zoom,
    local_inputs,
    local_points,
    patch_matrix,
)
from sdk.preprocess import letterbox_geometry, normalize, pad_pixel
from sdk.schemas import Schema

from .checkpoint import read_checkpoint
from .config import LocalConfig
from .data.augment import AugmentConfig, random_intensity, with_processing
from .data.readers import Sample
from .local_model import PatchNet, pick_channel
from .losses import combined_loss, pair_loss
from .trainer import Trainer

log = logging.getLogger("cephalo.local_stage")


@dataclass
class FineSample:
    id: str
    fine: FineImage
    points: np.ndarray     # (K, 2) fine pixels
    truth: np.ndarray      # (K, 2) original pixels
    spacing: float


def load_fine(samples: Sequence[Sample], cfg: LocalConfig, schema: Optional[Schema] = None) -> List[FineSample]:
    """Decode each image once and keep it at the fine scale (uint8, ~1 MB for an ISBI image): the canvas's, or with
    ``cfg.head_size`` the head's (zoomed by its labelled points as the Detector zooms by the first stage's; the
    ``schema``'s anatomical ones)."""
    out = []
    for s in samples:
        gray = load_image(s.image).gray
        lb = letterbox_geometry(gray.shape[:2], (cfg.input_size, cfg.input_size))
        f = fine_image(gray, lb, cfg.factor * head_zoom(cfg.head_size, _anatomical(s.points, schema), lb))
        out.append(FineSample(s.id, f, f.to_fine(s.points), np.asarray(s.points, dtype=np.float64), s.spacing))
    return out


class PatchDataset(torch.utils.data.Dataset):
    """Item ``i`` of epoch ``e``: the ``i``-th labelled (image, landmark) pair (image ``i // K``, landmark ``i % K``
    when every point is labelled), augmentation seeded by (seed, e, i)."""

    def __init__(self, data: List[FineSample], cfg: LocalConfig, k: int, augment: bool = True):
        self.data, self.cfg, self.k, self.augment, self.epoch = data, cfg, k, augment, 0
        # the unsharp mask's radius in patch pixels keeps its size in mm; CLAHE on a ~20 mm patch: one tile
        self.aug = with_processing(AugmentConfig(), cfg.aug_processing_p, cfg.aug_gamma_max,
                                   px_scale=cfg.factor * cfg.input_size / 384, clahe_tiles=1)
        self.hm = cfg.patch // cfg.stride
        # the (image, landmark) pairs the labels give: a blank cell is no patch
        self.pairs = [(j, lm) for j, d in enumerate(data) for lm in range(k) if np.isfinite(d.points[lm]).all()]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int):
        # indices >= len come from the Trainer's EpochSampler and carry their epoch (train.data.dataset)
        n = len(self)
        epoch, i = (i // n - 1, i % n) if i >= n else (self.epoch, i)
        cfg = self.cfg
        j, lm = self.pairs[i]
        d = self.data[j]
        rng = np.random.default_rng([cfg.seed, epoch, i])
        true = d.points[lm]
        in_px = cfg.factor  # fine pixels per first-stage input pixel
        if rng.random() < cfg.shift_uniform_p:
            shift = rng.uniform(-cfg.max_shift, cfg.max_shift, size=2)
        else:
            shift = np.clip(rng.normal(0, cfg.shift_sd * in_px, size=2), -cfg.max_shift, cfg.max_shift)
        angle = rng.uniform(-cfg.rotate_deg, cfg.rotate_deg) if self.augment else 0.0
        scale = rng.uniform(*cfg.scale) if self.augment else 1.0
        twin = copy.deepcopy(rng) if cfg.pair_shift > 0 and self.augment else None
        x, target, pt, m = self._patch(d, true, shift, angle, scale, rng)
        item = (torch.from_numpy(x), torch.from_numpy(target), lm, torch.from_numpy(pt.astype(np.float32)))
        if twin is None:
            return item
        # the pair: the same patch around another centre (as another first-stage point would cut it), the same
        # intensity draws; ``move`` maps the first patch's pixels to the second's
        shift2 = np.clip(shift + rng.uniform(-cfg.pair_shift, cfg.pair_shift, size=2) * in_px,
                         -cfg.max_shift, cfg.max_shift)
        x2, target2, pt2, m2 = self._patch(d, true, shift2, angle, scale, twin)
        move = (np.vstack([m2, (0, 0, 1)]) @ np.linalg.inv(np.vstack([m, (0, 0, 1)])))[:2]
        return item + (torch.from_numpy(x2), torch.from_numpy(target2), torch.from_numpy(pt2.astype(np.float32)),
                       torch.from_numpy(move.astype(np.float32)))

    def _patch(self, d: FineSample, true: np.ndarray, shift: np.ndarray, angle: float, scale: float,
               rng: np.random.Generator):
        """(input, target heatmap, the true point in heatmap px, the fine -> patch matrix) of one patch; ``rng``
        draws its intensity augmentation."""
        cfg = self.cfg
        m = patch_matrix(np.round(true + shift), cfg.patch, angle, scale)
        patch = cut_patches(d.fine.pixels, m[None], cfg.patch, pad_pixel(cfg.pad_value))[0]
        if self.augment:
            patch = random_intensity(patch, rng, self.aug)
        x = normalize(patch, cfg.mean, cfg.std, 1)
        pt = input_to_heatmap(apply_matrix(true, m), cfg.stride)
        target = gaussian_heatmaps(pt[None], (self.hm, self.hm), cfg.sigma)
        return x, target, pt, m


def _image_hw(image) -> tuple:
    """(height, width) of an image file from its header (decoded only when the header does not say)."""
    from sdk.image_io import header_size

    if hasattr(image, "shape"):
        return tuple(image.shape[:2])
    return header_size(Path(image).read_bytes()) or load_image(image).gray.shape[:2]


def _anatomical(points: np.ndarray, schema: Optional[Schema]) -> np.ndarray:
    return points if schema is None else np.asarray(points)[anatomy(schema)]


def training_head_size(samples: Sequence[Sample], input_size: int, schema: Optional[Schema] = None) -> float:
    """The median head size (:func:`sdk.local_stage.head_size`) of ``samples``' labelled points (the ``schema``'s
    anatomical ones), in the input px of a square ``input_size`` first stage: the size a local stage trained on
    them cuts its patches at."""
    sizes = [head_size(_anatomical(s.points, schema))
             * letterbox_geometry(_image_hw(s.image), (input_size, input_size)).scale_x for s in samples]
    sizes = [v for v in sizes if np.isfinite(v)]
    if not sizes:
        raise ValueError("no labelled image gives a head size (three or more points)")
    return float(np.median(sizes))


@torch.no_grad()
def local_stage_points(model: PatchNet, fine: FineImage, first: np.ndarray, cfg: LocalConfig,
                       prior_sd: Optional[float] = None, schema: Optional[Schema] = None) -> np.ndarray:
    """(K, 2) first-stage points (original pixels) -> refined (K, 2): the SDK's cut and read around a torch model
    (``prior_sd``: overrides the config's decode prior; 0 = none). With the ``schema``, the patches are turned into
    the head's frame as the Detector turns them (:func:`sdk.local_stage.head_turn`)."""
    p = cfg.params if prior_sd is None else replace(cfg.params, prior_sd=prior_sd)
    x, mats = local_inputs(fine, first, p, head_turn(first, schema) if schema is not None else 0.0)
    return local_points(model(torch.from_numpy(x)).float().numpy(), mats, fine, p, first)


def evaluate(model: PatchNet, data: List[FineSample], first: Dict[str, np.ndarray], cfg: LocalConfig,
             schema: Optional[Schema] = None) -> Dict:
    """Val MRE (mm) of the first stage alone and refined: ``mre_mm`` as the Detector runs it (with the prior of
    ``cfg``, and with the ``schema`` the patches turned into the head's frame), ``raw_mre_mm`` without the prior."""
    model.eval()
    err = {"first": [], "prior": [], "raw": []}
    for d in data:
        p0 = first[d.id]
        for key, p in (("first", p0), ("prior", local_stage_points(model, d.fine, p0, cfg, schema=schema)),
                       ("raw", local_stage_points(model, d.fine, p0, cfg, prior_sd=0.0, schema=schema))):
            err[key].append(np.linalg.norm(p - d.truth, axis=1) * d.spacing)
    e = {k: np.concatenate(v) for k, v in err.items()}
    e = {k: v[np.isfinite(v)] for k, v in e.items()}         # an unlabelled point is not scored
    return {"first_mre_mm": float(e["first"].mean()), "mre_mm": float(e["prior"].mean()),
            "raw_mre_mm": float(e["raw"].mean()), "sdr2": float((e["prior"] <= 2).mean() * 100),
            "first_sdr2": float((e["first"] <= 2).mean() * 100)}


def first_stage_points(model: Optional[Path], samples: Sequence[Sample], threads: Optional[int] = None
                       ) -> Dict[str, np.ndarray]:
    """The first stage's points (``model``, default the bundled one, without its local stage) per sample."""
    from sdk import Detector

    det = Detector(model, threads=threads, local_stage=False)
    return {s.id: det(s.image).xy for s in samples}


def init_config(init: Path, **changes) -> LocalConfig:
    """The recipe of a fine-tune from local-stage checkpoint ``init``: its own (patch geometry, scale, targets,
    displacements, prior), with ``changes`` (schedule, seed, augmentation) applied."""
    return replace(LocalConfig.from_dict(load_local_checkpoint(init)["config"]), **changes)


class LocalTrainer(Trainer):
    """:class:`train.trainer.Trainer` for the local stage: patches around each landmark, the patch model, its own
    loss on the patch's own channel, and validation through the first stage's real points (``first_val``)."""

    def __init__(self, cfg: LocalConfig, train: Sequence[Sample], val: Sequence[Sample],
                 first_val: Dict[str, np.ndarray], schema: Schema, run_dir: Path, threads: Optional[int] = None,
                 data_info: str = "", **kw):
        if cfg.pair_weight > 0 and cfg.pair_shift <= 0:
            raise ValueError(f"pair weight {cfg.pair_weight} needs shifted pairs: a pair shift above 0 (--pair-shift)")
        self.first_val, self._local_schema = first_val, schema
        super().__init__(cfg, train, val, run_dir, data_info=data_info, device="cpu", **kw)
        if threads:
            torch.set_num_threads(threads)

    def _schema(self) -> Schema:
        return self._local_schema

    def _setup_task(self, train_samples, cache, cache_dir) -> None:
        t0 = time.time()
        self.fine_train, self.fine_val = (load_fine(train_samples, self.cfg, self.schema),
                                           load_fine(self.val_samples, self.cfg, self.schema))
        log.info("fine images ready in %.0f s: %d train, %d val", time.time() - t0, len(self.fine_train),
                 len(self.fine_val))
        self.train_set = PatchDataset(self.fine_train, self.cfg, self.schema.k)
        self.model = PatchNet(self.schema.k, 1, self.cfg.widths)

    def _loss(self, batch):
        """(loss, its parts, patches) of one batch; with shifted pairs, both patches in one pass."""
        x, target, lm, pt = batch[:4]
        pairs = len(batch) > 4
        if pairs:
            x, target, lm, pt = (torch.cat([x, batch[4]]), torch.cat([target, batch[5]]), torch.cat([lm, lm]),
                                 torch.cat([pt, batch[6]]))
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            hm = self.model(x)
        pred = pick_channel(hm.float(), lm)
        loss, parts = combined_loss(pred, target, pt[:, None], torch.ones(len(x), 1), self.cfg.sigma,
                                    self.cfg.focal_weight, self.cfg.coord_weight)
        if pairs and self.cfg.pair_weight > 0:
            n = len(batch[7])
            move = pair_loss(pred[:n], pred[n:], batch[7], torch.ones(n, 1), self.cfg.stride)
            loss = loss + self.cfg.pair_weight * move
            parts["move"] = float(move.detach())
        return loss, parts, len(x)

    def validate(self) -> Optional[Dict]:
        return evaluate(self.model, self.fine_val, self.first_val, self.cfg, self.schema) if self.fine_val else None

    def _val_record(self, val: Dict) -> Dict:
        rec = {f"val_{k}": v for k, v in val.items()}
        rec["val_sdr2"] = val["sdr2"]
        return {**rec, **val}       # the unprefixed keys too, as local-stage histories always had them

    def _task_state(self) -> Dict:
        return {"config": self.cfg.to_dict(), "schema": self.schema.to_dict(), "k": self.schema.k,
                "stage": "local"}

    def _load(self, path: Path) -> Dict:
        return load_local_checkpoint(path)

    def _check_compatible(self, ck: Dict, path: Path, init: bool) -> None:
        from sdk.errors import ModelError

        saved = LocalConfig.from_dict(ck["config"])
        keys = ("widths",) if init else ("input_size", "factor", "patch", "stride", "sigma", "widths", "mean", "std")
        differ = [k for k in keys if getattr(saved, k) != getattr(self.cfg, k)]
        if differ or ck["k"] != self.schema.k:
            what = ", ".join(differ) or "landmark count"
            raise ModelError(f"{path} was trained with other settings ({what}): "
                             + ("its weights do not fit this run" if init else
                                "resume with the same ones or use another output folder"))

    def resume(self, path: Path) -> None:
        ck = load_local_checkpoint(path)
        if "scheduler" not in ck:      # made before the local stage used this Trainer: no schedule state
            self._check_compatible(ck, path, init=False)
            self.model.load_state_dict(ck["model"])
            self.opt.load_state_dict(ck["optimizer"])
            self.epoch, self.history = int(ck["epoch"]), list(ck.get("history", []))
            self.best_mre, self.init_info = float(ck.get("best_mre_mm", math.inf)), str(ck.get("init", ""))
            self.sched.step(self.epoch)
            return
        super().resume(path)


def train_local_stage(train: Sequence[Sample], val: Sequence[Sample], first_val: Dict[str, np.ndarray], k: int,
                      cfg: LocalConfig, out: Path, threads: Optional[int] = None, data_info: str = "",
                      stop_after: Optional[int] = None, init: Optional[Path] = None,
                      schema: Optional[Schema] = None) -> Dict:
    """Train (or resume) the patch model into ``out``; returns the last epoch's record. ``stop_after``: at most
    this many epochs in this call (the run resumes later). With no ``val`` images it is a final fit on a recipe
    fixed elsewhere: no validation; ``last.pt`` (and ``best.pt``, the same epoch) is the result. ``init``: a local-stage checkpoint whose weights a
    fresh run starts from (a fine-tune; its config should come from :func:`init_config`)."""
    from sdk.schemas import ISBI19, schema_from_dict

    sch = schema or (ISBI19 if k == ISBI19.k else schema_from_dict({"id": f"k{k}",
                                                                    "landmarks": [f"p{i}" for i in range(k)]}))
    if sch.k != k:
        raise ValueError(f"schema {sch.id} has {sch.k} landmarks, not {k}")
    out = Path(out)
    tr = LocalTrainer(cfg, train, val, first_val, sch, out, threads, data_info)
    last = out / "last.pt"
    if last.is_file():
        tr.resume(last)
        if init is not None:
            log.info("resuming %s: the init weights were applied when the run started, not again", last)
    elif init is not None:
        log.info("starting from %s", tr.init_from(init))
    tr.fit(progress=False, stop_after=stop_after)
    return tr.history[-1] if tr.history else {}


def model_from_local_checkpoint(ck: Dict) -> PatchNet:
    """The patch model of a local-stage checkpoint (``best.pt`` / ``last.pt`` of :func:`train_local_stage`)."""
    cfg = LocalConfig.from_dict(ck["config"])
    model = PatchNet(int(ck["k"]), 1, cfg.widths)
    model.load_state_dict(ck["model"])
    return model.eval()


def load_local_checkpoint(path: Path) -> Dict:
    """A local-stage checkpoint (read like the first stage's: ``weights_only``); :class:`sdk.ModelError` when it is
    missing or is not one."""
    from sdk.errors import ModelError

    ck = read_checkpoint(path, "local-stage checkpoint")
    if (not isinstance(ck, dict) or not {"model", "config", "k", "epoch"} <= set(ck) or "patch" not in ck["config"]
            or ck.get("stage", "local") != "local"):
        raise ModelError(f"{path} is not a local-stage checkpoint (made by 'cephalo train-local')")
    return ck
