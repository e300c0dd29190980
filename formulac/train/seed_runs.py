"""The runs of a comparison of models over seeds: where each goes, whether it is there
already, and training them one after the other or several at once in separate processes
(:class:`SeedRuns`, by the comparison's :class:`RunOptions`)."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from .errors import TrainError
from .recipes import TrainConfig
from .rundir import CHECKPOINT, SUMMARY

__all__ = [
    "PlannedRun",
    "RunOptions",
    "SeedRuns",
    "checked_plan",
    "cpu_count",
    "plan_runs",
    "safe_label",
]


def safe_label(label: str) -> str:
    """A directory name for ``label``: letters, digits, ``. _ + -``; others become ``_``."""
    s = re.sub(r"[^A-Za-z0-9._+-]", "_", label.strip())
    s = s.lstrip(".") or "model"
    return s


def checked_plan(models, seeds: list[int], jobs: int) -> tuple[list[str], list[str]]:
    """The models' labels and directory names, once models, seeds and jobs make sense."""
    if not models:
        raise TrainError("nothing to compare: no models")
    if not seeds:
        raise TrainError("nothing to compare: no seeds")
    if len(set(seeds)) != len(seeds):
        raise TrainError(f"repeated seeds in {seeds}")
    if jobs < 1:
        raise TrainError(f"--jobs must be at least 1, not {jobs}")
    labels = [m[0] for m in models]
    dirs = [safe_label(lab) for lab in labels]
    if len(set(labels)) != len(labels):
        raise TrainError(f"two models share a label: {labels}")
    if len(set(dirs)) != len(dirs):
        raise TrainError(f"model labels {labels} give the same directory names {dirs}")
    return labels, dirs


class PlannedRun(NamedTuple):
    """One (model, seed) run: its directory, and whether a checkpoint or summary is there."""

    label: str
    seed: int
    build: Any
    describe: dict | None
    run_dir: Path
    exists: bool


def plan_runs(
    models: Sequence[tuple[str, Any, dict | None]],
    dirs: Sequence[str],
    seeds: Sequence[int],
    out: Path,
    agree: Callable[[bool], bool] = bool,
) -> list[PlannedRun]:
    """Every model for each seed in turn, in ``out/<dir>/seed<k>/``; ``agree`` makes the ranks
    of a distributed run agree on whether a run exists."""
    runs = []
    for seed in seeds:
        for (label, build, describe), d in zip(models, dirs):
            run_dir = out / d / f"seed{seed}"
            exists = (run_dir / CHECKPOINT).is_file() or (run_dir / SUMMARY).is_file()
            runs.append(PlannedRun(label, seed, build, describe, run_dir, agree(exists)))
    return runs


@dataclass(frozen=True)
class RunOptions:
    """How a comparison trains its runs: ``jobs`` at once (1: one after the other in this
    process), every run afresh (``overwrite``) or resumed, with progress bars unless ``quiet``,
    ``on_run_end(label, seed, summary)`` called as each ends."""

    jobs: int = 1
    overwrite: bool = False
    progress: bool = True
    quiet: bool = False
    on_run_end: Callable[[str, int, dict], None] | None = None


def cpu_count() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _train_in_worker(task: dict) -> dict:
    """One run in a worker process; returns its summary."""
    import torch

    torch.set_num_threads(task["config"].threads or 1)
    return task["train_one"](
        task["build"],
        task["config"],
        task["run_dir"],
        resume=task["resume"],
        overwrite=task["overwrite"],
        progress=False,
        describe=task["describe"],
        quiet=True,
        **task["data"],
    )


