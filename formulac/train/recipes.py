"""Training recipes: every knob in one dataclass, the learning-rate schedule and batched
augmentation in plain torch (runs where the data lives: on the GPU or on the CPU).

Recipes (``RECIPES``):

``cifar``
    He et al. 2015, paper-faithful: SGD lr 0.1, momentum 0.9, weight decay 1e-4, no Nesterov,
    batch 128, 160 epochs, lr x0.1 at 50% and 75% of the epochs, random crop with 4-pixel zero
    padding and horizontal flip.
``imagenet``
    SGD lr 0.1, momentum 0.9, weight decay 1e-4, batch 256, 90 epochs, lr x0.1 at epochs 30 and
    60, random-resized crop (scale 0.08-1, aspect 3/4-4/3, done with ``grid_sample``) and flip.
``fashion``
    Fast and strong on small 28x28 data sets (the default for Fashion-MNIST, MNIST, KMNIST),
    chosen by ``bench/cpu_recipe_ablation.py`` (docs/benchmarks.md): 4 epochs, SGD lr 0.1 with
    Nesterov momentum 0.9, weight decay 5e-4, batch 128, a 0.3-epoch linear warm-up then linear
    decay to zero, label smoothing 0.1, flips (no crop: in a few epochs it costs more than it
    gives), an exponential moving average of the weights (decay 0.999) evaluated with flip
    test-time augmentation, bf16 where the device computes it natively, channels_last.
``cifar-fast``
    The same techniques for 32x32 colour images (the default for CIFAR-10/100): 15 epochs,
    batch 256, lr 0.2, a one-epoch warm-up, crop with 2-pixel padding and flips.
``text``
    Language models on ``text:`` corpora (the default there): nanoGPT's Shakespeare-char
    optimisation, AdamW lr 1e-3 with betas 0.9/0.99 and weight decay 0.1 on matrices only,
    gradient clipping at norm 1, batch 64 windows, a 0.1-epoch warm-up then cosine decay,
    5 epochs of 2**20 tokens, 256 fixed validation windows, bf16 on GPUs and fp32 on the CPU
    (where bf16 autocast did not pay).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, field, fields

import torch
import torch.nn.functional as F

from ..limits import MAX_EPOCH_TOKENS, MAX_EPOCHS
from .errors import TrainError

__all__ = [
    "BACKBONE_RECIPE_CHANGES",
    "RECIPES",
    "TrainConfig",
    "EpochPlan",
    "augment_batch",
    "epoch_plan",
    "lr_at",
    "make_config",
    "milestone_epochs",
    "recipe_for_dataset",
    "resolve_amp",
]


@dataclass
class TrainConfig:
    """Every knob of a training run.  Build one with :func:`make_config` to get a recipe's
    defaults; the dataclass's own defaults are a plain SGD run with every optional technique
    off (what a run saved before a knob existed did)."""

    recipe: str = "fashion"
    # data
    data: str = "fashion-mnist"
    data_dir: str | None = None
    download: bool = False
    image_size: int | None = None  # imagefolder only: stored/trained resolution (default 64)
    limit_train: int | None = None  # use only the first N training examples
    limit_test: int | None = None  # use only the first N test examples
    # hold out this fraction of the training set (stratified, drawn from split_seed alone) and
    # evaluate on it instead of the test set, which is then never read
    val_fraction: float = 0.0
    split_seed: int = 0
    # optimisation
    epochs: int = 3
    batch_size: int = 128  # the GLOBAL batch (split across DDP ranks)
    optimizer: str = "sgd"  # sgd | adamw
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = True
    schedule: str = "cosine"  # step | cosine | linear | constant
    milestones: tuple[float, ...] = (0.5, 0.75)  # fractions of the epochs (step schedule)
    gamma: float = 0.1  # lr factor at each milestone
    warmup_epochs: float = 0.0  # linear warm-up, per iteration
    label_smoothing: float = 0.0
    norm_bias_decay: bool = True  # weight decay on batch-norm weights and biases too
    ema_decay: float = 0.0  # evaluate an exponential moving average of the weights (0: off)
    tta: bool = False  # evaluate on each image and its mirror image, logits averaged
    # augmentation
    crop_padding: int = 2  # random crop with zero padding (0: off)
    flip: bool = True  # random horizontal flip
    random_resized_crop: bool = False
    # run
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: str = "none"  # none | bf16 | fp16 | auto (bf16 where the device computes it natively) | gpu (bf16 on CUDA only)
    channels_last: bool = False
    compile: bool = False
    deterministic: bool = False
    eval_every: int = 1  # evaluate every N epochs (and always after the last)
    eval_batch_size: int | None = None  # default: max(batch_size, 256)
    data_on_device: str = "auto"  # auto | yes | no: keep the whole data set on the GPU
    workers: int = 0  # threads decoding image folders (0: automatic)
    threads: int = 0  # torch CPU threads (0: torch's default)
    sync_bn: bool = False  # SyncBatchNorm under DDP
    # language models (``text:`` data; see formulac/train/language.py)
    tokens: str = "bytes"  # bytes (vocabulary 256) | chars (the file's characters)
    epoch_tokens: int = 1_000_000  # an epoch is this many training tokens
    grad_clip: float = 0.0  # clip the gradient's global norm to this (0: off)
    eval_windows: int = 0  # fixed evaluation windows of the validation part (0: all)
    adam_beta2: float = 0.999  # AdamW's second-moment decay

    # ---------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = asdict(self)
        d["milestones"] = list(self.milestones)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        if "milestones" in kw and kw["milestones"] is not None:
            kw["milestones"] = tuple(float(m) for m in kw["milestones"])
        return cls(**kw)

    def replace(self, **changes) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def validate(self) -> TrainConfig:
        def bad(msg: str):
            raise TrainError(msg)

        if self.recipe not in RECIPES:
            bad(f"unknown recipe '{self.recipe}'; choose one of: {', '.join(RECIPES)}")
        if not 1 <= self.epochs <= MAX_EPOCHS:
            bad(f"--epochs must be from 1 to {MAX_EPOCHS:,}, not {self.epochs}")
        if self.batch_size < 1:
            bad(f"--batch-size must be at least 1, not {self.batch_size}")
        if self.eval_batch_size is not None and self.eval_batch_size < 1:
            bad(f"--eval-batch-size must be at least 1, not {self.eval_batch_size}")
        if self.optimizer not in ("sgd", "adamw"):
            bad(f"unknown optimizer '{self.optimizer}'; choose sgd or adamw")
        # the optimizers hold these as float32: a larger value overflows in the first step
        if not (0 < self.lr <= FLOAT32_MAX):
            bad(f"--lr must be a positive number up to {FLOAT32_MAX:.4g}, not {self.lr}")
        if not (0 <= self.momentum < 1):
            bad(f"--momentum must be in [0, 1), not {self.momentum}")
        if not (0 <= self.weight_decay <= FLOAT32_MAX):
            bad(f"--weight-decay must be a number >= 0, not {self.weight_decay}")
        if self.nesterov and self.optimizer == "sgd" and self.momentum == 0:
            bad("Nesterov momentum needs --momentum > 0 (or --no-nesterov)")
        if self.schedule not in SCHEDULES:
            bad(f"unknown schedule '{self.schedule}'; choose {', '.join(SCHEDULES)}")
        if any(not (0 < m < 1) for m in self.milestones):
            bad(f"--milestones are fractions of the epochs in (0, 1), not {self.milestones}")
        if not (0 < self.gamma <= 1):
            bad(f"--gamma must be in (0, 1], not {self.gamma}")
        if not (0 <= self.warmup_epochs <= MAX_WARMUP_EPOCHS):
            bad(f"--warmup-epochs must be between 0 and {MAX_WARMUP_EPOCHS}, not {self.warmup_epochs}")
        if not (0 <= self.label_smoothing < 1):
            bad("--label-smoothing must be in [0, 1)")
        if not (0 <= self.ema_decay < 1):
            bad(f"--ema-decay must be in [0, 1), not {self.ema_decay}")
        if self.crop_padding < 0:
            bad("--crop-padding must not be negative")
        if self.amp not in AMP_MODES:
            bad(f"unknown --amp '{self.amp}'; choose {', '.join(AMP_MODES)}")
        if self.eval_every < 1:
            bad("--eval-every must be at least 1")
        if self.data_on_device not in ("auto", "yes", "no"):
            bad("--data-on-device must be auto, yes or no")
        if self.workers < 0 or self.threads < 0:
            bad("--workers and --threads must not be negative")
        if self.image_size is not None and self.image_size < 4:
            bad("--image-size must be at least 4")
        if not (0 <= self.val_fraction < 1):
            bad(f"--val-fraction must be in [0, 1), not {self.val_fraction}")
        if self.split_seed < 0:
            bad(f"--split-seed must not be negative, not {self.split_seed}")
        if self.tokens not in ("bytes", "chars"):
            bad(f"unknown --tokens '{self.tokens}'; choose bytes or chars")
        if not 1 <= self.epoch_tokens <= MAX_EPOCH_TOKENS:
            bad(f"--epoch-tokens must be from 1 to {MAX_EPOCH_TOKENS:,}, not {self.epoch_tokens}")
        if not (0 <= self.grad_clip <= FLOAT32_MAX):
            bad(f"--grad-clip must be a number >= 0, not {self.grad_clip}")
        if self.eval_windows < 0:
            bad(f"--eval-windows must not be negative, not {self.eval_windows}")
        if not (0 <= self.adam_beta2 < 1):
            bad(f"--adam-beta2 must be in [0, 1), not {self.adam_beta2}")
        for what in ("limit_train", "limit_test"):
            v = getattr(self, what)
            if v is not None and v < 1:
                bad(f"--{what.replace('_', '-')} must be at least 1, not {v}")
        return self


SCHEDULES = ("step", "cosine", "linear", "constant")
FLOAT32_MAX = 3.4028234663852886e38
#: a longer warm-up keeps the learning rate near 0 for any run that finishes
MAX_WARMUP_EPOCHS = 10_000
AMP_MODES = ("none", "bf16", "fp16", "auto", "gpu")

# He et al. 2015's optimisation, shared by the paper-faithful CIFAR and ImageNet recipes
_HE_SGD = dict(
    optimizer="sgd",
    lr=0.1,
    momentum=0.9,
    weight_decay=1e-4,
    nesterov=False,
    schedule="step",
    gamma=0.1,
    warmup_epochs=0.0,
    flip=True,
)

RECIPES: dict[str, dict] = {
    "cifar": dict(
        _HE_SGD,
        epochs=160,
        batch_size=128,
        milestones=(0.5, 0.75),
        crop_padding=4,
        random_resized_crop=False,
    ),
    "imagenet": dict(
        _HE_SGD,
        epochs=90,
        batch_size=256,
        milestones=(1 / 3, 2 / 3),
        crop_padding=0,
        random_resized_crop=True,
    ),
    "fashion": dict(
        epochs=4,
        batch_size=128,
        optimizer="sgd",
        lr=0.1,
        momentum=0.9,
        weight_decay=5e-4,
        nesterov=True,
        schedule="linear",
        milestones=(0.5, 0.75),
        gamma=0.1,
        warmup_epochs=0.3,
        label_smoothing=0.1,
        ema_decay=0.999,
        tta=True,
        crop_padding=0,
        flip=True,
        random_resized_crop=False,
        amp="auto",
        channels_last=True,
    ),
}


# the fast recipe's techniques for 32x32 colour images: longer, larger batches, crops
RECIPES["cifar-fast"] = {
    **RECIPES["fashion"],
    **dict(epochs=15, batch_size=256, lr=0.2, warmup_epochs=1.0, crop_padding=2),
}


# language models (``text:`` data): nanoGPT's Shakespeare-char optimisation (AdamW 1e-3, betas
# 0.9/0.99, weight decay 0.1 on matrices, clipping at 1) with a warm-up and cosine decay, in
# epochs of 2**20 tokens
RECIPES["text"] = dict(
    epochs=5,
    epoch_tokens=1 << 20,
    batch_size=64,
    optimizer="adamw",
    lr=1e-3,
    adam_beta2=0.99,
    weight_decay=0.1,
    norm_bias_decay=False,
    schedule="cosine",
    warmup_epochs=0.1,
    grad_clip=1.0,
    eval_windows=256,
    label_smoothing=0.0,
    ema_decay=0.0,
    tta=False,
    crop_padding=0,
    flip=False,
    random_resized_crop=False,
    # bf16 autocast cost 15% of the CPU time of a 4 x 128 GPT step even with AMX (measured,
    # docs/benchmarks.md): bf16 on GPUs only
    amp="gpu",
)


# transformers (the vit backbone's default, formulac.codegen.backbones): AdamW, linear warm-up
# then cosine decay, no weight decay on norms and biases, label smoothing (DeiT's choices at a
# small scale; issue 16). Not tuned yet: docs/benchmarks.md says what was measured.
RECIPES["transformer"] = dict(
    epochs=10,
    batch_size=128,
    optimizer="adamw",
    lr=1e-3,
    momentum=0.9,
    weight_decay=0.05,
    nesterov=False,
    schedule="cosine",
    milestones=(0.5, 0.75),
    gamma=0.1,
    warmup_epochs=1.0,
    label_smoothing=0.1,
    norm_bias_decay=False,
    ema_decay=0.0,
    tta=False,
    crop_padding=2,
    flip=True,
    random_resized_crop=False,
    # bf16 autocast made a dim-64 ViT's CPU step 3.3x slower even with AMX (docs/benchmarks.md):
    # bf16 on GPUs only
    amp="gpu",
)


def recipe_for_dataset(data: str) -> str:
    """The recipe used when none is named: fashion for the 28x28 sets (and synthetic sets of
    one channel), cifar-fast for CIFAR (and other synthetic sets), imagenet for image folders,
    text for ``text:`` corpora, cifar (He et al.) otherwise."""
    d = data.strip().lower()
    if d.startswith("text:"):
        return "text"
    if d in ("fashion-mnist", "mnist", "kmnist", "fashion_mnist", "fashionmnist"):
        return "fashion"
    if d in ("cifar10", "cifar100", "cifar-10", "cifar-100"):
        return "cifar-fast"
    if d in ("imagefolder", "image-folder"):
        return "imagenet"
    if d.startswith("synthetic"):
        # a stand-in for the small sets: their fast recipe, not He et al.'s 160 epochs without
        # warm-up, whose lr 0.1 from the first step diverges on a few short epochs
        from .data import parse_synthetic

        (channels, _, _), _ = parse_synthetic(d)
        return "fashion" if channels == 1 else "cifar-fast"
    return "cifar"


#: Changes to the data set's recipe for a backbone that the recipe's optimiser does not train
#: stably; applied when no recipe is named (measured over the zoo: docs/benchmarks.md).
BACKBONE_RECIPE_CHANGES: dict[str, dict] = {
    # no normalisation layer: SGD at lr 0.1 diverged for 5 of 6 stable zoo formulas within
    # 3 epochs on synthetic data; AdamW at 2e-3 trained all of them
    "mlp": dict(optimizer="adamw", lr=2e-3, weight_decay=0.05),
    # cifar-fast's lr 0.2 (batch 256) diverged on synthetic 8x8 data for hyper-connections, mHC
    # and midpoint (losses 1.8 -> 7.3, 14 -> 3.7 with test loss 52, 12 -> 9.5); at 0.1, Xie et
    # al.'s and He et al.'s lr, all three trained (1.6 -> 0.86, 3.4 -> 1.6, 1.8 -> 1.0)
    "resnext": dict(lr=0.1),
    # the same at batch 64 with the lr scaled: 0.2's mHC reached a first-epoch loss of 12 and a
    # test loss of 25 (plain ResNet went to NaN at 0.2 unscaled); 0.1 halves both
    "imagenet-resnet": dict(lr=0.1),
}


def make_config(recipe: str | None = None, backbone: str | None = None, **overrides) -> TrainConfig:
    """A :class:`TrainConfig` with ``recipe``'s defaults, then ``overrides`` (None values are
    ignored, so unset command-line flags keep the recipe's values). With no ``recipe``, the
    data set's recipe with the ``backbone``'s changes (:data:`BACKBONE_RECIPE_CHANGES`)."""
    overrides = {k: v for k, v in overrides.items() if v is not None}
    data = overrides.get("data", "fashion-mnist")
    named = recipe is not None
    recipe = recipe or recipe_for_dataset(data)
    if recipe not in RECIPES:
        raise TrainError(f"unknown recipe '{recipe}'; choose one of: {', '.join(RECIPES)}")
    names = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise TrainError(f"unknown training option(s): {', '.join(unknown)}")
    values = dict(RECIPES[recipe])
    if not named:
        values.update(BACKBONE_RECIPE_CHANGES.get(backbone or "", {}))
    values.update(overrides)
    if "milestones" in values:
        values["milestones"] = tuple(float(m) for m in values["milestones"])
    return TrainConfig(recipe=recipe, **values).validate()


# --------------------------------------------------------------------------------------------
# mixed precision


def _cpu_has_native_bf16() -> bool:
    """True where the CPU multiplies bfloat16 in hardware (AVX512-BF16 or AMX): there bf16
    autocast speeds training up; elsewhere oneDNN emulates it and it slows training down."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def resolve_amp(amp: str, device: torch.device) -> str:
    """The mixed precision a run uses on ``device``: ``auto`` becomes ``bf16`` on CUDA devices
    that support it and on CPUs with native bf16 arithmetic, ``gpu`` on those CUDA devices only,
    ``none`` elsewhere."""
    if amp not in ("auto", "gpu"):
        return amp
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "none"
    if amp == "gpu":
        return "none"
    if device.type == "cpu":
        return "bf16" if _cpu_has_native_bf16() else "none"
    return "none"


