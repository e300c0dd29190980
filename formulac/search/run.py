"""``formulac search`` / ``formulac.search(...)``: check the request, open the study, run the
workers, write the outputs, confirm the winners.

Everything the user typed is checked before the study is touched, so a mistake never writes
to a stored study. Worker processes get the request itself (plain, picklable values) and
rebuild the space from it.
"""

from __future__ import annotations

import multiprocessing
import os
import secrets
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..errors import UsageError
from ..files import make_directory
from ..limits import DEFAULT_BACKBONE, DEFAULT_MEMORY_MODE
from .engine import (
    STUDY_FILE,
    StudyOptions,
    close_storage,
    open_storage,
    open_study,
    progress_printer,
    run_worker,
)
from .metrics import SearchMetric, default_metric, get_metric
from .objective import Limits, Objective
from .properties import parse_requirements
from .strategies import check_pruner, resolve_sampler, sampler_choices

__all__ = ["SearchRequest", "run_search"]

#: The deepest analysis a search runs per candidate (the leaderboard keeps every block weight).
MAX_ANALYSIS_DEPTH = 1000


@dataclass(frozen=True)
class SearchRequest:
    """Everything a search needs, as plain values (a worker process receives a copy)."""

    files: tuple[str, ...]
    space: tuple[str, ...] | Mapping = ()
    require: tuple[str, ...] = ()
    bindings: Mapping = field(default_factory=dict)
    backbone_kwargs: Mapping = field(default_factory=lambda: {"backbone": DEFAULT_BACKBONE})
    config: object = None  # TrainConfig of the search's training runs
    options: StudyOptions = None  # type: ignore[assignment]
    workers: int = 1
    limits: Limits = field(default_factory=Limits)
    analysis_depth: int = 10
    confirm: int = 0
    seeds: tuple[int, ...] = (0, 1, 2)
    baseline: str | None = None
    # training settings of the confirmation that differ from the search's (confirm.CONFIRM_TRAIN_KEYS)
    confirm_train: Mapping = field(default_factory=dict)
    trainer: Callable | None = None  # injected instead of training (tests, custom objectives)
    objective: str | None = None  # val_accuracy | val_loss (default: val_loss for text: data)
    progress: bool = True
    quiet: bool = False
    origin: str = ""  # the command line, for best.rec's header

    def validate(self) -> None:
        o = self.options
        if not self.files:
            raise UsageError("search: give at least one formula file")
        if o.trials < 1:
            raise UsageError(f"--trials must be at least 1, not {o.trials}")
        if self.workers < 1:
            raise UsageError(f"--workers must be at least 1, not {self.workers}")
        if o.sampler not in sampler_choices():
            raise UsageError(f"--sampler must be one of {', '.join(sampler_choices())}, not {o.sampler!r}")
        check_pruner(o.pruner)
        if o.heartbeat < 1 or (o.grace is not None and o.grace <= o.heartbeat):
            raise UsageError("--heartbeat must be at least 1 second, and the grace period longer than it")
        if not 1 <= self.analysis_depth <= MAX_ANALYSIS_DEPTH:
            raise UsageError(
                f"--analysis-depth must be between 1 and {MAX_ANALYSIS_DEPTH} (every candidate is "
                f"analysed before it trains), not {self.analysis_depth}"
            )
        if self.confirm < 0:
            raise UsageError("--confirm must not be negative")
        if self.confirm > o.trials:
            raise UsageError(
                f"--confirm {self.confirm} asks for more candidates than the study's {o.trials} trials"
            )
        if self.confirm and not self.baseline:
            raise UsageError("--confirm needs --baseline FILE (the formula to beat)")
        if self.confirm and len(self.seeds) < 2:
            raise UsageError("--confirm needs at least 2 seeds for its significance tests (--seeds 3)")
        if self.confirm_train and not self.confirm:
            raise UsageError(
                "--confirm-epochs and --confirm-limit-train set the confirmation's training: they need --confirm K"
            )
        if self.confirm and self.trainer is not None and self.config is None:
            raise UsageError("--confirm trains networks: it needs a training configuration")
        if self.confirm and self.config is not None:
            from .confirm import confirmation_config

            confirmation_config(self.config, self.confirm_train)  # its mistakes, before the study
        data = getattr(self.config, "data", None) or ""
        text = data.strip().lower().startswith("text:")
        if self.metric.name == "val_accuracy" and text:
            raise UsageError(
                "--objective val_accuracy: a language model on text data has no accuracy; use val_loss"
            )
        if self.confirm and self.metric.name == "val_loss" and not text:
            raise UsageError(
                "--confirm with --objective val_loss compares the test loss of language models "
                "(--data text:PATH); on image data it compares test accuracy: use --objective val_accuracy"
            )

    @property
    def metric(self) -> SearchMetric:
        """What the search optimises: ``objective``, else the data's default."""
        if self.objective is not None:
            return get_metric(self.objective)
        return default_metric(getattr(self.config, "data", None))


