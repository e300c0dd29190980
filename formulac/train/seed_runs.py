"""The runs of a comparison of models over seeds: where each goes, whether it is there
already, and training them one after the other."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from .recipes import TrainConfig
from .rundir import CHECKPOINT, SUMMARY

__all__ = ["PlannedRun", "plan_runs", "train_in_turn"]


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


def train_in_turn(
    runs: Sequence[PlannedRun],
    train_one: Callable[..., dict],
    config: TrainConfig,
    *,
    overwrite: bool,
    progress: bool,
    quiet: bool,
    announce: bool,
    on_run_end: Callable[[str, int, dict], None] | None,
    **data: Any,
) -> dict[tuple[str, int], dict]:
    """Train (or resume, or reuse) the runs one after the other with ``train_one`` (the data
    passed as ``data``); ``announce`` prints each run's number and directory.  Returns the
    summaries by (label, seed)."""
    summaries: dict[tuple[str, int], dict] = {}
    for k, run in enumerate(runs, 1):
        if announce:
            print(f"[{k}/{len(runs)}] {run.label}, seed {run.seed}: {run.run_dir}", file=sys.stderr)
        summary = train_one(
            run.build,
            config.replace(seed=run.seed),
            run.run_dir,
            resume=run.exists and not overwrite,
            overwrite=overwrite,
            progress=progress,
            describe=run.describe,
            quiet=quiet,
            **data,
        )
        summaries[run.label, run.seed] = summary
        if on_run_end is not None:
            on_run_end(run.label, run.seed, summary)
    return summaries