# --------------------------------------------------------------------------------------------
# learning rate


def milestone_epochs(config: TrainConfig) -> list[int]:
    """The epochs (0-based) from which the step schedule multiplies the lr by ``gamma`` once
    more: e.g. 80 and 120 for 160 epochs at (0.5, 0.75)."""
    return [math.floor(m * config.epochs + 0.5) for m in config.milestones]


def lr_at(config: TrainConfig, epoch: int, step: int = 0, steps_per_epoch: int = 1) -> float:
    """The learning rate for iteration ``step`` of 0-based ``epoch``: a pure function, so a
    resumed run needs no scheduler state."""
    t = epoch + step / max(steps_per_epoch, 1)
    if config.schedule == "step":
        factor = config.gamma ** sum(1 for m in milestone_epochs(config) if epoch >= m)
    elif config.schedule == "cosine":
        factor = 0.5 * (1.0 + math.cos(math.pi * t / config.epochs))
    elif config.schedule == "linear":
        factor = 1.0 - t / config.epochs
    else:
        factor = 1.0
    if config.warmup_epochs > 0 and t < config.warmup_epochs:
        # at most 1: an epoch of fewer steps than the warm-up's fraction must not exceed the lr
        factor *= min(1.0, (t + 1.0 / max(steps_per_epoch, 1)) / config.warmup_epochs)
    return config.lr * factor


