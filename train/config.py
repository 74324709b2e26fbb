"""Training configuration and the brief's presets. Every field can be overridden from the CLI."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Dict, Tuple

from sdk.local_stage import LocalParams

# Images carved from the training split for model choice: the first stage's and the local stage's validation.
VAL_COUNT = 30


@dataclass(frozen=True)
class TrainConfig:
    schema: str = "isbi19"
    backbone: str = "w32"
    input_size: int = 384            # model input H = W (letterboxed)
    heatmap_stride: int = 4          # heatmaps at input_size / stride; DARK decoding makes 4 nearly lossless
    sigma: float = 1.5               # target Gaussian sigma, in heatmap pixels
    coord_weight: float = 5.0
    focal_weight: float = 1.0
    softargmax_beta: float = 20.0
    epochs: int = 300
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    restart_period: int = 0          # CosineAnnealingWarmRestarts T_0 in epochs; 0 = epochs // 3 (with T_mult 2)
    warmup_epochs: float = 0.0       # linear LR warm-up at the start (0 = none, as the shipped model)
    grad_clip: float = 5.0
    val_count: int = VAL_COUNT       # images carved from the training split for model choice
    seed: int = 0                    # the validation carve's seed, and the training's unless aug_seed >= 0
    aug_seed: int = -1               # augmentation, shuffling and initialisation seed (-1: seed)
    mean: float = 0.5
    std: float = 0.25
    pad_value: float = 0.0
    channels: int = 1
    augment: bool = True
    hflip_p: float = 0.0
    aug_scale_min: float = 0.9       # random zoom range of the geometric augmentation
    aug_scale_max: float = 1.1
    aug_processing_p: float = 0.0    # other sites' processing (CLAHE, unsharp mask), each at this probability
    aug_artifacts_p: float = 0.0     # other machines' artifacts (shutters, text, a ruler, a tone curve), each at this p
    aug_gamma_max: float = 1.5       # gamma augmentation up to this: 0.7-1.5 as before, else (min(0.7, 1/max), max)
    # Turned pairs (issue 50): each training image is also seen turned by up to pair_deg about the input's centre;
    # both views are supervised, and pair_weight x the distance between the two readings (the turned one turned
    # back; heatmap px / heatmap width, as the coordinate loss) asks for a reading that turns with the head.
    pair_deg: float = 0.0            # 0 = no pairs (the shipped recipe)
    pair_weight: float = 0.0
    amp: str = "auto"                # auto | bf16 | off  (bf16 autocast on CPU, fp16/bf16 on CUDA)
    channels_last: bool = True
    threads: int = 0                 # 0 = all cores
    workers: int = 0
    max_steps_per_epoch: int = 0     # 0 = full epoch; >0 for smoke runs

    @property
    def input_hw(self) -> Tuple[int, int]:
        return (self.input_size, self.input_size)

    @property
    def preprocessing(self):
        """The :class:`sdk.preprocess.Preprocessing` of this model's inputs (exported into its metadata)."""
        from sdk.preprocess import Preprocessing

        return Preprocessing(self.input_hw, self.channels, self.mean, self.std, self.pad_value)

    @property
    def draw_seed(self) -> int:
        """The seed of the training's random draws (augmentation, shuffling, initialisation)."""
        return self.aug_seed if self.aug_seed >= 0 else self.seed

    @property
    def t0(self) -> int:
        return self.restart_period or max(1, self.epochs // 3)

    def to_dict(self) -> Dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def override(self, **kw) -> "TrainConfig":
        return replace(self, **{k: v for k, v in kw.items() if v is not None})


PRESETS: Dict[str, TrainConfig] = {
    "high_accuracy": TrainConfig(),
    "max_accuracy": TrainConfig(input_size=512, sigma=1.0, coord_weight=10.0, epochs=500),
    "max_speed": TrainConfig(backbone="w18", input_size=256),
}


@dataclass(frozen=True)
class LocalConfig:
    """The local (second) stage's recipe: its patches, network, augmentation and schedule."""

    input_size: int = 384          # the first stage's input: fine scale = factor x its letterbox scale
    factor: float = 3.0
    patch: int = 96
    stride: int = 2
    sigma: float = 1.5             # heatmap pixels
    widths: Tuple[int, ...] = (16, 32, 64, 128)   # the patch network's channels at strides 2, 4, 8, 16
    mean: float = 0.5
    std: float = 0.25
    pad_value: float = 0.0
    # displacement of training patch centres from the true point, in first-stage input pixels
    shift_sd: float = 3.0
    shift_uniform_p: float = 0.3
    prior_sd: float = 4.0          # first-stage input px: the decode's weight around the first-stage point
                                   # (sdk.local_stage.LocalParams); 3-6 scored alike on validation, 0 = none
    rotate_deg: float = 15.0
    scale: Tuple[float, float] = (0.85, 1.15)
    # the head's size (sdk.local_stage.head_size, first-stage input px) that patches are cut at, the training
    # images' median: each image is zoomed to it (sdk.local_stage.head_zoom), as the Detector zooms; 0 = the
    # canvas's scale (runs before it)
    head_size: float = 0.0
    # shifted pairs: each patch also cut around a centre moved by up to pair_shift first-stage input px, and
    # pair_weight x the distance between the two readings added (the reading should not follow the first stage)
    pair_shift: float = 0.0
    pair_weight: float = 0.0
    epochs: int = 40
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_epochs: int = 1
    focal_weight: float = 1.0
    coord_weight: float = 5.0
    clip: float = 1.0
    seed: int = 0
    bf16: bool = False             # bf16 autocast: only where the CPU has native bf16 (lab/TRAINING.md)
    aug_processing_p: float = 0.0  # other sites' processing (CLAHE, unsharp mask) on patches, each at this probability
    aug_gamma_max: float = 1.5

    # What the shared Trainer reads from any config: one cosine cycle over the run (no restarts), no loader
    # workers (patches are cut in memory), all of it every epoch.
    channels_last = True
    workers = 0
    threads = 0
    max_steps_per_epoch = 0

    @property
    def draw_seed(self) -> int:
        """The seed of the training's random draws (one seed here: the carve's)."""
        return self.seed

    @property
    def t0(self) -> int:
        return self.epochs

    @property
    def grad_clip(self) -> float:
        return self.clip

    @property
    def amp(self) -> str:
        return "bf16" if self.bf16 else "off"

    def to_dict(self) -> Dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Dict) -> "LocalConfig":
        """The config saved in a checkpoint (tuples come back from JSON/pickle as lists)."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

    @property
    def params(self) -> LocalParams:
        return LocalParams(self.patch, self.factor, self.stride, self.sigma, self.mean, self.std, self.pad_value,
                           prior_sd=self.prior_sd)

    @property
    def max_shift(self) -> float:
        """Largest training displacement in fine pixels: the true point stays 8 pixels inside the patch."""
        return self.patch / 2 - 8