@dataclass(frozen=True)
class SeedRuns:
    """The runs of a comparison (:func:`plan_runs`), each trained by ``train_one(build, config,
    run_dir, ...)`` under ``config`` with its seed, as ``options`` say."""

    runs: Sequence[PlannedRun]
    train_one: Callable[..., dict]
    config: TrainConfig
    options: RunOptions

    def train(
        self,
        outcome: Callable[[dict], str],
        *,
        in_turn: Callable[[], dict],
        in_processes: dict,
        announce: bool = True,
    ) -> dict[tuple[str, int], dict]:
        """Train (or resume, or reuse) every run: one after the other when ``options.jobs`` is 1,
        given the data ``in_turn()`` returns (called only then), else in processes given
        ``in_processes`` (:meth:`train_in_processes`). ``announce``: this process prints what
        runs (the main rank of a distributed run). Returns the summaries by (label, seed)."""
        if self.options.jobs == 1:
            return self.train_in_turn(announce and not self.options.quiet, **in_turn())
        return self.train_in_processes(outcome, **in_processes)

    def train_in_turn(self, announce: bool, **data: Any) -> dict[tuple[str, int], dict]:
        """Train (or resume, or reuse) the runs one after the other (the data passed as
        ``data``); ``announce`` prints each run's number and directory.  Returns the summaries
        by (label, seed)."""
        summaries: dict[tuple[str, int], dict] = {}
        for k, run in enumerate(self.runs, 1):
            if announce:
                print(f"[{k}/{len(self.runs)}] {run.label}, seed {run.seed}: {run.run_dir}", file=sys.stderr)
            summary = self.train_one(
                run.build,
                self.config.replace(seed=run.seed),
                run.run_dir,
                resume=run.exists and not self.options.overwrite,
                overwrite=self.options.overwrite,
                progress=self.options.progress,
                describe=run.describe,
                quiet=self.options.quiet,
                **data,
            )
            summaries[run.label, run.seed] = summary
            if self.options.on_run_end is not None:
                self.options.on_run_end(run.label, run.seed, summary)
        return summaries

    def train_in_processes(self, outcome: Callable[[dict], str], **data: Any) -> dict[tuple[str, int], dict]:
        """Train the runs ``options.jobs`` at a time in fresh (spawned) processes, each with
        ``cpu count / jobs`` threads unless ``config.threads`` says otherwise; ``train_one`` (a
        module-level function), the models' builders and ``data`` must be picklable.
        ``outcome(summary)`` says in words how a run ended, printed as it ends (unless
        ``quiet``). Returns the summaries by (label, seed)."""
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed
        from concurrent.futures.process import BrokenProcessPool

        jobs = min(self.options.jobs, len(self.runs))
        threads = self.config.threads or max(1, cpu_count() // jobs)
        pending = {}
        summaries: dict[tuple[str, int], dict] = {}
        with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            for run in self.runs:
                task = {
                    "train_one": self.train_one,
                    "build": run.build,
                    "config": self.config.replace(seed=run.seed, threads=threads),
                    "run_dir": str(run.run_dir),
                    "resume": run.exists and not self.options.overwrite,
                    "overwrite": self.options.overwrite,
                    "describe": run.describe,
                    "data": data,
                }
                pending[pool.submit(_train_in_worker, task)] = (run.label, run.seed)
            done = 0
            try:
                for fut in as_completed(pending):
                    label, seed = pending[fut]
                    try:
                        summary = fut.result()
                    except TrainError as e:  # say which run; the type (e.g. TrainingDiverged) stays
                        e.message = f"{label}, seed {seed}: {e.message}"
                        e.args = (e.message,)
                        raise
                    except BrokenProcessPool:
                        raise TrainError(
                            f"the process training {label}, seed {seed} died (out of memory?); run the "
                            "same compare again to resume from the last checkpoints"
                        ) from None
                    done += 1
                    summaries[label, seed] = summary
                    if not self.options.quiet:
                        print(
                            f"[{done}/{len(self.runs)}] {label}, seed {seed}: {outcome(summary)}",
                            file=sys.stderr,
                        )
                    if self.options.on_run_end is not None:
                        self.options.on_run_end(label, seed, summary)
            except BaseException:
                for fut in pending:
                    fut.cancel()
                raise
        return summaries