# --------------------------------------------------------------------------------------------
# data order and augmentation


def epoch_seed(seed: int, epoch: int) -> int:
    # a fixed, well-mixed 63-bit seed per (seed, epoch): splitmix64 of the pair
    z = (seed * 0x9E3779B97F4A7C15 + (epoch + 1) * 0xBF58476D1CE4E5B9) & (2**64 - 1)
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & (2**64 - 1)
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & (2**64 - 1)
    return (z ^ (z >> 31)) & (2**63 - 1)


@dataclass
class EpochPlan:
    """The data order and every augmentation draw of one epoch, indexed by position in the
    epoch (so that each DDP rank can take its slice of the same global batch)."""

    order: torch.Tensor  # permutation of the training examples
    crop: torch.Tensor | None = None  # (N, 2) offsets in [0, 2 * padding]
    flip: torch.Tensor | None = None  # (N,) bool
    rrc: torch.Tensor | None = None  # (N, 4): a_x, a_y, b_x, b_y of the affine crop
    extra: dict = field(default_factory=dict)

    def to(self, device) -> EpochPlan:
        def mv(t):
            return None if t is None else t.to(device, non_blocking=True)

        return EpochPlan(mv(self.order), mv(self.crop), mv(self.flip), mv(self.rrc))

    def take(self, sl) -> EpochPlan:
        def pick(t):
            return None if t is None else t[sl]

        return EpochPlan(pick(self.order), pick(self.crop), pick(self.flip), pick(self.rrc))


