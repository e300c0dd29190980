"""The training loop: one run of one model under one :class:`TrainConfig`.

Files written into ``out_dir`` (by rank 0 only):

``config.json``     the config, the model's description, the data set, the versions of torch,
                    formulac and Python, the device
``metrics.jsonl``   one JSON line per epoch: epoch, lr, train_loss, train_acc, test_loss,
                    test_acc, val_loss, val_acc, seconds, train_seconds, train_cpu_seconds
                    (the process's CPU time), images_per_s
                    (accuracies are fractions in [0, 1]; the set not evaluated is null)
``checkpoint.pt``   written atomically after every epoch: model, optimizer and scaler state,
                    the weight average (``average["model"]``: the weights evaluated when the
                    recipe averages), epoch, RNG states, history; ``resume=True`` continues from it and ends with
                    exactly the weights of an uninterrupted run
``summary.json``    written when the run is finished: final and best accuracy, parameters,
                    wall time, images/s, what it was evaluated on, how to repeat it
``curves.png``      loss and accuracy per epoch, when matplotlib imports

With ``config.val_fraction > 0`` the run evaluates on a validation split held out from the
training set and never reads the test set (``summary["evaluated_on"] == "validation"``).

A run is set up (:func:`_set_up`), restored from its checkpoint (:func:`_restore`), trained one
epoch at a time (:func:`_train_epoch`, :func:`_evaluate_epoch`), checkpointed
(:func:`_save_checkpoint`) and summarised (:func:`_finish`) around one :class:`_Run` record.
"""

from __future__ import annotations

import math
import os
import platform
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..files import atomic_write, make_directory
from . import distributed as D
from .averaging import WeightAverage
from .data import Dataset, load_dataset
from .errors import TrainError, TrainingDiverged
from .recipes import TrainConfig, augment_batch, epoch_plan, epoch_seed, lr_at, milestone_epochs, resolve_amp
from .rundir import (
    CHECKPOINT,
    CHECKPOINT_FORMAT,
    CONFIG,
    CURVES,
    METRICS,
    RESUME_FREE,
    SUMMARY,
    append_metrics,
    clear_run_files,
    jsonable,
    load_checkpoint,
    prepare_out_dir,
    read_metrics,
    rewrite_metrics,
    write_json,
)
from .runtime import gather_rng, global_settings, seconds_since, seed_everything, seed_rank, set_rng

__all__ = [
    "RESUME_FREE",
    "CHECKPOINT",
    "CONFIG",
    "CURVES",
    "METRICS",
    "SUMMARY",
    "BuildModel",
    "evaluate",
    "load_checkpoint",
    "load_data",
    "read_metrics",
    "train",
    "count_parameters",
    "amp_context",
    "open_run",
    "make_optimizer",
    "seeded_model",
    "refuse_imprecise_coefficients",
    "apply_lr",
    "log_line",
    "record_epoch",
]

_DEVICE_DATA_LIMIT = 4 * 1024**3  # keep data sets up to this size on the GPU
# how often (steps) the GPU reports a non-finite loss to the host; on the CPU every step
_DIVERGENCE_CHECK_STEPS = 50


BuildModel = Callable[[int, int, int], nn.Module]


# --------------------------------------------------------------------------------------------
# small helpers


def seeded_model(build_model: Callable[..., nn.Module], config: TrainConfig, *shape: int) -> nn.Module:
    """``build_model(*shape)`` after seeding with ``config.seed``: the same initial weights for
    the same seed. A :class:`TrainError` when it returns something other than a module."""
    seed_everything(config.seed)
    net = build_model(*shape)
    if not isinstance(net, nn.Module):
        raise TrainError(f"build_model returned {type(net).__name__}, not a torch.nn.Module")
    return net


