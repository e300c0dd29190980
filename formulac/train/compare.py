"""Compare several models over several seeds under one recipe.

Every (model, seed) is a :func:`~formulac.train.loop.train` run in ``out_dir/<label>/seed<k>/``;
finished runs are reused and unfinished ones resumed, so calling :func:`compare` again after an
interruption continues where it stopped.  ``jobs`` runs several at once in separate processes
(each with its share of the CPU threads).

The result gives, per model, the mean ± sd accuracy over the seeds and, against the first model
(the baseline), the mean difference with its 95 % confidence interval, the paired t-test, the
effect size d_z and the Wilcoxon signed-rank test; with three or more models, the Friedman test
and Holm-adjusted pairwise p-values.  It says in words where the evidence is too thin (fewer than
3 seeds, a confidence interval that spans zero).  It is printed and written to
``comparison.md`` and ``comparison.json``.  Runs whose settings differ (other than the seed) are
never paired.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import distributed as D
from . import stats
from .data import Dataset
from .errors import TrainError
from .loop import BuildModel, data_for_run, train
from .recipes import TrainConfig
from .seed_runs import RunOptions, SeedRuns, checked_plan, plan_runs, safe_label
from .seed_statistics import (
    MIN_SEEDS,
    Measure,
    SeedComparison,
    check_same_recipe,
    format_seconds,
    mean,
    mean_sd_text,
    pairwise_cells,
    pairwise_statistics,
    pairwise_verdicts,
    recipe_record,
    sample_sd,
    too_few_seeds,
)

__all__ = ["ComparisonResult", "ModelResult", "compare", "format_seconds", "safe_label"]

ACCURACY = Measure(
    unit="points",
    digits=2,
    lower_is_better=False,
    no_difference="these seeds show no difference either way.",
)


@dataclass
class ModelResult:
    """One model's runs: accuracy (fraction) per seed on the evaluated set (``metric``: "test",
    or "validation" when the runs held out a validation split)."""

    label: str
    seeds: list[int]
    accuracy: list[float]
    parameters: int
    times: list[float]
    run_dirs: list[str]
    describe: dict | None = None
    best_accuracy: list[float] = field(default_factory=list)
    metric: str = "test"

    @property
    def accuracy_pct(self) -> list[float]:
        return [100.0 * a for a in self.accuracy]

    @property
    def errors(self) -> list[float]:
        return [100.0 * (1.0 - a) for a in self.accuracy]

    @property
    def mean_accuracy(self) -> float:
        return mean(self.accuracy_pct)

    @property
    def std_accuracy(self) -> float | None:
        return sample_sd(self.accuracy_pct)

    @property
    def mean_error(self) -> float:
        return mean(self.errors)

    @property
    def std_error(self) -> float | None:
        return sample_sd(self.errors)

    @property
    def mean_time(self) -> float:
        return mean(self.times)

    def to_dict(self) -> dict:
        key = "val" if self.metric == "validation" else "test"
        return {
            "label": self.label,
            "seeds": self.seeds,
            "evaluated_on": self.metric,
            f"{key}_acc": self.accuracy,
            f"mean_{key}_acc_pct": self.mean_accuracy,
            f"std_{key}_acc_pct": self.std_accuracy,
            f"{key}_error_pct": self.errors,
            f"mean_{key}_error_pct": self.mean_error,
            f"std_{key}_error_pct": self.std_error,
            f"best_{key}_acc": self.best_accuracy,
            "parameters": self.parameters,
            "time_per_run_s": self.mean_time,
            "times_s": self.times,
            "run_dirs": self.run_dirs,
            "model": self.describe,
        }


@dataclass
class ComparisonResult(SeedComparison):
    """The table, the tests and the verdicts.  ``test`` is the main test (the paired t-test
    for two models, Friedman for more, None for one); ``pairwise`` compares each model with
    the first (the baseline); ``verdicts`` say in words what the evidence supports."""

    models: list[ModelResult]

    @property
    def metric(self) -> str:
        return self.models[0].metric if self.models else "test"

    # -- formatting ---------------------------------------------------------------------------
    _HEAD = [
        "model",
        "accuracy (%)",
        "vs first",
        "95% CI",
        "p (t-test)",
        "d_z",
        "p (Wilcoxon)",
        "params",
        "time/run",
        "seeds",
    ]

    def _rows(self) -> list[list[str]]:
        rows = []
        by_model = {pw["model"]: pw for pw in self.pairwise}
        several = len(self.models) > 2
        for m in self.models:
            acc = mean_sd_text(m.accuracy_pct, ACCURACY.digits)
            cells = pairwise_cells(by_model.get(m.label), several, "mean_difference_pct", ACCURACY)
            rows.append(
                [m.label, acc, *cells, f"{m.parameters:,}", format_seconds(m.mean_time), str(len(m.seeds))]
            )
        return rows

    def _what(self) -> str:
        return "validation accuracy" if self.metric == "validation" else "test accuracy"

    def _heading(self) -> str:
        cfg = self.config
        return (
            f"{cfg.get('data')}, {cfg.get('recipe')} recipe, {cfg.get('epochs')} epochs, "
            f"seeds {', '.join(map(str, self.seeds))}; {self._what()}"
        )

    def _notes(self) -> list[str]:
        lines = []
        if self.test is not None:
            lines.append(self.test.describe())
        lines += self.verdicts
        if self.metric == "validation":
            lines.append(
                "These are accuracies on a validation split of the training set: fit for choosing, "
                "not for reporting (train without --val-fraction to test)."
            )
        return lines

    def _explanation(self) -> str:
        return (
            f"Accuracy: the final {self._what()} (%), mean ± sample sd over the seeds. "
            "The differences, their 95 % confidence intervals (paired t), the t-test, the effect "
            "size d_z (mean / sd of the paired differences) and the Wilcoxon signed-rank test "
            "compare each model with the first, paired by seed."
        )

    def _per_seed(self) -> tuple[str, list[tuple[str, dict]], str]:
        values = [(m.label, dict(zip(m.seeds, m.accuracy_pct))) for m in self.models]
        return f"{self._what()}, %", values, ".2f"

    def to_dict(self) -> dict:
        return {"seeds": self.seeds, "evaluated_on": self.metric, "config": self.config, **self._outcome()}


# ------------------------------------------------------------------------------------------------
# the statistics and what they support


def _statistics(models: list[ModelResult]) -> tuple[stats.TestResult | None, list[dict]]:
    return pairwise_statistics(
        [m.label for m in models], [m.accuracy_pct for m in models], "mean_difference_pct", "accuracy"
    )


def _verdicts(models: list[ModelResult], test: stats.TestResult | None, pairwise: list[dict]) -> list[str]:
    """What the evidence supports, in words."""
    n = len(models[0].seeds) if models else 0
    why = f". With fewer than {MIN_SEEDS} seeds a difference cannot be told from seed-to-seed noise"
    out = too_few_seeds(len(models), n, why)
    out += pairwise_verdicts(test, pairwise, len(models), "mean_difference_pct", ACCURACY)
    few = sorted({w["n"] for w in (pw.get("wilcoxon") or {} for pw in pairwise) if 0 < (w.get("n") or 0) < 6})
    if few:
        out.append(
            f"The Wilcoxon test cannot reach p < 0.05 with {' or '.join(map(str, few))} non-zero "
            "differences (6 are needed): read its p-value as a check of the signs only."
        )
    return out


def _same_recipe(runs: list[tuple[str, int, dict]]) -> None:
    """Refuse to pair runs trained under different settings (anything but the seed and the
    knobs that do not change what is computed)."""
    check_same_recipe(
        runs, "\ncompare runs trained under one recipe (retrain with the same options or --overwrite)"
    )


# ------------------------------------------------------------------------------------------------
# running


def compare(
    models: Sequence[tuple[str, BuildModel, dict | None]],
    config: TrainConfig,
    seeds: Sequence[int],
    out_dir: str | os.PathLike,
    *,
    progress: bool = True,
    quiet: bool = False,
    overwrite: bool = False,
    dataset: Dataset | None = None,
    jobs: int = 1,
    on_run_end: Callable[[str, int, dict], None] | None = None,
) -> ComparisonResult:
    """Train every model with every seed (``config`` with ``seed`` replaced) and compare.

    ``models``: (label, build_model, describe) triples; the first is the baseline of the
    pairwise tests.  Runs go to ``out_dir/<label>/seed<k>/``; finished runs are reused and
    unfinished ones resumed (``overwrite=True`` starts every run afresh).  ``jobs > 1`` trains
    that many runs at once in separate processes, each with ``cpu count / jobs`` threads unless
    ``config.threads`` says otherwise (``build_model`` must then be picklable).  Returns a
    :class:`ComparisonResult`, also written to ``comparison.md`` / ``comparison.json`` and
    printed (unless ``quiet``)."""
    config = config.validate()
    seeds = [int(s) for s in seeds]
    options = RunOptions(jobs, overwrite, progress, quiet, on_run_end)
    labels, dirs = checked_plan(models, seeds, jobs)
    info, _ = D.setup(config.device)
    if info.enabled and jobs > 1:
        raise TrainError("--jobs runs several processes itself; under torchrun use --jobs 1")
    out = Path(out_dir)
    tasks = plan_runs(models, dirs, seeds, out, agree=lambda exists: D.broadcast_object(exists, info))
    summaries = SeedRuns(tasks, train, config, options).train(
        _outcome,
        in_turn=lambda: {"dataset": data_for_run(config, info, dataset)},
        in_processes={"dataset": dataset},
        announce=info.is_main,
    )
    _same_recipe([(label, seed, summaries[label, seed]) for seed in seeds for label in labels])
    key = "val" if config.val_fraction > 0 else "test"
    model_results = [
        _model_result(label, describe, [summaries[label, s] for s in seeds], seeds, out / d, key)
        for (label, _, describe), d in zip(models, dirs)
    ]
    test, pairwise = _statistics(model_results)
    verdicts = _verdicts(model_results, test, pairwise)
    result = ComparisonResult(model_results, seeds, recipe_record(config), test, pairwise, str(out), verdicts)
    if info.is_main:
        result.write(out, quiet=quiet)
    D.barrier(info)
    return result


def _model_result(label, describe, summaries: list[dict], seeds, model_dir: Path, key: str) -> ModelResult:
    """One model's row of the comparison, from its runs' summaries (one per seed)."""
    return ModelResult(
        label=label,
        seeds=list(seeds),
        accuracy=[float(r[f"final_{key}_acc"]) for r in summaries],
        parameters=int(summaries[0]["parameters"]),
        times=[float(r["wall_time_s"]) for r in summaries],
        run_dirs=[str(model_dir / f"seed{s}") for s in seeds],
        describe=summaries[0].get("model") or describe,  # with the source's hash, from the run
        best_accuracy=[float(r[f"best_{key}_acc"]) for r in summaries],
        metric="validation" if key == "val" else "test",
    )


def _outcome(summary: dict) -> str:
    acc = summary.get("final_test_acc") or summary.get("final_val_acc")
    return f"accuracy {100 * acc:.2f}% in {format_seconds(summary.get('wall_time_s'))}"