def epoch_plan(config: TrainConfig, n: int, epoch: int, image_hw: tuple[int, int]) -> EpochPlan:
    """Draw the epoch's order and augmentation from a generator seeded by (seed, epoch) alone:
    the same on every rank, every device, and after a resume."""
    g = torch.Generator().manual_seed(epoch_seed(config.seed, epoch))
    order = torch.randperm(n, generator=g)
    plan = EpochPlan(order)
    if config.random_resized_crop:
        _h, _w = image_hw
        area = torch.empty(n).uniform_(0.08, 1.0, generator=g)
        logr = torch.empty(n).uniform_(math.log(3 / 4), math.log(4 / 3), generator=g)
        ratio = logr.exp()
        cw = (area * ratio).sqrt().clamp(max=1.0)  # fractions of the width / height
        ch = (area / ratio).sqrt().clamp(max=1.0)
        x0 = torch.rand(n, generator=g) * (1 - cw)
        y0 = torch.rand(n, generator=g) * (1 - ch)
        # affine_grid (align_corners=False): input = a * output + b in [-1, 1] units
        plan.rrc = torch.stack([cw, ch, 2 * x0 + cw - 1, 2 * y0 + ch - 1], dim=1)
    elif config.crop_padding > 0:
        plan.crop = torch.randint(0, 2 * config.crop_padding + 1, (n, 2), generator=g, dtype=torch.int64)
    if config.flip:
        plan.flip = torch.rand(n, generator=g) < 0.5
    return plan