def count_parameters(model: nn.Module) -> int:
    """Number of distinct parameters (shared ones counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    try:
        ours = version("formulac")
    except PackageNotFoundError:
        ours = "not installed"
    return {"formulac": ours, "torch": torch.__version__, "python": platform.python_version()}


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def _on_main(info: D.DistInfo, fn: Callable[[], object]):
    """Run ``fn`` on rank 0 and give its result (or its TrainError) to every rank."""
    result, error = None, None
    if info.is_main:
        try:
            result = fn()
        except TrainError as e:
            error = str(e)
    result, error = D.broadcast_object((result, error), info)
    if error is not None:
        raise TrainError(error)
    return result


def open_run(config: TrainConfig, out_dir, resume: bool, overwrite: bool, describe: dict | None):
    """What every kind of run starts with: a private, checked copy of ``config``, the process
    group and device, the run directory, and whether to start, resume or stop there (``state``
    and ``payload`` of :func:`prepare_out_dir`, decided on rank 0 and given to every rank)."""
    config = TrainConfig.from_dict(config.to_dict()).validate()
    info, device = D.setup(config.device)
    out = Path(out_dir)
    state, payload = _on_main(info, lambda: prepare_out_dir(out, config, resume, overwrite, describe))
    return config, info, device, out, state, payload


# --------------------------------------------------------------------------------------------
# evaluation


@torch.no_grad()
def evaluate(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    *,
    config: TrainConfig,
    device: torch.device,
    info: D.DistInfo | None = None,
) -> tuple[float, float, int]:
    """(mean loss, accuracy, count) of ``model`` on uint8 ``images``; with DDP each rank takes
    a contiguous share and the sums are reduced.  With ``config.tta`` the logits are the mean of
    those of each image and of its mirror image."""
    info = info or D.DistInfo()
    was_training = model.training
    model.eval()
    sl = D.shard(images.shape[0], info)
    bs = config.eval_batch_size or max(config.batch_size, 256)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    amp = amp_context(config, device)
    for i in range(sl.start, sl.stop, bs):
        j = min(i + bs, sl.stop)
        x = images[i:j].to(device, non_blocking=True)
        y = labels[i:j].to(device, non_blocking=True)
        x = augment_batch(x, None, config, mean, std, config.channels_last)
        with amp:
            out = model(x).float()
            if config.tta:
                mirrored = x.flip(3)
                if config.channels_last:
                    mirrored = mirrored.contiguous(memory_format=torch.channels_last)
                out = 0.5 * (out + model(mirrored).float())
        loss_sum += F.cross_entropy(out, y, reduction="sum").double()
        correct += (out.argmax(1) == y).sum()
    stats = torch.stack(
        [
            loss_sum,
            correct.double(),
            torch.tensor(float(sl.stop - sl.start), dtype=torch.float64, device=device),
        ]
    )
    D.all_reduce_sum(stats, info)
    model.train(was_training)
    total_loss, total_correct, n = stats.tolist()
    n = int(n)
    return (total_loss / max(n, 1), total_correct / max(n, 1), n)


def amp_context(config: TrainConfig, device: torch.device):
    """The mixed-precision context of ``config.amp`` on ``device`` (a no-op for "none")."""
    amp = resolve_amp(config.amp, device)
    if amp == "none":
        return nullcontext()
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


# --------------------------------------------------------------------------------------------
# the run


def log_line(info: D.DistInfo, quiet: bool, msg: str) -> None:
    """``msg`` on stderr from the main rank unless ``quiet`` (through tqdm: bars stay whole)."""
    if info.is_main and not quiet:
        from tqdm import tqdm

        tqdm.write(msg, file=sys.stderr)


def make_optimizer(net: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD or AdamW (betas 0.9 and ``config.adam_beta2``) for image and language runs alike;
    without ``config.norm_bias_decay`` the parameters of fewer than two dimensions (norm
    weights, biases, a formula's scalar coefficients) get no weight decay."""
    params = [p for p in net.parameters() if p.requires_grad]
    if not params:
        raise TrainError("the model has no trainable parameters")
    groups: list[dict] = [{"params": params}]
    if not config.norm_bias_decay:
        groups = [
            {"params": [p for p in params if p.ndim >= 2]},
            {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
        ]
        groups = [g for g in groups if g["params"]]
    if config.optimizer == "adamw":
        return torch.optim.AdamW(
            groups, lr=config.lr, betas=(0.9, config.adam_beta2), weight_decay=config.weight_decay
        )
    return torch.optim.SGD(
        groups,
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        nesterov=config.nesterov and config.momentum > 0,
    )


@dataclass
class _Data:
    """The tensors of a run where they are kept (``store``), and what the run evaluates on."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    eval_x: torch.Tensor
    eval_y: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    store: torch.device
    evaluated_on: str  # "test" or "validation"
    description: dict

    @property
    def n_train(self) -> int:
        return int(self.train_x.shape[0])


@dataclass
class _Run:
    """What one run carries from its set-up through its epochs to its summary."""

    config: TrainConfig
    out: Path
    info: D.DistInfo
    device: torch.device
    net: nn.Module  # the model itself: its state_dict is what the checkpoint holds
    model: nn.Module  # what a training step calls (DDP and/or compiled around ``net``)
    eval_model: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    average: WeightAverage | None  # evaluated in place of ``net`` when the recipe averages
    data: _Data
    parameters: int
    describe: dict | None
    steps: int  # optimizer steps per epoch
    epoch: int = 0  # epochs done
    history: list[dict] = field(default_factory=list)
    elapsed: float = 0.0
    train_elapsed: float = 0.0

    @property
    def eval_key(self) -> str:
        return "val" if self.data.evaluated_on == "validation" else "test"


def train(
    build_model: BuildModel,
    config: TrainConfig,
    out_dir: str | os.PathLike,
    resume: bool = False,
    progress: bool = True,
    *,
    overwrite: bool = False,
    describe: dict | None = None,
    quiet: bool = False,
    dataset: Dataset | None = None,
    on_epoch_end: Callable[[dict], None] | None = None,
) -> dict:
    """Train ``build_model(in_channels, num_classes, input_size)`` under ``config``.

    Writes config.json, metrics.jsonl, checkpoint.pt (every epoch, atomically), summary.json and
    curves.png into ``out_dir`` and returns the summary.  ``resume=True`` continues from the
    checkpoint (a finished run is returned as is); a directory that holds a run is never
    overwritten unless ``overwrite=True``, and a run of another model (``describe`` differs:
    formula, backbone options) or with other settings is never resumed.  Under torchrun the run
    is data-parallel (DDP), the global batch stays ``config.batch_size`` and rank 0 writes the
    files.

    ``dataset`` replaces loading ``config.data`` (limits and the validation split still apply).

    ``on_epoch_end(record)`` is called on every rank after each epoch, once that epoch's
    checkpoint and metrics line are written; ``record`` is a copy of the metrics line.  An
    exception it raises propagates out of ``train`` unchanged and leaves ``out_dir`` resumable
    from that epoch (e.g. ``optuna.TrialPruned`` to stop a trial); under DDP it must raise on
    every rank alike.

    Raises :class:`TrainError` (a :class:`~formulac.errors.FormulacError`) for user errors,
    :class:`DatasetNotFound` when the data is missing, :class:`TrainingDiverged` when the loss
    becomes NaN or infinite (the last good checkpoint stays).
    """
    config, info, device, out, state, payload = open_run(config, out_dir, resume, overwrite, describe)
    if state == "finished":
        log_line(info, quiet, f"{out}: finished run, nothing to do")
        return payload

    wall_start = time.perf_counter()
    with global_settings(config, device):
        run = _set_up(build_model, config, out, info, device, dataset, describe)
        if state == "overwrite" and info.is_main:  # the new run can start: now the old one goes
            clear_run_files(out)
        if payload is not None:
            _restore(run, payload)
            del payload
        _write_run_files(run)
        _log_start(run, quiet)
        with _Bars(run, progress and not quiet) as bars:
            for epoch in range(run.epoch, config.epochs):
                record = _train_epoch(run, epoch, bars)
                _evaluate_epoch(run, record)
                _save_checkpoint(run, record)
                _log_epoch(run, record, quiet)
                bars.epoch_done()
                if on_epoch_end is not None:
                    on_epoch_end(dict(record))
        summary = _finish(run, quiet)
    if info.is_main:
        log_line(
            info,
            quiet,
            f"done: final {_eval_phrase(run)} {100 * summary[f'final_{run.eval_key}_acc']:.2f}% "
            f"(best {100 * summary[f'best_{run.eval_key}_acc']:.2f}% at epoch {summary['best_epoch']}), "
            f"{run.elapsed:.1f}s; this call {time.perf_counter() - wall_start:.1f}s",
        )
    D.barrier(info)
    return summary


def _eval_phrase(run: _Run) -> str:
    return "validation accuracy" if run.eval_key == "val" else "test accuracy"


def load_data(config: TrainConfig) -> Dataset:
    """The data set that ``train(..., config, ...)`` reads, with ``config``'s limits applied (the
    validation split stays ``train``'s business). Load it once and pass it as ``dataset=`` to
    several runs of one process."""
    return data_for_run(config, D.DistInfo(), None)


def data_for_run(config: TrainConfig, info: D.DistInfo, dataset: Dataset | None) -> Dataset:
    """``dataset`` (or, when None, the one ``config`` names, loaded on ``info``'s ranks) with
    ``config``'s limits applied (the validation split is the set-up's business)."""
    if dataset is not None:
        return dataset.limit(config.limit_train, config.limit_test)

    def load(download: bool) -> Dataset:
        return load_dataset(
            config.data,
            config.data_dir,
            download=download,
            limit_train=config.limit_train,
            limit_test=config.limit_test,
            image_size=config.image_size,
            workers=config.workers,
            seed=0,
        )

    if not info.enabled:
        return load(config.download)
    # rank 0 first (it alone downloads), then the others read what it found
    box: dict = {}

    def first() -> None:
        box["data"] = load(config.download)

    _on_main(info, first)
    return box["data"] if info.is_main else load(False)


def _place_data(config: TrainConfig, data: Dataset, device: torch.device) -> _Data:
    if config.val_fraction > 0:
        data = data.split_validation(config.val_fraction, config.split_seed)
    on_device = device.type != "cpu" and (
        config.data_on_device == "yes"
        or (
            config.data_on_device == "auto"
            and (data.train_images.numel() + data.test_images.numel()) <= _DEVICE_DATA_LIMIT
        )
    )
    store = device if on_device else torch.device("cpu")
    return _Data(
        train_x=data.train_images.to(store),
        train_y=data.train_labels.to(store),
        eval_x=data.test_images.to(store),
        eval_y=data.test_labels.to(store),
        mean=torch.tensor(data.mean, dtype=torch.float32, device=device),
        std=torch.tensor(data.std, dtype=torch.float32, device=device),
        store=store,
        evaluated_on="validation" if config.val_fraction > 0 else "test",
        description=data.describe(),
    )


#: The precision of a mixed-precision run's block outputs, by ``--amp``.
_AMP_DTYPES = {"bf16": "bfloat16", "fp16": "float16"}


def refuse_imprecise_coefficients(build_model, config: TrainConfig, device: torch.device) -> None:
    """Before any data is loaded: a formula's coefficient that a mixed-precision run (bf16,
    fp16) would compute as infinite is a :class:`UsageError` (``build_model.check_precision``)."""
    amp = resolve_amp(config.amp, device)
    check_precision = getattr(build_model, "check_precision", None)  # a formula's coefficients
    if amp in _AMP_DTYPES and check_precision is not None:
        check_precision(_AMP_DTYPES[amp])


def _set_up(
    build_model: BuildModel,
    config: TrainConfig,
    out: Path,
    info: D.DistInfo,
    device: torch.device,
    dataset: Dataset | None,
    describe: dict | None,
) -> _Run:
    """Load and place the data, build the model (seeded), its optimizer and wrappers."""
    refuse_imprecise_coefficients(build_model, config, device)
    loaded = data_for_run(config, info, dataset)
    net = seeded_model(build_model, config, loaded.in_channels, loaded.num_classes, loaded.input_size)
    net = net.to(device)
    if config.channels_last:
        net = net.to(memory_format=torch.channels_last)
    if info.enabled and config.sync_bn:
        if device.type != "cuda":
            raise TrainError("--sync-bn needs CUDA devices")
        net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
    optimizer = make_optimizer(net, config)
    scaler = torch.amp.GradScaler(device.type) if resolve_amp(config.amp, device) == "fp16" else None
    seed_rank(config.seed, info)

    data = _place_data(config, loaded, device)
    del loaded
    steps = data.n_train // config.batch_size + (
        1 if data.n_train % config.batch_size >= info.world_size else 0
    )
    if steps == 0:
        raise TrainError(f"{data.n_train} training examples are fewer than the {info.world_size} ranks")

    model = D.wrap_model(net, info, device)
    average = WeightAverage(net, config.ema_decay) if config.ema_decay > 0 else None
    eval_model: nn.Module = average.model if average is not None else net
    if config.compile:
        model = torch.compile(model)
        eval_model = torch.compile(eval_model)
    return _Run(
        config=config,
        out=out,
        info=info,
        device=device,
        net=net,
        model=model,
        eval_model=eval_model,
        optimizer=optimizer,
        scaler=scaler,
        average=average,
        data=data,
        parameters=count_parameters(net),
        describe=describe,
        steps=steps,
    )


def restore_weights(run, checkpoint: dict) -> None:
    """The network's and the optimizer's state from ``checkpoint``, or a :class:`TrainError`
    saying the run directory holds another model (any run record with ``net``, ``optimizer``,
    ``out``)."""
    try:
        run.net.load_state_dict(checkpoint["model"])
        run.optimizer.load_state_dict(checkpoint["optimizer"])
    except (RuntimeError, ValueError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TrainError(
            f"{run.out / CHECKPOINT} does not fit this model ({first}); pass --overwrite to start over"
        ) from None


def restore_progress(run, checkpoint: dict) -> None:
    """This rank's RNG state, the epoch, history and times from ``checkpoint``."""
    rngs = checkpoint["rng"]
    set_rng(rngs[run.info.rank] if len(rngs) == run.info.world_size else rngs[0])
    run.epoch = int(checkpoint["epoch"])
    run.history = list(checkpoint["history"])
    run.elapsed = float(checkpoint["elapsed"])
    run.train_elapsed = float(checkpoint.get("train_elapsed", 0.0))


