"""Command-line flags for training: every :class:`TrainConfig` knob, plus the run flags.

Usage in a command::

    p = argparse.ArgumentParser()
    add_training_arguments(p)          # --recipe, --data, --epochs, --lr, ...
    add_run_arguments(p)               # --out, --resume, --overwrite, --no-progress, --quiet
    args = p.parse_args()
    config = config_from_args(args)    # recipe defaults, then the flags given

Flags left out keep the recipe's value (every flag defaults to None); the recipe defaults to
``fashion`` for the 28x28 data sets, ``cifar-fast`` for CIFAR, ``imagenet`` for image folders
and ``cifar`` otherwise.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import fields

from ..limits import MAX_SEED, MAX_SEEDS
from ..numbers import (
    epoch_count,
    epoch_tokens,
    nonnegative_int,
    positive_int,
    process_count,
    seed_value,
    thread_count,
)
from .data import DATASETS
from .errors import TrainError
from .recipes import AMP_MODES, RECIPES, SCHEDULES, TrainConfig, make_config

__all__ = [
    "add_run_arguments",
    "add_training_arguments",
    "config_from_args",
    "parse_seeds",
    "add_seeds_argument",
    "seeds_from_args",
]


def _float(s: str) -> float:
    try:
        return float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {s!r}") from None


def _float_list(s: str) -> tuple[float, ...]:
    parts = [p for p in re.split(r"[,\s]+", s.strip()) if p]
    try:
        return tuple(float(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {s!r}") from None


def parse_seeds(s: str) -> list[int]:
    """A count (``"5"``: seeds 0..4, as in ``--seeds 5``), or a list: ``"0,1,2"``, ``"0-4"``
    or ``"0..4"`` (inclusive), or a mix: ``"0-2,7"``."""
    if re.fullmatch(r"\s*\d+\s*", s):
        count = int(s)
        if count < 1:
            raise argparse.ArgumentTypeError("--seeds needs at least one seed")
        _check_seed_count(count)
        return list(range(count))
    out: list[int] = []
    for part in (p for p in re.split(r"[,\s]+", s.strip()) if p):
        m = re.fullmatch(r"(\d+)(?:(?:-|\.\.)(\d+))?", part)
        if not m:
            raise argparse.ArgumentTypeError(f"bad seed list {s!r}: use e.g. 0,1,2 or 0-4")
        a = int(m.group(1))
        b = int(m.group(2)) if m.group(2) is not None else a
        if b < a:
            raise argparse.ArgumentTypeError(f"bad seed range {part!r}")
        if b > MAX_SEED:
            raise argparse.ArgumentTypeError(f"seeds go up to {MAX_SEED:,}, not {b}")
        _check_seed_count(len(out) + b - a + 1)  # before the range is built
        out.extend(range(a, b + 1))
    if not out:
        raise argparse.ArgumentTypeError("no seeds given")
    if len(set(out)) != len(out):
        raise argparse.ArgumentTypeError(f"repeated seeds in {s!r}")
    return out


def _check_seed_count(count: int) -> None:
    if count > MAX_SEEDS:
        raise argparse.ArgumentTypeError(
            f"at most {MAX_SEEDS:,} seeds (each one is a training run), not {count:,}"
        )


def add_switch(group, flag: str, help: str | None = None) -> None:
    """``flag`` and its ``--no-`` form: True, False, or None when neither is given (the recipe
    decides)."""
    group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help)


def add_value(group, flag: str, kind, metavar: str, help: str | None = None, **more) -> None:
    """``flag VALUE``: ``VALUE`` read by ``kind`` and shown as ``metavar`` (``more``: argparse's
    other settings, such as ``default``); None when not given unless ``default`` says otherwise."""
    group.add_argument(flag, type=kind, metavar=metavar, help=help, **more)


def add_training_arguments(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """Add one flag per :class:`TrainConfig` knob (in a "training" group) and return it."""
    g = parser.add_argument_group("training", "every flag overrides the recipe's value")
    _add_data_flags(g)
    _add_optimisation_flags(g)
    _add_augmentation_flags(g)
    _add_runtime_flags(g)
    return g


def _add_data_flags(g) -> None:
    """The recipe and the data: data set, text tokens, limits, validation split."""
    g.add_argument(
        "--recipe",
        choices=sorted(RECIPES),
        help="cifar (He et al., paper-faithful: SGD 0.1, 160 epochs, steps at 50%%/75%%), "
        "imagenet (90 epochs, steps at 30/60), fashion (4 fast epochs for 28x28 sets: linear "
        "decay, label smoothing, EMA, flip TTA, bf16), cifar-fast (the same for CIFAR, 15 "
        "epochs); default: fashion for Fashion-MNIST/MNIST/KMNIST, cifar-fast for CIFAR",
    )
    g.add_argument(
        "--data",
        metavar="NAME",
        help=f"data set: {', '.join(DATASETS)}, synthetic:CxHxW[:CLASSES], or text:PATH (a UTF-8 "
        "file) or text:fortunes (Debian's fortunes package) for language models (default: fashion-mnist)",
    )
    g.add_argument(
        "--tokens",
        choices=["bytes", "chars"],
        help="text: tokens are the file's bytes (vocabulary 256, default) or its characters",
    )
    add_value(g, "--epoch-tokens", epoch_tokens, "N", "text: an epoch is N training tokens")
    add_value(
        g,
        "--eval-windows",
        nonnegative_int,
        "N",
        "text: evaluate on N fixed windows of the validation part (0: all of them)",
    )
    add_value(g, "--grad-clip", _float, "NORM", "clip the gradient norm (0: off)")
    add_value(g, "--adam-beta2", _float, "B", "AdamW's second-moment decay")
    g.add_argument("--data-dir", metavar="DIR", help="where the data set's files are")
    add_switch(g, "--download", "download a missing data set into ~/.cache/formulac")
    add_value(
        g,
        "--image-size",
        positive_int,
        "N",
        "imagefolder: resolution the images are stored and trained at (default 64)",
    )
    add_value(g, "--limit-train", positive_int, "N", "use only the first N training examples")
    add_value(g, "--limit-test", positive_int, "N", "use only the first N test examples")
    add_value(
        g,
        "--val-fraction",
        _float,
        "F",
        "hold out this fraction of the training set (stratified by class) and evaluate on "
        "it; the test set is then not used at all (default 0: evaluate on the test set)",
    )
    add_value(
        g, "--split-seed", seed_value, "N", "seed of the validation split, independent of --seed (default 0)"
    )


def _add_optimisation_flags(g) -> None:
    """Epochs, batch, optimiser, learning-rate schedule, regularisation, EMA."""
    add_value(g, "--epochs", epoch_count, "N")
    add_value(g, "--batch-size", positive_int, "N", "global batch size (split across torchrun ranks)")
    g.add_argument("--optimizer", choices=["sgd", "adamw"])
    add_value(g, "--lr", _float, "LR", "base learning rate")
    add_value(g, "--momentum", _float, "M")
    g.add_argument("--weight-decay", "--wd", dest="weight_decay", type=_float, metavar="WD")
    add_switch(g, "--nesterov", "Nesterov momentum")
    g.add_argument("--schedule", choices=list(SCHEDULES), help="lr schedule after the warm-up")
    add_value(
        g,
        "--milestones",
        _float_list,
        "LIST",
        "step schedule: fractions of the epochs (0.5,0.75) or, all >= 1, epoch numbers (30,60)",
    )
    add_value(g, "--gamma", _float, "G", "lr factor at each milestone")
    add_value(g, "--warmup-epochs", _float, "E", "linear lr warm-up over E epochs")
    add_value(g, "--label-smoothing", _float, "S")
    add_switch(
        g,
        "--norm-bias-decay",
        "weight decay on batch-norm weights and biases too (--no-norm-bias-decay: on conv and "
        "linear weights only)",
    )
    add_value(
        g,
        "--ema-decay",
        _float,
        "D",
        "evaluate an exponential moving average of the weights, updated every step (0: off)",
    )


def _add_augmentation_flags(g) -> None:
    """Test-time and training-time augmentation."""
    add_switch(g, "--tta", "test-time augmentation: average the logits of each image and its mirror")
    add_value(g, "--crop-padding", nonnegative_int, "P", "random crop with P pixels of zero padding (0: off)")
    add_switch(g, "--flip", "random horizontal flips")
    add_switch(g, "--random-resized-crop", "random-resized crop (the imagenet recipe's)")
    g.add_argument("--no-augment", action="store_true", default=None, help="no crop, no flip")


def _add_runtime_flags(g) -> None:
    """Seed, device, precision, compilation, evaluation cadence, threads, DDP."""
    add_value(g, "--seed", seed_value, "N", "random seed (default 0)")
    g.add_argument("--device", metavar="DEV", help="auto (default), cpu, cuda, cuda:N")
    g.add_argument(
        "--amp",
        choices=list(AMP_MODES),
        help="mixed precision; auto: bf16 on CUDA devices that have it and on CPUs with native "
        "bf16 arithmetic (AVX512-BF16, AMX), none elsewhere; gpu: bf16 on those CUDA devices only",
    )
    add_switch(g, "--channels-last")
    add_switch(g, "--compile", "torch.compile the model")
    add_switch(g, "--deterministic", "deterministic algorithms (slower on GPUs)")
    add_value(g, "--eval-every", positive_int, "N", "evaluate every N epochs (and after the last)")
    add_value(g, "--eval-batch-size", positive_int, "N")
    g.add_argument(
        "--data-on-device",
        choices=["auto", "yes", "no"],
        help="keep the data set on the GPU (auto: when it fits in 4 GiB)",
    )
    add_value(g, "--workers", thread_count, "N", "threads decoding image folders (0: automatic)")
    add_value(g, "--threads", thread_count, "N", "torch CPU threads (0: torch's default)")
    add_switch(g, "--sync-bn", "synchronised BatchNorm across torchrun ranks")


def add_run_arguments(
    parser: argparse.ArgumentParser, *, compare: bool = False, default_out: str | None = None
) -> argparse._ArgumentGroup:
    """Add --out/-o, --resume, --overwrite, --no-progress, --quiet (and --seeds when
    ``compare``)."""
    g = parser.add_argument_group("run")
    g.add_argument(
        "-o",
        "--out",
        metavar="DIR",
        default=default_out,
        help="output directory" + (f" (default: {default_out})" if default_out else ""),
    )
    g.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its checkpoint"
        + (" (compare always continues finished and unfinished runs)" if compare else ""),
    )
    g.add_argument("--overwrite", action="store_true", help="start over even if --out holds a run")
    g.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    g.add_argument("-q", "--quiet", action="store_true", help="no per-epoch lines")
    if compare:
        g.add_argument(
            "-j",
            "--jobs",
            type=process_count,
            default=1,
            metavar="N",
            help="train N runs at once in separate processes, each with its share of the CPU "
            "threads (default 1)",
        )
        add_seeds_argument(g, "how many seeds (5: seeds 0..4) or which, e.g. 0,2,7 or 3-6 (default 3)")
    return g


def add_seeds_argument(group, help_text: str) -> None:
    """``--seeds N|LIST`` (default 0, 1, 2), as compare and search's confirmation read it."""
    add_value(group, "--seeds", parse_seeds, "N|LIST", help_text, default=[0, 1, 2])