class Prepared:
    """The request, checked and parsed: space, requirements, settings."""

    def __init__(self, request: SearchRequest):
        from ..formula import load_bound_recurrences
        from .space import build_space

        request.validate()
        self.request = request
        recs = load_bound_recurrences(list(request.files), dict(request.bindings))
        kwargs = dict(request.backbone_kwargs)
        # the memory mode is checked per candidate (Objective), not per file or backbone
        kwargs.pop("memory", None)
        backbone = kwargs.get("backbone", DEFAULT_BACKBONE)
        fixed = {
            k: v
            for k, v in kwargs.items()
            if k not in ("backbone", "transition", "num_classes", "in_channels")
        }
        self.space = build_space(recs, list(request.files), request.space, backbone, fixed)
        self.sampler = resolve_sampler(request.options.sampler, self.space)
        self.requirements = parse_requirements(list(request.require))
        self.baseline = None
        if request.baseline:
            self.baseline = load_bound_recurrences([request.baseline], {})[0]
            if self.baseline.free_symbols:
                raise UsageError(
                    f"--baseline {request.baseline}: its symbols {', '.join(self.baseline.free_symbols)} have no value"
                )
        _check_backbone(self.space, kwargs)
        if request.trainer is None:
            _check_networks(self.space, kwargs)
        self.settings = self._settings()

    def _settings(self) -> dict:
        r = self.request
        train = None
        if r.config is not None:
            from ..train.loop import RESUME_FREE

            train = {k: v for k, v in r.config.to_dict().items() if k not in RESUME_FREE}
        return {
            "objective": r.metric.name,
            "trainer": None
            if r.trainer is None
            else f"{r.trainer.__module__}.{getattr(r.trainer, '__qualname__', type(r.trainer).__name__)}",
            "train": train,
            "backbone": {k: v for k, v in dict(r.backbone_kwargs).items() if v is not None},
            "require": [q.text for q in self.requirements],
            "max_params": r.limits.max_params,
            "max_macs": r.limits.max_macs,
            "analysis_depth": r.analysis_depth,
            "pruner": r.options.pruner,
        }

    def objective(self, worker: int) -> Objective:
        r = self.request
        trainer = r.trainer
        sizer = None
        if trainer is None:
            from .training import FormulaTrainer

            trainer = FormulaTrainer(r.config, r.backbone_kwargs, progress=False, quiet=True, metric=r.metric)
            sizer = trainer.size
        elif hasattr(trainer, "size"):
            sizer = trainer.size
        if r.limits.any and sizer is None:
            sizer = _default_sizer(r.backbone_kwargs)
        grid = self._grid()
        return Objective(
            self.space,
            self.requirements,
            r.limits,
            trainer,
            Path(r.options.out) / "trials",
            r.analysis_depth,
            grid,
            slots=lambda trial: True,
            sizer=sizer,
            epochs=r.options.epochs,
            memory=r.backbone_kwargs.get("memory", DEFAULT_MEMORY_MODE),
            metric=r.metric,
        )

    def _grid(self) -> bool:
        return self.sampler.grid


def _check_backbone(space, kwargs: dict) -> None:
    """Every formula compiles on the backbone with the fixed options (before any training)."""
    from ..codegen import get_backbone_info

    info = get_backbone_info(kwargs.get("backbone", DEFAULT_BACKBONE))
    options = {k: v for k, v in kwargs.items() if k not in ("backbone", "transition") and v is not None}
    depth = options.pop("depth", None)
    try:
        info.validate(depth=depth, **options)
    except (ValueError, TypeError) as exc:
        raise UsageError(str(exc)) from None


def _check_networks(space, kwargs: dict) -> None:
    """Every formula compiles on the backbone with every combination of knob values (symbols at
    one value of their domain: a coefficient's value does not change the network's structure),
    so that a file the backbone cannot build is refused before the study is touched."""
    import itertools

    from ..codegen import compile_source
    from ..errors import SourceError

    fixed = {k: v for k, v in kwargs.items() if v is not None}
    for choice in space.formulas:
        values = {
            d.name: d.domain.choices[0] if d.domain.choices is not None else d.domain.low
            for d in space.symbols
            if choice.label in d.formulas
        }
        rec = choice.rec.bind(**values) if values else choice.rec
        for knob_values in itertools.product(*(k.values for k in space.knobs)):
            options = {**fixed, **dict(zip((k.name for k in space.knobs), knob_values))}
            try:
                compile_source(rec, **options)
            except SourceError:
                raise  # points at the file's line
            except (ValueError, TypeError, UsageError) as exc:
                knobs = ", ".join(f"{k.name}={v}" for k, v in zip(space.knobs, knob_values))
                raise UsageError(
                    f"{choice.path} does not compile on {options.get('backbone')}"
                    + (f" with {knobs}" if knobs else "")
                    + f": {exc}"
                ) from None