def _restore(run: _Run, checkpoint: dict) -> None:
    """Continue from ``checkpoint`` (every rank has it): weights, optimizer, RNG, history."""
    restore_weights(run, checkpoint)
    if run.scaler is not None and checkpoint.get("scaler"):
        run.scaler.load_state_dict(checkpoint["scaler"])
    if run.average is not None:
        run.average.load_state_dict(checkpoint["average"])
    restore_progress(run, checkpoint)


def _repeat_info(run: _Run) -> dict:
    """What it takes to repeat the run, beside its config."""
    return {
        "model": run.describe,
        "parameters": run.parameters,
        "dataset": run.data.description,
        "evaluated_on": run.data.evaluated_on,
        "world_size": run.info.world_size,
        "device": str(run.device),
        "device_name": _device_name(run.device),
        "amp": resolve_amp(run.config.amp, run.device),
        "versions": _versions(),
    }


def _write_run_files(run: _Run) -> None:
    """config.json, and metrics.jsonl rewritten from the history (a resumed run drops any line
    written after its checkpoint)."""
    if not run.info.is_main:
        return
    make_directory(run.out, "the run directory")
    config = run.config
    write_json(
        run.out / CONFIG,
        jsonable(
            {
                "config": config.to_dict(),
                **_repeat_info(run),
                "torch": torch.__version__,
                "milestone_epochs": milestone_epochs(config) if config.schedule == "step" else [],
            }
        ),
    )
    rewrite_metrics(run.out, run.history)