_FIELDS = [f.name for f in fields(TrainConfig)]


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The recipe's defaults, overridden by every flag that was given.  Raises
    :class:`TrainError` (a ValueError) for values that do not fit together."""
    over = {
        name: getattr(args, name)
        for name in _FIELDS
        if name != "recipe" and getattr(args, name, None) is not None
    }
    refuse_image_flags_on_text(args)
    if getattr(args, "no_augment", None):
        for k, v in (("crop_padding", 0), ("flip", False), ("random_resized_crop", False)):
            if k in over and over[k] != v and over[k] is not False:
                raise TrainError("--no-augment contradicts --" + k.replace("_", "-"))
            over[k] = v
    milestones = over.get("milestones")
    if milestones is not None and milestones and all(m >= 1 for m in milestones):
        recipe = getattr(args, "recipe", None)
        base = make_config(
            recipe,
            backbone=getattr(args, "backbone", None),
            **{k: v for k, v in over.items() if k != "milestones"},
        )
        bad = [m for m in milestones if m >= base.epochs or not float(m).is_integer()]
        if bad:
            raise TrainError(f"--milestones {bad} are not epochs inside 1..{base.epochs - 1}")
        over["milestones"] = tuple(m / base.epochs for m in milestones)
    return make_config(getattr(args, "recipe", None), backbone=getattr(args, "backbone", None), **over)


#: Knobs that only image training reads: given with ``text:`` data they would be silently ignored.
IMAGE_ONLY = (
    "tta", "ema_decay", "label_smoothing", "crop_padding", "flip", "random_resized_crop",
    "no_augment", "image_size", "channels_last", "data_dir", "download", "limit_train",
    "limit_test", "val_fraction", "split_seed", "eval_every", "data_on_device", "workers", "sync_bn",
)  # fmt: skip


def refuse_image_flags_on_text(args: argparse.Namespace) -> None:
    """A :class:`TrainError` for an image recipe or an image-only flag given with text data."""
    from .text import is_text_data

    data = getattr(args, "data", None)
    if data is None or not is_text_data(data):
        return
    recipe = getattr(args, "recipe", None)
    if recipe is not None and recipe != "text":
        raise TrainError(
            f"--recipe {recipe} is for images; --data {data} trains under the text recipe "
            "(the default for text)"
        )
    for name in IMAGE_ONLY:
        if getattr(args, name, None) is not None:
            flag = "--" + name.replace("_", "-")
            raise TrainError(f"{flag} is for image data, not --data {data}")


def seeds_from_args(args: argparse.Namespace) -> list[int]:
    seeds = getattr(args, "seeds", None)
    return list(seeds) if seeds else [0]