def _default_sizer(backbone_kwargs):
    """Sizes on the backbone's default input when the trainer cannot say (injected trainers)."""
    from .training import candidate_backbone

    def size(candidate):
        from ..codegen import compile_network, get_backbone_info
        from ..codegen.info import network_info

        kwargs = candidate_backbone(candidate, backbone_kwargs)
        info = get_backbone_info(kwargs.get("backbone", DEFAULT_BACKBONE))
        model = compile_network(candidate.rec, **kwargs)
        channels = kwargs.get("in_channels") or info.default_in_channels
        ni = network_info(candidate.rec, model, info.default_input_size, channels, info.name, kwargs)
        return {"parameters": ni.parameters, "multiply_adds": ni.multiply_adds}

    return size


def _worker(prepared: Prepared, index: int, study=None, objective=None, stream=None) -> None:
    from .engine import holds_slot

    r = prepared.request
    o = r.options
    if objective is None:
        objective = prepared.objective(index)
        objective.warm_up()
    if study is None:
        study = open_study(o, prepared.space, prepared.settings, worker=index)
    objective.slots = holds_slot(study, o.trials)
    progress = progress_printer(study, o.trials, stream) if r.progress and not r.quiet else None
    timings = Path(o.out) / "timings.jsonl"
    run_worker(study, objective, o.trials, poll=min(o.heartbeat, 5), progress=progress, timings=timings)


def _worker_process(request: SearchRequest, index: int, parent: int | None = None) -> None:
    """Entry point of an extra worker process (spawned: a fresh interpreter); it ends with
    its parent, whatever kills the parent."""
    if parent is not None:
        _die_with_parent(parent)
    try:
        _worker(Prepared(request), index)
    except KeyboardInterrupt:
        sys.exit(130)


def _die_with_parent(parent: int) -> None:
    """Have the kernel send SIGKILL to this process when ``parent`` ends (Linux's
    ``PR_SET_PDEATHSIG``); elsewhere a thread polls for the parent once a second. A worker
    left running would go on training trials that nobody waits for; its unfinished trial is
    retried by the next run (heartbeat)."""
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        armed = libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):
        armed = False
    if os.getppid() != parent:  # the parent ended before the signal was armed
        os._exit(1)
    if armed:
        return
    import threading

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="formulac-parent-watch").start()