class _Bars:
    """The tqdm bars of a run (epochs, and batches within the epoch) when stderr is a terminal."""

    def __init__(self, run: _Run, enabled: bool):
        from tqdm import tqdm

        self._tqdm = tqdm
        self.enabled = enabled and run.info.is_main and sys.stderr.isatty()
        self.steps = run.steps
        self.epochs = tqdm(
            total=run.config.epochs,
            initial=run.epoch,
            desc="epochs",
            unit="ep",
            disable=not self.enabled,
            file=sys.stderr,
            dynamic_ncols=True,
        )
        self.batches = None

    def __enter__(self) -> _Bars:
        return self

    def __exit__(self, *exc) -> None:
        if self.batches is not None:
            self.batches.close()
        self.epochs.close()

    def epoch_start(self, epoch: int) -> None:
        if self.enabled:
            self.batches = self._tqdm(
                total=self.steps,
                desc=f"epoch {epoch + 1}",
                unit="batch",
                leave=False,
                file=sys.stderr,
                dynamic_ncols=True,
            )

    def step(self, step: int, loss: torch.Tensor, size: int, lr: float) -> None:
        if self.batches is not None:
            self.batches.update(1)
            if step % 25 == 0:
                self.batches.set_postfix(loss=f"{loss.item() / size:.3f}", lr=f"{lr:.3g}")

    def epoch_done(self) -> None:
        if self.batches is not None:
            self.batches.close()
            self.batches = None
        self.epochs.update(1)