def _crop_flip(
    x: torch.Tensor, offsets: torch.Tensor | None, pad: int, flip: torch.Tensor | None
) -> torch.Tensor:
    """Random crop (zero padding ``pad``, top-left ``offsets`` in the padded image) and
    horizontal flip, as one gather over the flattened images."""
    b, c, h, w = x.shape
    if offsets is not None and pad > 0:
        x = F.pad(x, (pad, pad, pad, pad))
        wp = w + 2 * pad
        base = offsets[:, 0] * wp + offsets[:, 1]  # (B,)
    else:
        wp = w
        base = torch.zeros(b, dtype=torch.int64, device=x.device)
    cols = torch.arange(w, device=x.device)
    if flip is not None:
        cols = torch.where(flip[:, None], (w - 1) - cols[None, :], cols[None, :])  # (B, W)
    else:
        cols = cols[None, :].expand(b, w)
    rows = torch.arange(h, device=x.device) * wp
    idx = base[:, None, None] + rows[None, :, None] + cols[:, None, :]  # (B, H, W)
    flat = x.reshape(b, c, -1)
    return flat.gather(2, idx.reshape(b, 1, h * w).expand(b, c, h * w)).view(b, c, h, w)


def augment_batch(
    x: torch.Tensor,
    plan: EpochPlan | None,
    config: TrainConfig,
    mean: torch.Tensor,
    std: torch.Tensor,
    channels_last: bool = False,
) -> torch.Tensor:
    """uint8 NCHW batch -> augmented (when ``plan`` is given), normalised float32 batch.

    ``mean``/``std`` are per-channel tensors in [0, 1] units on ``x``'s device.
    """
    if plan is not None and plan.rrc is None and (plan.crop is not None or plan.flip is not None):
        x = _crop_flip(x, plan.crop, config.crop_padding, plan.flip)
        xf = x.float()
    elif plan is not None and plan.rrc is not None:
        xf = x.float()
        p = plan.rrc.to(xf.dtype)
        ax = p[:, 0]
        if plan.flip is not None:
            ax = torch.where(plan.flip, -ax, ax)
        zero = torch.zeros_like(ax)
        theta = torch.stack(
            [torch.stack([ax, zero, p[:, 2]], 1), torch.stack([zero, p[:, 1], p[:, 3]], 1)], 1
        )
        grid = F.affine_grid(theta, list(xf.shape), align_corners=False)
        xf = F.grid_sample(xf, grid, mode="bilinear", padding_mode="border", align_corners=False)
    else:
        xf = x.float()
    if xf is x:  # a float input: do not scale the caller's tensor in place
        xf = xf.clone()
    scale = (1.0 / (255.0 * std)).view(1, -1, 1, 1)
    shift = (mean / std).view(1, -1, 1, 1)
    xf.mul_(scale).sub_(shift)
    if channels_last and xf.dim() == 4:
        xf = xf.contiguous(memory_format=torch.channels_last)
    return xf