def run_search(request: SearchRequest) -> dict:
    """Run (or continue) the search and return the leaderboard (as written to leaderboard.json)."""
    from .report import leaderboard, ranking, write_outputs

    if request.options.seed is None:  # workers and machines must not draw the same points
        request = replace(request, options=replace(request.options, seed=secrets.randbelow(2**31)))
    prepared = Prepared(request)
    size = prepared.space.grid_size if prepared._grid() else None
    if size is not None and size < request.options.trials:  # a grid has no more points to try
        if request.confirm > size:
            raise UsageError(
                f"--confirm {request.confirm} asks for more candidates than the grid's {size} points"
            )
        request = replace(request, options=replace(request.options, trials=size))
        prepared.request = request
    o = request.options
    out = Path(o.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a directory")
    objective = prepared.objective(0)
    if hasattr(objective.trainer, "data"):
        objective.trainer.data()  # missing data is an error now, before the study is touched
    objective.warm_up()
    created = not out.exists()
    make_directory(out, "--out")
    try:
        storage = open_storage(o)
    except UsageError:
        if created:
            _remove_unused_out(out)
        raise
    try:
        try:
            study = open_study(o, prepared.space, prepared.settings, storage=storage)
        except UsageError:
            if created:
                close_storage(storage)
                _remove_unused_out(out)
            raise
        _announce(request, prepared)
        _run_workers(request, prepared, study, objective)
        board = leaderboard(study, prepared.space, prepared.settings, o.trials)
    finally:
        close_storage(storage)
    board["sampler_seed"] = o.seed
    board["overhead"] = _overhead(out / "timings.jsonl")
    complete = board["counts"]["complete"]
    if request.confirm > complete:
        write_outputs(out, board, prepared.space, request.origin or "formulac.search")
        raise UsageError(
            f"--confirm {request.confirm}: only {complete} trial(s) of the study completed "
            f"({_counts_text(board)}); the study and its leaderboard are kept in {out}: run the "
            f"same command with more --trials, or with --confirm {complete}"
            if complete
            else f"--confirm {request.confirm}: no trial of the study completed ({_counts_text(board)}); "
            f"the study and its leaderboard are kept in {out}"
        )
    if request.confirm:
        from .confirm import confirm

        board["confirmation"] = confirm(
            prepared.space,
            ranking(board),
            request.confirm,
            request.seeds,
            prepared.baseline,
            Path(request.baseline).stem,
            request.config,
            request.backbone_kwargs,
            out / "confirm",
            progress=request.progress,
            quiet=request.quiet,
            jobs=request.workers,
            train_changes=request.confirm_train,
            objective=request.metric.name,
        )
    write_outputs(out, board, prepared.space, request.origin or "formulac.search")
    if not request.quiet:
        _summary(board, out)
    return board


def _remove_unused_out(out: Path) -> None:
    """Remove the --out directory this run made when the study could not be opened: what the
    attempt left (an empty study file, its lock and logs), then the directory if empty."""
    import contextlib

    for name in (STUDY_FILE, STUDY_FILE + ".lock", STUDY_FILE + "-wal", STUDY_FILE + "-shm"):
        path = out / name
        with contextlib.suppress(OSError):
            if path.is_file() and (name != STUDY_FILE or path.stat().st_size == 0):
                path.unlink()
    with contextlib.suppress(OSError):
        out.rmdir()  # only if empty


def _run_workers(request: SearchRequest, prepared: Prepared, study, objective) -> None:
    """Worker 0 in this process, the others in spawned processes; returns when all are done."""
    procs = []
    ctx = multiprocessing.get_context("spawn")
    for index in range(1, request.workers):
        env_device = _device_for(index, request)
        sub = replace(request, config=env_device) if env_device is not None else request
        p = ctx.Process(target=_worker_process, args=(sub, index, os.getpid()), daemon=False)
        p.start()
        procs.append(p)
    try:
        _worker(prepared, 0, study=study, objective=objective)
    finally:
        for p in procs:
            p.join()
    bad = [p.exitcode for p in procs if p.exitcode not in (0, None)]
    if bad:
        print(f"search: {len(bad)} worker process(es) ended with status {bad}", file=sys.stderr)


def _device_for(index: int, request: SearchRequest):
    """With several GPUs, worker i trains on GPU i (mod the count)."""
    config = request.config
    if config is None or getattr(config, "device", "auto") not in ("auto", "cuda"):
        return None
    try:
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:
        count = 0
    if count < 2:
        return None
    return config.replace(device=f"cuda:{index % count}")


def _overhead(path: Path) -> dict | None:
    """The search machinery's time per trained trial (storage, sampler, analysis), median."""
    import json
    import statistics

    if not path.is_file():
        return None
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    trained = [r for r in rows if r["train_seconds"] > 0]
    if not trained:
        return None
    return {
        "trials": len(trained),
        "median_overhead_s": statistics.median(r["overhead_seconds"] for r in trained),
        "median_trial_s": statistics.median(r["seconds"] for r in trained),
        "median_fraction": statistics.median(
            r["overhead_seconds"] / r["seconds"] for r in trained if r["seconds"] > 0
        ),
    }


def _announce(request: SearchRequest, prepared: Prepared) -> None:
    if request.quiet:
        return
    o = request.options
    space = prepared.space
    dims = ", ".join(space.names()) or "no free symbols"
    print(
        f"search {o.study_name}: {o.trials} trials over {len(space.formulas)} formula(s) ({dims}); "
        f"storage {o.storage or Path(o.out) / 'study.db'}; selection by {request.metric.label} "
        f"({request.metric.direction}; the test set is used only by --confirm)",
        file=sys.stderr,
    )


def _counts_text(board: dict) -> str:
    c = board["counts"]
    return (
        f"{c['complete']} complete, {c['pruned']} pruned, {c['rejected']} rejected by analysis, "
        f"{c['failed']} failed"
    )


def _summary(board: dict, out: Path) -> None:
    best = board["best"]
    print(
        f"search done: {len(board['trials'])} trials ({_counts_text(board)}); results in {out}",
        file=sys.stderr,
    )
    if best is not None:
        values = ", ".join(f"{k}={v}" for k, v in best["params"].items())
        print(
            f"best: trial {best['number']} {best['formula']} {values}: {board['label']} {best['value']:.4f}"
        )