class _DivergenceWatch:
    """Notices the first step whose loss is NaN or infinite without a host sync per step on a
    GPU (the flag stays on the device and is read every few steps); on the CPU every step."""

    def __init__(self, run: _Run, epoch: int):
        self.run, self.epoch = run, epoch
        self.every = 1 if run.device.type == "cpu" else _DIVERGENCE_CHECK_STEPS
        self.first_bad = torch.full((), -1, dtype=torch.int64, device=run.device)
        self.bad_loss = torch.zeros((), dtype=torch.float32, device=run.device)
        self.steps = torch.arange(run.steps, device=run.device)

    def see(self, step: int, loss: torch.Tensor, lr: float) -> None:
        first = ~torch.isfinite(loss) & (self.first_bad < 0)
        self.first_bad = torch.where(first, self.steps[step], self.first_bad)
        self.bad_loss = torch.where(first, loss.float(), self.bad_loss)
        if (step + 1) % self.every == 0 and not self.run.info.enabled:
            self.check(lr)

    def check(self, lr: float) -> None:
        flag = self.first_bad.clone()
        if self.run.info.enabled:
            import torch.distributed as dist

            # the earliest bad step over the ranks; -1 (none) must not win the minimum
            flag = torch.where(flag < 0, torch.full_like(flag, 2**62), flag)
            dist.all_reduce(flag, op=dist.ReduceOp.MIN)
            flag = torch.where(flag == 2**62, torch.full_like(flag, -1), flag)
        step = int(flag.item())
        if step < 0:
            return
        run = self.run
        value = float(self.bad_loss.item())  # this rank's: nan or inf when the bad step was its own
        kept = (
            f"the checkpoint of epoch {run.epoch} is kept in {run.out}"
            if run.epoch > 0
            else "no epoch finished, so there is no checkpoint"
        )
        raise TrainingDiverged(
            f"training diverged: the loss became {value if not math.isfinite(value) else 'not finite'} "
            f"at epoch {self.epoch + 1}, step {step + 1} of {run.steps} (lr {lr:.4g}); {kept}; "
            "try a smaller --lr or a longer --warmup-epochs",
            epoch=self.epoch + 1,
            step=step + 1,
            loss=value,
        )


