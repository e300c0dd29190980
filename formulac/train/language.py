"""Training a language model: next-token cross-entropy on a text corpus (``text:`` data).

The model maps a ``(B, T)`` int64 tensor of token ids to ``(B, T, V)`` logits and says its
context length as its ``context`` attribute; ``build_model(1, vocab_size, context)`` builds it
(the factory of an image run receives ``(in_channels, num_classes, input_size)``).

An epoch is ``config.epoch_tokens`` training tokens: ``ceil(epoch_tokens / (batch_size *
context))`` steps, each on ``batch_size`` windows of ``context + 1`` tokens drawn uniformly from
the training part with a generator seeded by (seed, epoch), so a run resumed from its checkpoint
draws exactly what an uninterrupted run would. The learning rate follows the recipe's warm-up
and schedule per step (:func:`~formulac.train.recipes.lr_at`); AdamW, the gradient's norm clipped
to ``config.grad_clip``. After every epoch the model is evaluated on a fixed set of windows of
the validation part (:func:`~formulac.train.text.evaluation_starts`): ``val_loss`` (nats per
token), ``val_bits_per_byte`` and ``val_perplexity``. At the end the test part is evaluated once
the same way.

Files of the run directory: those of an image run (config.json, metrics.jsonl, checkpoint.pt,
summary.json) plus ``vocabulary.json`` (the tokenisation, for :func:`generate` and
``formulac sample``).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..files import atomic_write, make_directory
from . import distributed as D
from .errors import TrainError, TrainingDiverged
from .loop import (
    amp_context,
    apply_lr,
    count_parameters,
    log_line,
    make_optimizer,
    open_run,
    record_epoch,
    refuse_imprecise_coefficients,
    restore_progress,
    restore_weights,
    seeded_model,
)
from .recipes import TrainConfig, resolve_amp
from .rundir import (
    CHECKPOINT,
    CHECKPOINT_FORMAT,
    CONFIG,
    SUMMARY,
    append_metrics,
    clear_run_files,
    jsonable,
    rewrite_metrics,
    write_json,
)
from .runtime import gather_rng, global_settings, seconds_since, seed_rank
from .text import TextCorpus, evaluation_starts, load_corpus, random_starts, windows

__all__ = ["VOCABULARY", "evaluate_language", "generate", "train_language"]

VOCABULARY = "vocabulary.json"
_LN2 = math.log(2.0)


def _window_seed(seed: int, epoch: int) -> int:
    """A well-mixed 63-bit seed per (seed, epoch) (splitmix64), for the windows of an epoch."""
    z = (seed * 0x9E3779B97F4A7C15 + (epoch + 1) * 0xD1B54A32D192ED03) & (2**64 - 1)
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & (2**64 - 1)
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & (2**64 - 1)
    return (z ^ (z >> 31)) & (2**63 - 1)


@torch.no_grad()
def evaluate_language(
    model: nn.Module,
    corpus: TextCorpus,
    split: str,
    context: int,
    *,
    config: TrainConfig,
    device: torch.device,
    info: D.DistInfo | None = None,
) -> dict:
    """``loss`` (mean nats per token), ``bits_per_byte``, ``perplexity`` and ``tokens`` of
    ``model`` on the fixed evaluation windows of the part ``split``."""
    info = info or D.DistInfo()
    was_training = model.training
    model.eval()
    part = corpus.part(split)
    starts = evaluation_starts(len(part), context, config.eval_windows)
    mine = starts[D.shard(len(starts), info)]
    byte_lengths = corpus.byte_lengths().to(device)
    sums = torch.zeros(3, dtype=torch.float64, device=device)  # nats, tokens, bytes
    batch = config.eval_batch_size or config.batch_size
    amp = amp_context(config, device)
    for i in range(0, len(mine), batch):
        x, y = windows(part, mine[i : i + batch], context)
        x, y = x.to(device), y.to(device)
        with amp:
            logits = model(x)
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum")
        sums += torch.stack(
            [loss.double(), torch.tensor(float(y.numel()), device=device).double(), byte_lengths[y].sum()]
        )
    D.all_reduce_sum(sums, info)
    model.train(was_training)
    nats, tokens, nbytes = sums.tolist()
    loss = nats / tokens
    return {
        "loss": loss,
        "bits_per_byte": nats / _LN2 / nbytes,
        "perplexity": math.exp(min(loss, 700.0)),
        "tokens": int(tokens),
    }


@dataclass
class _LanguageRun:
    config: TrainConfig
    out: Path
    info: D.DistInfo
    device: torch.device
    corpus: TextCorpus
    context: int
    net: nn.Module
    model: nn.Module
    optimizer: torch.optim.Optimizer
    parameters: int
    describe: dict | None
    steps: int
    epoch: int = 0
    history: list[dict] = field(default_factory=list)
    elapsed: float = 0.0
    train_elapsed: float = 0.0


def train_language(
    build_model: Callable[[int, int, int], nn.Module],
    config: TrainConfig,
    out_dir: str | os.PathLike,
    resume: bool = False,
    progress: bool = True,
    *,
    overwrite: bool = False,
    describe: dict | None = None,
    quiet: bool = False,
    corpus: TextCorpus | None = None,
    on_epoch_end: Callable[[dict], None] | None = None,
) -> dict:
    """Train a language model on ``config.data`` (``text:...``) and return its summary.

    Run directories, resuming, ``overwrite`` and ``on_epoch_end`` behave as in
    :func:`formulac.train.train`. Raises :class:`TrainError` for user errors and
    :class:`TrainingDiverged` when the loss stops being finite."""
    config, info, device, out, state, payload = open_run(config, out_dir, resume, overwrite, describe)
    if state == "finished":
        return payload
    with global_settings(config, device):
        run = _set_up(build_model, config, out, info, device, corpus, describe)
        if state == "overwrite" and info.is_main:
            clear_run_files(out)
        if payload is not None:
            _restore(run, payload)
            del payload
        _write_run_files(run)
        log_line(run.info, quiet, _start_line(run))
        bar = _bar(run, progress and not quiet)
        try:
            for epoch in range(run.epoch, config.epochs):
                record = _train_epoch(run, epoch, bar)
                _evaluate_epoch(run, record)
                _save_checkpoint(run, record)
                log_line(
                    run.info,
                    quiet,
                    f"epoch {record['epoch']}/{config.epochs}  lr {record['lr']:.4g}  train loss "
                    f"{record['train_loss']:.4f}  val loss {record['val_loss']:.4f} "
                    f"({record['val_bits_per_byte']:.4f} bits/byte)  {record['seconds']:.1f}s  "
                    f"{record['tokens_per_s']:.0f} tok/s",
                )
                if on_epoch_end is not None:
                    on_epoch_end(dict(record))
        finally:
            if bar is not None:
                bar.close()
        summary = _finish(run)
    log_line(
        run.info,
        quiet,
        f"done: final validation loss {summary['final_val_loss']:.4f} "
        f"({summary['final_val_bits_per_byte']:.4f} bits/byte), test loss {summary['final_test_loss']:.4f}",
    )
    D.barrier(info)
    return summary


def _start_line(run: _LanguageRun) -> str:
    config, corpus = run.config, run.corpus
    resumed = f"resuming after epoch {run.epoch}; " if run.epoch else ""
    train_tokens = corpus.splits["train"][1] - corpus.splits["train"][0]
    return (
        f"{resumed}training {run.parameters:,} parameters on {corpus.path} ({corpus.tokenization}, "
        f"vocabulary {corpus.vocab_size}, {train_tokens:,} training tokens), context {run.context}, "
        f"{config.recipe} recipe, {config.epochs} epochs of {run.steps} steps x {config.batch_size} windows, "
        f"{run.device}" + (f" x{run.info.world_size}" if run.info.enabled else "")
    )


def _bar(run: _LanguageRun, enabled: bool):
    if not (enabled and run.info.is_main and sys.stderr.isatty()):
        return None
    from tqdm import tqdm

    total = run.steps * run.config.epochs
    return tqdm(total=total, initial=run.steps * run.epoch, unit="step", file=sys.stderr, dynamic_ncols=True)


def _set_up(build_model, config, out, info, device, corpus, describe) -> _LanguageRun:
    if corpus is None:
        corpus = load_corpus(config.data, config.tokens)
    elif corpus.tokenization != config.tokens:
        raise TrainError(f"the corpus is tokenised as {corpus.tokenization}, the config says {config.tokens}")
    refuse_imprecise_coefficients(build_model, config, device)
    net = seeded_model(build_model, config, 1, corpus.vocab_size, 0)
    context = getattr(net, "context", None)
    if not isinstance(context, int) or context < 1:
        raise TrainError(
            f"{type(net).__name__} has no context length (a positive int attribute 'context'): "
            "text data needs a language-model backbone such as --backbone gpt"
        )
    corpus.check_context(context)
    vocab = getattr(net, "vocab_size", None)
    if isinstance(vocab, int) and vocab < corpus.vocab_size:
        # token ids at or above the embedding's size would fail deep in torch.embedding
        raise TrainError(
            f"{type(net).__name__} has a vocabulary of {vocab} tokens, smaller than the data's "
            f"{corpus.vocab_size}: leave vocab_size at 0 (the data's) or give at least {corpus.vocab_size}"
        )
    net = net.to(device)
    optimizer = make_optimizer(net, config)
    seed_rank(config.seed, info)
    steps = max(1, math.ceil(config.epoch_tokens / (config.batch_size * context)))
    if config.batch_size < info.world_size:
        raise TrainError(f"--batch-size {config.batch_size} is smaller than the {info.world_size} ranks")
    model = D.wrap_model(net, info, device)
    if config.compile:
        model = torch.compile(model)
    return _LanguageRun(
        config=config,
        out=out,
        info=info,
        device=device,
        corpus=corpus,
        context=context,
        net=net,
        model=model,
        optimizer=optimizer,
        parameters=count_parameters(net),
        describe=describe,
        steps=steps,
    )


def _restore(run: _LanguageRun, checkpoint: dict) -> None:
    restore_weights(run, checkpoint)
    restore_progress(run, checkpoint)


def _vocabulary_record(corpus: TextCorpus) -> dict:
    return {
        "tokens": corpus.tokenization,
        "vocabulary": None if corpus.vocabulary is None else list(corpus.vocabulary),
    }


def _write_run_files(run: _LanguageRun) -> None:
    if not run.info.is_main:
        return
    make_directory(run.out, "the run directory")
    write_json(
        run.out / CONFIG,
        jsonable(
            {
                "config": run.config.to_dict(),
                "objective": "language",
                "model": run.describe,
                "parameters": run.parameters,
                "context": run.context,
                "dataset": run.corpus.describe(),
                "evaluated_on": "validation",
                "world_size": run.info.world_size,
                "device": str(run.device),
                "amp": resolve_amp(run.config.amp, run.device),
                "torch": torch.__version__,
            }
        ),
    )
    write_json(run.out / VOCABULARY, _vocabulary_record(run.corpus))
    rewrite_metrics(run.out, run.history)


def _train_epoch(run: _LanguageRun, epoch: int, bar) -> dict:
    config, info, device = run.config, run.info, run.device
    t0, c0 = time.perf_counter(), time.process_time()
    run.net.train()
    part = run.corpus.part("train")
    generator = torch.Generator().manual_seed(_window_seed(config.seed, epoch))
    local = D.shard(config.batch_size, info)
    autocast = amp_context(config, device)
    params = [p for p in run.net.parameters() if p.requires_grad]
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    lr = config.lr
    for step in range(run.steps):
        lr = apply_lr(run, epoch, step)
        starts = random_starts(part, config.batch_size, run.context, generator)[local]
        x, y = windows(part, starts, run.context)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        run.optimizer.zero_grad(set_to_none=True)
        with autocast:
            logits = run.model(x)
        total = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum")
        # the mean over the GLOBAL batch's tokens; DDP averages over the ranks, hence the factor
        loss = total * (info.world_size / (config.batch_size * run.context))
        if not torch.isfinite(loss):
            raise TrainingDiverged(
                f"training diverged: the loss became {loss.item()} at epoch {epoch + 1}, step "
                f"{step + 1} of {run.steps} (lr {lr:.4g}); try a smaller --lr or a longer --warmup-epochs",
                epoch=epoch + 1,
                step=step + 1,
                loss=float(loss.item()),
            )
        loss.backward()
        if config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
        run.optimizer.step()
        loss_sum += total.detach().double()
        if bar is not None:
            bar.update(1)
            if step % 10 == 0:
                bar.set_postfix(loss=f"{total.item() / y.numel():.3f}", lr=f"{lr:.3g}")
    stats = loss_sum.reshape(1)
    D.all_reduce_sum(stats, info)
    tokens = run.steps * config.batch_size * run.context
    seconds = seconds_since(t0, device)
    return {
        "epoch": epoch + 1,
        "lr": lr,  # the last step's: a warm-up epoch logged its first step's 1e-6
        "train_loss": stats.item() / tokens,
        "val_loss": None,
        "val_bits_per_byte": None,
        "val_perplexity": None,
        "seconds": seconds,
        "train_seconds": seconds,
        "train_cpu_seconds": time.process_time() - c0,
        "tokens": tokens,
        "tokens_per_s": tokens / seconds if seconds > 0 else None,
    }


def _evaluate_epoch(run: _LanguageRun, record: dict) -> None:
    t0 = time.perf_counter()
    result = evaluate_language(
        run.net, run.corpus, "val", run.context, config=run.config, device=run.device, info=run.info
    )
    record["val_loss"] = result["loss"]
    record["val_bits_per_byte"] = result["bits_per_byte"]
    record["val_perplexity"] = result["perplexity"]
    record["seconds"] = record["train_seconds"] + (time.perf_counter() - t0)
    record_epoch(run, record)


def _save_checkpoint(run: _LanguageRun, record: dict) -> None:
    rngs = gather_rng(run.info)  # a collective: every rank takes part
    if not run.info.is_main:
        return
    append_metrics(run.out, record)
    ck = {
        "format": CHECKPOINT_FORMAT,
        "objective": "language",
        "epoch": run.epoch,
        "model": run.net.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "rng": rngs,
        "data_order": {
            "scheme": "per-epoch torch.Generator seeded by splitmix(seed, epoch): window starts",
            "seed": run.config.seed,
            "next_epoch": run.epoch,
        },
        "config": run.config.to_dict(),
        "describe": jsonable(run.describe),
        "context": run.context,
        "history": run.history,
        "elapsed": run.elapsed,
        "train_elapsed": run.train_elapsed,
        "world_size": run.info.world_size,
    }
    atomic_write(run.out / CHECKPOINT, lambda f: torch.save(ck, f))


def _finish(run: _LanguageRun) -> dict:
    history = run.history
    final = history[-1]
    best = min(history, key=lambda r: r["val_loss"])
    test = evaluate_language(
        run.net, run.corpus, "test", run.context, config=run.config, device=run.device, info=run.info
    )
    summary = jsonable(
        {
            "finished": True,
            "objective": "language",
            "metric": "val_loss",
            "direction": "minimize",
            "epochs": run.config.epochs,
            "evaluated_on": "validation",
            "final_val_loss": final["val_loss"],
            "final_val_bits_per_byte": final["val_bits_per_byte"],
            "final_val_perplexity": final["val_perplexity"],
            "best_val_loss": best["val_loss"],
            "best_epoch": best["epoch"],
            "final_test_loss": test["loss"],
            "final_test_bits_per_byte": test["bits_per_byte"],
            "final_test_perplexity": test["perplexity"],
            "final_train_loss": final["train_loss"],
            "parameters": run.parameters,
            "context": run.context,
            "vocab_size": run.corpus.vocab_size,
            "wall_time_s": run.elapsed,
            "train_time_s": run.train_elapsed,
            "train_cpu_time_s": math.fsum(r.get("train_cpu_seconds") or 0.0 for r in history),
            "tokens_per_s": math.fsum(r["tokens"] for r in history) / run.train_elapsed
            if run.train_elapsed > 0
            else None,
            "world_size": run.info.world_size,
            "device": str(run.device),
            "amp": resolve_amp(run.config.amp, run.device),
            "seed": run.config.seed,
            "recipe": run.config.recipe,
            "data": run.corpus.describe(),
            "model": run.describe,
            "config": run.config.to_dict(),
        }
    )
    if run.info.is_main:
        write_json(run.out / SUMMARY, summary)
    return summary


# --------------------------------------------------------------------------------------------
# sampling


@torch.no_grad()
def generate(
    model: nn.Module,
    prompt: list[int],
    tokens: int,
    *,
    context: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
) -> list[int]:
    """``tokens`` new token ids after ``prompt``: each drawn from the softmax of the last
    position's logits divided by ``temperature`` (0: the most likely token), restricted to the
    ``top_k`` most likely when given; the model sees at most its last ``context`` tokens."""
    if not prompt:
        raise TrainError("the prompt is empty: give at least one character")
    if not 0 <= temperature < math.inf:  # nan and inf would reach torch.multinomial as nan
        raise TrainError(f"--temperature must be a finite number, not negative, not {temperature}")
    if top_k is not None and top_k < 1:
        raise TrainError(f"--top-k must be at least 1, not {top_k}")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    ids = torch.tensor([prompt], dtype=torch.int64, device=device)
    for _ in range(tokens):
        logits = model(ids[:, -context:])[0, -1].float()
        if temperature == 0:
            nxt = logits.argmax().reshape(1)
        else:
            logits = logits / temperature
            if top_k is not None and top_k < logits.numel():
                cut = torch.topk(logits, top_k).values[-1]
                logits = logits.masked_fill(logits < cut, float("-inf"))
            probs = torch.softmax(logits, dim=-1)
            nxt = torch.multinomial(probs.cpu(), 1, generator=generator).to(device)
        ids = torch.cat([ids, nxt.reshape(1, 1)], dim=1)
    model.train(was_training)
    return ids[0, len(prompt) :].tolist()


def read_vocabulary(run_dir: str | os.PathLike) -> dict:
    """The tokenisation a language run recorded (``vocabulary.json``)."""
    path = Path(run_dir) / VOCABULARY
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError):
        raise TrainError(f"{run_dir} holds no language-model run (no {VOCABULARY})") from None
    except (OSError, ValueError) as exc:  # unreadable, not UTF-8, not JSON
        raise TrainError(f"{run_dir}: cannot read {VOCABULARY} ({exc})") from None
    if not isinstance(record, dict):
        raise TrainError(f"{run_dir}: {VOCABULARY} is not a JSON object")
    return record


def vocabulary_codec(record: dict) -> tuple[Callable[[str], list[int]], Callable[[list[int]], str]]:
    """(encode, decode) of a recorded tokenisation."""
    vocab = record.get("vocabulary")
    if vocab is None:
        return (lambda text: list(text.encode("utf-8"))), (
            lambda ids: bytes(int(i) for i in ids).decode("utf-8", errors="replace")
        )
    dummy = TextCorpus("", "", "chars", np.zeros(0, dtype=np.uint16), tuple(vocab), {})
    return dummy.encode, dummy.decode
