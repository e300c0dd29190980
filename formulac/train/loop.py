"""The training loop: one run of one model under one :class:`TrainConfig`.

Files written into ``out_dir`` (by rank 0 only):

``config.json``     the config, the model's description, the data set, torch's version
``metrics.jsonl``   one JSON line per epoch: epoch, lr, train_loss, train_acc, test_loss,
                    test_acc, seconds, images_per_s (accuracies are fractions in [0, 1])
``checkpoint.pt``   written atomically after every epoch: model, optimizer, scheduler and scaler
                    state, epoch, RNG states, history; ``resume=True`` continues from it and ends
                    with exactly the weights of an uninterrupted run
``summary.json``    written when the run is finished: final and best test accuracy, parameters,
                    wall time, images/s
``curves.png``      loss and accuracy per epoch, when matplotlib imports
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import distributed as D
from .data import Dataset, TrainError, load_dataset
from .recipes import TrainConfig, _epoch_seed, augment_batch, epoch_plan, lr_at, milestone_epochs

__all__ = [
    "CHECKPOINT",
    "CONFIG",
    "CURVES",
    "METRICS",
    "SUMMARY",
    "BuildModel",
    "evaluate",
    "load_checkpoint",
    "read_metrics",
    "train",
    "count_parameters",
]

CONFIG = "config.json"
METRICS = "metrics.jsonl"
CHECKPOINT = "checkpoint.pt"
SUMMARY = "summary.json"
CURVES = "curves.png"
_OUR_FILES = (CONFIG, METRICS, CHECKPOINT, SUMMARY, CURVES)

BuildModel = Callable[[int, int, int], nn.Module]

# knobs that may change between a run and its resumption without changing what it computes
RESUME_FREE = frozenset(
    {"device", "data_dir", "download", "compile", "workers", "threads", "eval_batch_size", "data_on_device"}
)

_CHECKPOINT_FORMAT = 1
_DEVICE_DATA_LIMIT = 4 * 1024**3  # keep data sets up to this size on the GPU


# --------------------------------------------------------------------------------------------
# small helpers


def count_parameters(model: nn.Module) -> int:
    """Number of distinct parameters (shared ones counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_write(path: Path, write: Callable[[object], None]) -> None:
    """Write via ``write(fileobj)`` to a temporary file in the same folder, fsync, then
    ``os.replace`` it onto ``path``: a reader sees the old file or the new one, never half."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


def _atomic_json(path: Path, obj) -> None:
    data = (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode()
    _atomic_write(path, lambda f: f.write(data))


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (str, int, float, bool)) or x is None:
        return x
    if isinstance(x, Path):
        return str(x)
    return repr(x)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Load a checkpoint written by :func:`train` (a directory means its checkpoint.pt).

    It loads with ``weights_only=True``: the file holds tensors and plain data only."""
    p = Path(path)
    if p.is_dir():
        p = p / CHECKPOINT
    try:
        ck = torch.load(p, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise TrainError(f"no checkpoint at {p}") from None
    except Exception as e:
        raise TrainError(f"{p}: cannot read checkpoint ({e})") from None
    if not isinstance(ck, dict) or ck.get("format") != _CHECKPOINT_FORMAT:
        raise TrainError(f"{p}: not a formulac checkpoint")
    return ck


def read_metrics(out_dir: str | os.PathLike) -> list[dict]:
    """The per-epoch records of a run's metrics.jsonl."""
    p = Path(out_dir) / METRICS
    if not p.is_file():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def _config_diff(saved: dict, config: TrainConfig) -> list[str]:
    now = config.to_dict()
    out = []
    for k in sorted(set(saved) | set(now)):
        if k in RESUME_FREE:
            continue
        a, b = saved.get(k), now.get(k)
        if (
            isinstance(a, (list, tuple))
            and isinstance(b, (list, tuple))
            and len(a) == len(b)
            and all(math.isclose(float(x), float(y), rel_tol=1e-12) for x, y in zip(a, b))
        ):
            continue
        if a != b:
            out.append(f"{k}: {a!r} (saved) vs {b!r} (now)")
    return out


# --------------------------------------------------------------------------------------------
# global state: determinism, threads, RNG


@contextmanager
def _global_settings(config: TrainConfig, device: torch.device):
    prev_det = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    prev_bench = torch.backends.cudnn.benchmark
    prev_cudnn_det = torch.backends.cudnn.deterministic
    prev_threads = torch.get_num_threads()
    try:
        if config.threads > 0:
            torch.set_num_threads(config.threads)
        if config.deterministic:
            if device.type == "cuda":
                os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
            torch.backends.cudnn.deterministic = True
        elif device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        yield
    finally:
        torch.use_deterministic_algorithms(prev_det, warn_only=prev_warn)
        torch.backends.cudnn.benchmark = prev_bench
        torch.backends.cudnn.deterministic = prev_cudnn_det
        if config.threads > 0:
            torch.set_num_threads(prev_threads)


def _get_rng() -> dict:
    np_state = np.random.get_state()
    py_state = random.getstate()
    rng = {
        "torch": torch.get_rng_state(),
        "numpy": [
            np_state[0],
            torch.from_numpy(np.asarray(np_state[1]).astype(np.int64)),
            int(np_state[2]),
            int(np_state[3]),
            float(np_state[4]),
        ],
        "python": [py_state[0], list(py_state[1]), py_state[2]],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return rng


def _set_rng(rng: dict) -> None:
    torch.set_rng_state(rng["torch"])
    n = rng["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), n[2], n[3], n[4]))
    p = rng["python"]
    random.setstate((p[0], tuple(p[1]), p[2]))
    if "cuda" in rng and torch.cuda.is_available():
        states = rng["cuda"]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)


# --------------------------------------------------------------------------------------------
# the output directory


def _prepare_out_dir(out: Path, config: TrainConfig, resume: bool, overwrite: bool):
    """Decide what to do with ``out``: ('fresh', None), ('resume', checkpoint) or
    ('finished', summary); raise TrainError when that would lose or mix up work."""
    summary_p, ckpt_p = out / SUMMARY, out / CHECKPOINT
    if out.exists() and not out.is_dir():
        raise TrainError(f"{out} exists and is not a directory")
    if overwrite and not resume:
        for name in _OUR_FILES:
            (out / name).unlink(missing_ok=True)
        return "fresh", None
    if summary_p.is_file():
        try:
            summary = json.loads(summary_p.read_text())
        except ValueError:
            raise TrainError(f"{summary_p}: broken summary; pass --overwrite to train again") from None
        if not resume:
            acc = summary.get("final_test_acc")
            acc_s = f" (final test accuracy {100 * acc:.2f}%)" if isinstance(acc, float) else ""
            raise TrainError(
                f"{out} holds a finished run{acc_s}; pass --overwrite to train "
                "again from scratch, or choose another output directory"
            )
        saved = summary.get("config")
        if saved is None and (out / CONFIG).is_file():
            saved = json.loads((out / CONFIG).read_text()).get("config")
        diff = _config_diff(saved or {}, config)
        if diff:
            raise TrainError(
                f"{out} holds a finished run with other settings:\n  "
                + "\n  ".join(diff)
                + "\npass --overwrite to train again, or "
                "choose another output directory"
            )
        return "finished", summary
    if ckpt_p.is_file():
        ck = load_checkpoint(ckpt_p)
        if not resume:
            raise TrainError(
                f"{out} holds an unfinished run (epoch {ck['epoch']} of "
                f"{ck['config'].get('epochs')}); pass --resume to continue it, or "
                "--overwrite to start over"
            )
        diff = _config_diff(ck["config"], config)
        if diff:
            raise TrainError(
                f"cannot resume {out} with other settings:\n  "
                + "\n  ".join(diff)
                + "\nresume with the same options, or pass --overwrite"
            )
        return "resume", ck
    if resume:
        raise TrainError(
            f"nothing to resume: no {CHECKPOINT} in {out}"
            + ("" if out.is_dir() else " (the directory does not exist)")
        )
    return "fresh", None


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
    a contiguous share and the sums are reduced."""
    info = info or D.DistInfo()
    was_training = model.training
    model.eval()
    sl = D.shard(images.shape[0], info)
    bs = config.eval_batch_size or max(config.batch_size, 256)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    amp = _autocast(config, device)
    for i in range(sl.start, sl.stop, bs):
        j = min(i + bs, sl.stop)
        x = images[i:j].to(device, non_blocking=True)
        y = labels[i:j].to(device, non_blocking=True)
        x = augment_batch(x, None, config, mean, std, config.channels_last)
        with amp:
            out = model(x)
        out = out.float()
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


def _autocast(config: TrainConfig, device: torch.device):
    if config.amp == "none":
        return nullcontext()
    dtype = torch.bfloat16 if config.amp == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


# --------------------------------------------------------------------------------------------
# the run


def _log(info: D.DistInfo, quiet: bool, msg: str) -> None:
    if info.is_main and not quiet:
        from tqdm import tqdm

        tqdm.write(msg, file=sys.stderr)


def _make_optimizer(net: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in net.parameters() if p.requires_grad]
    if not params:
        raise TrainError("the model has no trainable parameters")
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(
        params,
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        nesterov=config.nesterov and config.momentum > 0,
    )


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
    overwritten unless ``overwrite=True``.  Under torchrun the run is data-parallel (DDP), the
    global batch stays ``config.batch_size`` and rank 0 writes the files.

    ``dataset`` replaces loading ``config.data`` (limits still apply); ``on_epoch_end(record)``
    is called on every rank after each epoch's checkpoint.  Raises :class:`TrainError` (a
    ``ValueError``) for user errors, :class:`DatasetNotFound` when the data is missing.
    """
    config = TrainConfig.from_dict(config.to_dict()).validate()  # a private, checked copy
    info, device = D.setup(config.device)
    out = Path(out_dir)
    state, payload = _on_main(info, lambda: _prepare_out_dir(out, config, resume, overwrite))
    if state == "finished":
        _log(info, quiet, f"{out}: finished run, nothing to do")
        return payload

    with _global_settings(config, device):
        return _run(
            build_model, config, out, info, device, payload, progress, describe, quiet, dataset, on_epoch_end
        )


def _load_data(config: TrainConfig, info: D.DistInfo, dataset: Dataset | None) -> Dataset:
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


def _run(
    build_model,
    config: TrainConfig,
    out: Path,
    info: D.DistInfo,
    device: torch.device,
    checkpoint: dict | None,
    progress: bool,
    describe: dict | None,
    quiet: bool,
    dataset: Dataset | None,
    on_epoch_end,
) -> dict:
    from tqdm import tqdm

    wall_start = time.perf_counter()
    data = _load_data(config, info, dataset)

    # ---- model, optimizer, scaler
    _seed_everything(config.seed)  # the same initial weights for the same seed
    net = build_model(data.in_channels, data.num_classes, data.input_size)
    if not isinstance(net, nn.Module):
        raise TrainError(f"build_model returned {type(net).__name__}, not a torch.nn.Module")
    net = net.to(device)
    if config.channels_last:
        net = net.to(memory_format=torch.channels_last)
    if info.enabled and config.sync_bn:
        if device.type != "cuda":
            raise TrainError("--sync-bn needs CUDA devices")
        net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
    n_params = count_parameters(net)
    optimizer = _make_optimizer(net, config)
    scaler = torch.amp.GradScaler(device.type) if config.amp == "fp16" else None
    if info.enabled:
        # each rank its own stream for dropout and the like; the data order is global
        torch.manual_seed(config.seed + 7919 * info.rank)

    # ---- resume
    start_epoch, history, elapsed, train_elapsed = 0, [], 0.0, 0.0
    if checkpoint is not None:
        ck = checkpoint  # every rank has it (_on_main broadcast it)
        net.load_state_dict(ck["model"])
        optimizer.load_state_dict(ck["optimizer"])
        if scaler is not None and ck.get("scaler"):
            scaler.load_state_dict(ck["scaler"])
        rngs = ck["rng"]
        _set_rng(rngs[info.rank] if len(rngs) == info.world_size else rngs[0])
        start_epoch = int(ck["epoch"])
        history = list(ck["history"])
        elapsed = float(ck["elapsed"])
        train_elapsed = float(ck.get("train_elapsed", 0.0))
        del ck, checkpoint

    # ---- data placement
    on_device = device.type != "cpu" and (
        config.data_on_device == "yes"
        or (
            config.data_on_device == "auto"
            and (data.train_images.numel() + data.test_images.numel()) <= _DEVICE_DATA_LIMIT
        )
    )
    store = device if on_device else torch.device("cpu")
    train_x, train_y = data.train_images.to(store), data.train_labels.to(store)
    test_x, test_y = data.test_images.to(store), data.test_labels.to(store)
    mean = torch.tensor(data.mean, dtype=torch.float32, device=device)
    std = torch.tensor(data.std, dtype=torch.float32, device=device)
    n_train = train_x.shape[0]
    hw = (train_x.shape[2], train_x.shape[3])

    # ---- wrapping
    model = D.wrap_model(net, info, device)
    eval_model: nn.Module = net
    if config.compile:
        model = torch.compile(model)
        eval_model = torch.compile(net)

    # ---- files
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        _atomic_json(
            out / CONFIG,
            _jsonable(
                {
                    "config": config.to_dict(),
                    "model": describe,
                    "parameters": n_params,
                    "dataset": data.describe(),
                    "world_size": info.world_size,
                    "device": str(device),
                    "torch": torch.__version__,
                    "milestone_epochs": milestone_epochs(config) if config.schedule == "step" else [],
                }
            ),
        )
        lines = b"".join((json.dumps(r) + "\n").encode() for r in history)
        _atomic_write(out / METRICS, lambda f: f.write(lines))

    B = config.batch_size
    steps = n_train // B + (1 if n_train % B >= info.world_size else 0)
    if steps == 0:
        raise TrainError(f"{n_train} training examples are fewer than the {info.world_size} ranks")
    autocast = _autocast(config, device)
    use_bars = progress and info.is_main and not quiet and sys.stderr.isatty()
    best = max(
        ((r["test_acc"], r["epoch"]) for r in history if r.get("test_acc") is not None), default=(None, None)
    )
    if start_epoch > 0:
        _log(info, quiet, f"resuming {out} after epoch {start_epoch} of {config.epochs}")
    _log(
        info,
        quiet,
        f"training {n_params:,} parameters on {data.name} "
        f"({n_train} train / {test_x.shape[0]} test, {data.image_shape}), "
        f"{config.recipe} recipe, {config.epochs} epochs, batch {B}, "
        f"{device}" + (f" x{info.world_size}" if info.enabled else ""),
    )

    epoch_bar = tqdm(
        total=config.epochs,
        initial=start_epoch,
        desc="epochs",
        unit="ep",
        disable=not use_bars,
        file=sys.stderr,
        dynamic_ncols=True,
    )
    try:
        for epoch in range(start_epoch, config.epochs):
            t0 = time.perf_counter()
            net.train()
            plan = epoch_plan(config, n_train, epoch, hw)
            order = plan.order.to(store)
            aug = plan.to(device)
            loss_sum = torch.zeros((), dtype=torch.float64, device=device)
            correct = torch.zeros((), dtype=torch.int64, device=device)
            seen = 0
            lr0 = lr_at(config, epoch, 0, steps)
            batch_bar = tqdm(
                total=steps,
                desc=f"epoch {epoch + 1}",
                unit="batch",
                leave=False,
                disable=not use_bars,
                file=sys.stderr,
                dynamic_ncols=True,
            )
            for step in range(steps):
                lr = lr_at(config, epoch, step, steps)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                g0 = step * B
                g1 = min(g0 + B, n_train)
                local = D.shard(g1 - g0, info)
                sl = slice(g0 + local.start, g0 + local.stop)
                idx = order[sl]
                x = train_x[idx].to(device, non_blocking=True)
                y = train_y[idx].to(device, non_blocking=True)
                x = augment_batch(x, aug.take(sl), config, mean, std, config.channels_last)
                optimizer.zero_grad(set_to_none=True)
                with autocast:
                    logits = model(x)
                logits = logits.float()
                batch_loss = F.cross_entropy(
                    logits, y, reduction="sum", label_smoothing=config.label_smoothing
                )
                # mean over the GLOBAL batch; DDP averages over ranks, hence the factor
                loss = batch_loss * (info.world_size / (g1 - g0))
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    loss.backward()
                    optimizer.step()
                loss_sum += batch_loss.detach().double()
                correct += (logits.detach().argmax(1) == y).sum()
                seen += g1 - g0
                if use_bars:
                    batch_bar.update(1)
                    if step % 25 == 0:
                        batch_bar.set_postfix(loss=f"{batch_loss.item() / y.shape[0]:.3f}", lr=f"{lr:.3g}")
            batch_bar.close()
            stats = torch.stack([loss_sum, correct.double()])
            D.all_reduce_sum(stats, info)
            tr_loss, tr_correct = stats.tolist()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            train_seconds = time.perf_counter() - t0
            if not all(math.isfinite(v) for v in (tr_loss,)):
                raise TrainError(
                    f"training diverged in epoch {epoch + 1} (loss {tr_loss}); try a smaller --lr"
                )

            te_loss = te_acc = None
            last = epoch + 1 == config.epochs
            if last or (epoch + 1) % config.eval_every == 0:
                te_loss, te_acc, _ = evaluate(
                    eval_model, test_x, test_y, mean, std, config=config, device=device, info=info
                )
            seconds = time.perf_counter() - t0
            elapsed += seconds
            train_elapsed += train_seconds
            record = {
                "epoch": epoch + 1,
                "lr": lr0,
                "train_loss": tr_loss / seen,
                "train_acc": tr_correct / seen,
                "test_loss": te_loss,
                "test_acc": te_acc,
                "seconds": seconds,
                "train_seconds": train_seconds,
                "images_per_s": seen / train_seconds if train_seconds > 0 else None,
            }
            history.append(record)
            if te_acc is not None and (best[0] is None or te_acc > best[0]):
                best = (te_acc, epoch + 1)

            if info.is_main:
                with open(out / METRICS, "ab") as f:
                    f.write((json.dumps(record) + "\n").encode())
                    f.flush()
                    os.fsync(f.fileno())
            rngs = _gather_rng(info)
            if info.is_main:
                ck = {
                    "format": _CHECKPOINT_FORMAT,
                    "epoch": epoch + 1,
                    "model": net.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": {
                        "kind": config.schedule,
                        "last_epoch": epoch,
                        "note": "the lr is a pure function of (config, epoch, step)",
                    },
                    "scaler": scaler.state_dict() if scaler is not None else None,
                    "rng": rngs,
                    "data_order": {
                        "scheme": "per-epoch torch.Generator seeded by "
                        "splitmix(seed, epoch): order and augmentation",
                        "seed": config.seed,
                        "next_epoch": epoch + 1,
                        "next_generator_seed": _epoch_seed(config.seed, epoch + 1),
                    },
                    "config": config.to_dict(),
                    "history": history,
                    "elapsed": elapsed,
                    "train_elapsed": train_elapsed,
                    "world_size": info.world_size,
                }
                _atomic_write(out / CHECKPOINT, lambda f, ck=ck: torch.save(ck, f))
                del ck
            te = "" if te_acc is None else f"  test loss {te_loss:.4f} acc {100 * te_acc:.2f}%"
            _log(
                info,
                quiet,
                f"epoch {epoch + 1}/{config.epochs}  lr {lr0:.4g}  train loss "
                f"{record['train_loss']:.4f} acc {100 * record['train_acc']:.2f}%{te}  "
                f"{seconds:.1f}s  {record['images_per_s'] or 0:.0f} img/s",
            )
            epoch_bar.update(1)
            if on_epoch_end is not None:
                on_epoch_end(dict(record))
    finally:
        epoch_bar.close()

    final = history[-1]
    total_images = sum(
        r["images_per_s"] * r["train_seconds"]
        for r in history
        if r.get("images_per_s") and r.get("train_seconds")
    )
    summary = {
        "finished": True,
        "epochs": config.epochs,
        "final_test_acc": final["test_acc"],
        "final_test_loss": final["test_loss"],
        "final_train_acc": final["train_acc"],
        "final_train_loss": final["train_loss"],
        "best_test_acc": best[0],
        "best_epoch": best[1],
        "parameters": n_params,
        "wall_time_s": elapsed,
        "train_time_s": train_elapsed,
        "images_per_s": total_images / train_elapsed if train_elapsed > 0 else None,
        "world_size": info.world_size,
        "device": str(device),
        "seed": config.seed,
        "data": data.name,
        "model": describe,
        "config": config.to_dict(),
    }
    summary = _jsonable(summary)
    if info.is_main:
        _atomic_json(out / SUMMARY, summary)
        _plot_curves(out / CURVES, history, info, quiet)
        _log(
            info,
            quiet,
            f"done: final test accuracy {100 * final['test_acc']:.2f}% "
            f"(best {100 * best[0]:.2f}% at epoch {best[1]}), "
            f"{elapsed:.1f}s; this call {time.perf_counter() - wall_start:.1f}s",
        )
    D.barrier(info)
    return summary


def _gather_rng(info: D.DistInfo) -> list[dict]:
    mine = _get_rng()
    if not info.enabled:
        return [mine]
    import torch.distributed as dist

    box: list = [None] * info.world_size
    dist.all_gather_object(box, mine)
    return box


def _plot_curves(path: Path, history: list[dict], info: D.DistInfo, quiet: bool) -> None:
    try:
        # the object-oriented API: no pyplot, no change to the global backend (notebooks)
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except Exception:
        _log(info, quiet, f"matplotlib is not installed: no {path.name}")
        return
    ep = [r["epoch"] for r in history]
    fig = Figure(figsize=(9, 3.4))
    FigureCanvasAgg(fig)
    a1, a2 = fig.subplots(1, 2)
    te = [(r["epoch"], r["test_loss"], r["test_acc"]) for r in history if r.get("test_acc") is not None]
    a1.plot(ep, [r["train_loss"] for r in history], label="train")
    a2.plot(ep, [100 * r["train_acc"] for r in history], label="train")
    if te:
        a1.plot([t[0] for t in te], [t[1] for t in te], "o-", label="test")
        a2.plot([t[0] for t in te], [100 * t[2] for t in te], "o-", label="test")
    a1.set_ylabel("loss")
    a2.set_ylabel("accuracy (%)")
    for a in (a1, a2):
        a.set_xlabel("epoch")
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
        a.grid(alpha=0.3)
        a.legend()
    fig.tight_layout()
    _atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))