def apply_lr(run, epoch: int, step: int) -> float:
    """The recipe's learning rate at ``step`` of ``epoch`` (of ``run.steps``), set on every
    parameter group of ``run.optimizer``, and returned."""
    lr = lr_at(run.config, epoch, step, run.steps)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    return lr


def _train_epoch(run: _Run, epoch: int, bars: _Bars) -> dict:
    """One pass over the training data; returns the epoch's record without evaluation."""
    config, info, device, data = run.config, run.info, run.device, run.data
    t0, c0 = time.perf_counter(), time.process_time()
    run.net.train()
    hw = (data.train_x.shape[2], data.train_x.shape[3])
    plan = epoch_plan(config, data.n_train, epoch, hw)
    order = plan.order.to(data.store)
    aug = plan.to(device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    watch = _DivergenceWatch(run, epoch)
    autocast = amp_context(config, device)
    B, seen, lr = config.batch_size, 0, config.lr
    bars.epoch_start(epoch)
    for step in range(run.steps):
        lr = apply_lr(run, epoch, step)
        g0 = step * B
        g1 = min(g0 + B, data.n_train)
        local = D.shard(g1 - g0, info)
        sl = slice(g0 + local.start, g0 + local.stop)
        idx = order[sl]
        x = data.train_x[idx].to(device, non_blocking=True)
        y = data.train_y[idx].to(device, non_blocking=True)
        x = augment_batch(x, aug.take(sl), config, data.mean, data.std, config.channels_last)
        run.optimizer.zero_grad(set_to_none=True)
        with autocast:
            logits = run.model(x)
        logits = logits.float()
        batch_loss = F.cross_entropy(logits, y, reduction="sum", label_smoothing=config.label_smoothing)
        # mean over the GLOBAL batch; DDP averages over ranks, hence the factor
        loss = batch_loss * (info.world_size / (g1 - g0))
        if run.scaler is not None:
            run.scaler.scale(loss).backward()
            run.scaler.step(run.optimizer)
            run.scaler.update()
        else:
            loss.backward()
            run.optimizer.step()
        if run.average is not None:
            run.average.update()
        batch_loss = batch_loss.detach()
        watch.see(step, batch_loss, lr)
        loss_sum += batch_loss.double()
        correct += (logits.detach().argmax(1) == y).sum()
        seen += g1 - g0
        bars.step(step, batch_loss, y.shape[0], lr)
    watch.check(lr)
    stats = torch.stack([loss_sum, correct.double()])
    D.all_reduce_sum(stats, info)
    tr_loss, tr_correct = stats.tolist()
    train_seconds = seconds_since(t0, device)
    return {
        "epoch": epoch + 1,
        "lr": lr,  # the last step's: a warm-up epoch logged its first step's 1e-6
        "train_loss": tr_loss / seen,
        "train_acc": tr_correct / seen,
        "test_loss": None,
        "test_acc": None,
        "val_loss": None,
        "val_acc": None,
        "seconds": train_seconds,
        "train_seconds": train_seconds,
        # CPU time of this process in the training phase: what other jobs on a shared machine
        # disturb far less than the wall time
        "train_cpu_seconds": time.process_time() - c0,
        "images_per_s": seen / train_seconds if train_seconds > 0 else None,
        "rebuild": _rebuild_record(run.net),
    }


def _rebuild_record(net: nn.Module) -> dict | None:
    """A reversible network's checks of its rebuilt states during the epoch (then cleared): the
    largest relative error per dtype, the segments recomputed because they drifted past the
    tolerance, and the anchor intervals now in use; None for other networks."""
    errors = getattr(net, "rebuild_errors", None)
    if not isinstance(errors, dict):
        return None
    recomputed = getattr(net, "recomputed_segments", {})
    record = {
        "errors": dict(errors),
        "recomputed_segments": dict(recomputed),
        "anchor_steps": dict(getattr(net, "anchor_steps", {})),
        "tolerance": dict(getattr(net, "anchor_tolerance", {})),
    }
    errors.clear()
    recomputed.clear()
    return record


def _rebuild_summary(history: list[dict]) -> dict | None:
    """The rebuild checks of a whole run (``summary.json``): the largest error, the segments
    recomputed, and the last anchor intervals, per dtype."""
    records = [r["rebuild"] for r in history if r.get("rebuild")]
    if not records:
        return None
    errors: dict = {}
    recomputed: dict = {}
    for r in records:
        for k, v in r["errors"].items():
            errors[k] = max(errors.get(k, 0.0), v)
        for k, v in r["recomputed_segments"].items():
            recomputed[k] = recomputed.get(k, 0) + v
    return {
        "largest_error": errors,
        "recomputed_segments": recomputed,
        "anchor_steps": records[-1]["anchor_steps"],
        "tolerance": records[-1]["tolerance"],
    }


def _evaluate_epoch(run: _Run, record: dict) -> None:
    """Evaluate on the run's evaluation set when the epoch calls for it; complete ``record``."""
    config = run.config
    epoch = record["epoch"]
    t0 = time.perf_counter()
    if epoch == config.epochs or epoch % config.eval_every == 0:
        loss, acc, _ = evaluate(
            run.eval_model,
            run.data.eval_x,
            run.data.eval_y,
            run.data.mean,
            run.data.std,
            config=config,
            device=run.device,
            info=run.info,
        )
        record[f"{run.eval_key}_loss"], record[f"{run.eval_key}_acc"] = loss, acc
    record["seconds"] = record["train_seconds"] + (time.perf_counter() - t0)
    record_epoch(run, record)


def record_epoch(run, record: dict) -> None:
    """Count the finished, evaluated epoch ``record`` in ``run`` (an image or a language run):
    the epochs done, the times, the history."""
    run.epoch = record["epoch"]
    run.elapsed += record["seconds"]
    run.train_elapsed += record["train_seconds"]
    run.history.append(record)


def _save_checkpoint(run: _Run, record: dict) -> None:
    """Append the epoch's metrics line, then write the checkpoint atomically (rank 0)."""
    config, info = run.config, run.info
    rngs = gather_rng(info)  # a collective: every rank takes part
    if not info.is_main:
        return
    append_metrics(run.out, record)
    ck = {
        "format": CHECKPOINT_FORMAT,
        "epoch": run.epoch,
        "model": run.net.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": {
            "kind": config.schedule,
            "last_epoch": run.epoch - 1,
            "note": "the lr is a pure function of (config, epoch, step)",
        },
        "scaler": run.scaler.state_dict() if run.scaler is not None else None,
        "average": run.average.state_dict() if run.average is not None else None,
        "rng": rngs,
        "data_order": {
            "scheme": "per-epoch torch.Generator seeded by splitmix(seed, epoch): order and augmentation",
            "seed": config.seed,
            "next_epoch": run.epoch,
            "next_generator_seed": epoch_seed(config.seed, run.epoch),
        },
        "config": config.to_dict(),
        "describe": jsonable(run.describe),
        "history": run.history,
        "elapsed": run.elapsed,
        "train_elapsed": run.train_elapsed,
        "world_size": info.world_size,
    }
    atomic_write(run.out / CHECKPOINT, lambda f: torch.save(ck, f))


def _log_start(run: _Run, quiet: bool) -> None:
    config, info, data = run.config, run.info, run.data
    if run.epoch > 0:
        log_line(info, quiet, f"resuming {run.out} after epoch {run.epoch} of {config.epochs}")
    shape = tuple(data.train_x.shape[1:])
    evaluated = f"{data.eval_x.shape[0]} {'validation' if run.eval_key == 'val' else 'test'}"
    log_line(
        info,
        quiet,
        f"training {run.parameters:,} parameters on {data.description['name']} "
        f"({data.n_train} train / {evaluated}, {shape}), "
        f"{config.recipe} recipe ({config.optimizer} lr {config.lr:g}), {config.epochs} epochs, "
        f"batch {config.batch_size}, "
        f"{run.device}" + (f" x{info.world_size}" if info.enabled else ""),
    )
    if run.eval_key == "val":
        log_line(
            info, quiet, "evaluating on a validation split of the training set; the test set is not used"
        )


def _log_epoch(run: _Run, record: dict, quiet: bool) -> None:
    key = run.eval_key
    acc = record[f"{key}_acc"]
    shown = "" if acc is None else f"  {key} loss {record[f'{key}_loss']:.4f} acc {100 * acc:.2f}%"
    log_line(
        run.info,
        quiet,
        f"epoch {record['epoch']}/{run.config.epochs}  lr {record['lr']:.4g}  train loss "
        f"{record['train_loss']:.4f} acc {100 * record['train_acc']:.2f}%{shown}  "
        f"{record['seconds']:.1f}s  {record['images_per_s'] or 0:.0f} img/s{_rebuild_phrase(record)}",
    )


def _rebuild_phrase(record: dict) -> str:
    """``  rebuilt float32 err 3.1e-06, 1 segment recomputed (anchors every 37)`` or ''."""
    rebuild = record.get("rebuild")
    if not rebuild or not rebuild["errors"]:
        return ""
    parts = []
    for dtype, error in rebuild["errors"].items():
        count = rebuild["recomputed_segments"].get(dtype, 0)
        redone = f", {count} segment{'s' if count != 1 else ''} recomputed" if count else ""
        anchors = rebuild["anchor_steps"].get(dtype)
        parts.append(f"{dtype} err {error:.2g}{redone} (anchors every {anchors})")
    return "  rebuilt " + "; ".join(parts)


def _finish(run: _Run, quiet: bool) -> dict:
    """The summary of a finished run; rank 0 writes it and the curves."""
    history, key = run.history, run.eval_key
    final = history[-1]
    best_acc, best_epoch = max(
        ((r[f"{key}_acc"], r["epoch"]) for r in history if r.get(f"{key}_acc") is not None),
        key=lambda t: t[0],
        default=(None, None),
    )
    total_images = sum(
        r["images_per_s"] * r["train_seconds"]
        for r in history
        if r.get("images_per_s") and r.get("train_seconds")
    )
    summary = {
        "finished": True,
        "epochs": run.config.epochs,
        "evaluated_on": run.data.evaluated_on,
        "final_test_acc": final.get("test_acc"),
        "final_test_loss": final.get("test_loss"),
        "final_val_acc": final.get("val_acc"),
        "final_val_loss": final.get("val_loss"),
        "final_train_acc": final["train_acc"],
        "final_train_loss": final["train_loss"],
        "best_test_acc": best_acc if key == "test" else None,
        "best_val_acc": best_acc if key == "val" else None,
        "best_epoch": best_epoch,
        "parameters": run.parameters,
        "wall_time_s": run.elapsed,
        "train_time_s": run.train_elapsed,
        "train_cpu_time_s": math.fsum(r.get("train_cpu_seconds") or 0.0 for r in history),
        "images_per_s": total_images / run.train_elapsed if run.train_elapsed > 0 else None,
        "world_size": run.info.world_size,
        "rebuild": _rebuild_summary(history),
        "device": str(run.device),
        "device_name": _device_name(run.device),
        "amp": resolve_amp(run.config.amp, run.device),
        "seed": run.config.seed,
        "recipe": run.config.recipe,
        "data": run.data.description["name"],
        "validation": run.data.description.get("validation"),
        "model": run.describe,
        "versions": _versions(),
        "config": run.config.to_dict(),
    }
    summary = jsonable(summary)
    if run.info.is_main:
        write_json(run.out / SUMMARY, summary)
        _plot_curves(run.out / CURVES, history, key, run.info, quiet)
    return summary


def _plot_curves(path: Path, history: list[dict], key: str, info: D.DistInfo, quiet: bool) -> None:
    try:
        # the object-oriented API: no pyplot, no change to the global backend (notebooks)
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except Exception:
        log_line(info, quiet, f"matplotlib is not installed: no {path.name}")
        return
    ep = [r["epoch"] for r in history]
    fig = Figure(figsize=(9, 3.4))
    FigureCanvasAgg(fig)
    a1, a2 = fig.subplots(1, 2)
    ev = [(r["epoch"], r[f"{key}_loss"], r[f"{key}_acc"]) for r in history if r.get(f"{key}_acc") is not None]
    label = "validation" if key == "val" else "test"
    a1.plot(ep, [r["train_loss"] for r in history], label="train")
    a2.plot(ep, [100 * r["train_acc"] for r in history], label="train")
    if ev:
        a1.plot([t[0] for t in ev], [t[1] for t in ev], "o-", label=label)
        a2.plot([t[0] for t in ev], [100 * t[2] for t in ev], "o-", label=label)
    a1.set_ylabel("loss")
    a2.set_ylabel("accuracy (%)")
    for a in (a1, a2):
        a.set_xlabel("epoch")
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
        a.grid(alpha=0.3)
        a.legend()
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))
