"""Compare language models over several seeds by their loss (lower is better).

Every (model, seed) is a :func:`~formulac.train.language.train_language` run in
``out_dir/<label>/seed<k>/``; finished runs are reused and unfinished ones resumed; ``jobs``
runs several at once in separate processes. Per model: the mean ± sd of the final validation
loss (nats per token), bits per byte and test loss over the seeds; against the first model (the
baseline), paired by seed, on the compared split (validation by default, the test split for a
search's confirmation): the mean difference of the loss with its 95 % confidence interval, the
paired t-test, the effect size d_z and the Wilcoxon signed-rank test; with three or more models
the Friedman test and Holm-adjusted p-values. A negative difference means the model is better
than the baseline. Written to ``comparison.md`` and ``comparison.json`` and printed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from . import stats
from .errors import TrainError
from .language import train_language
from .recipes import TrainConfig
from .seed_runs import RunOptions, SeedRuns, checked_plan, plan_runs
from .seed_statistics import (
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
from .text import TextCorpus, load_corpus

__all__ = ["SPLITS", "LossComparison", "LossResult", "compare_language"]

#: the split a comparison ranks by -> its name in words
SPLITS = {"val": "validation", "test": "test"}


LOSS = Measure(
    unit="nats",
    digits=4,
    lower_is_better=True,
    no_difference="no difference either way.",
    better="better (lower loss)",
    worse="worse (higher loss)",
)


@dataclass
class LossResult:
    """One model's runs: final validation loss, bits per byte and test loss per seed."""

    label: str
    seeds: list[int]
    val_loss: list[float]
    bits_per_byte: list[float]
    test_loss: list[float]
    parameters: int
    times: list[float]
    run_dirs: list[str]
    describe: dict | None = None

    def losses(self, split: str) -> list[float]:
        """The final loss per seed on ``split`` (val or test)."""
        return self.val_loss if split == "val" else self.test_loss

    def to_dict(self) -> dict:
        return {
            "label": self.label,
            "seeds": self.seeds,
            "val_loss": self.val_loss,
            "mean_val_loss": mean(self.val_loss),
            "std_val_loss": sample_sd(self.val_loss),
            "val_bits_per_byte": self.bits_per_byte,
            "test_loss": self.test_loss,
            "mean_test_loss": mean(self.test_loss),
            "std_test_loss": sample_sd(self.test_loss),
            "parameters": self.parameters,
            "times_s": self.times,
            "run_dirs": self.run_dirs,
            "model": self.describe,
        }


@dataclass
class LossComparison(SeedComparison):
    """The table, the tests and the verdicts of a comparison by loss on one split (``split``:
    val or test; the other split's loss is shown beside it)."""

    models: list[LossResult]
    split: str = "val"
    direction: str = "minimize"

    @property
    def objective(self) -> str:
        return f"{self.split}_loss"

    @property
    def _other(self) -> str:
        return "test" if self.split == "val" else "val"

    @property
    def _HEAD(self) -> list[str]:  # type: ignore[override]
        return [
            "model",
            f"{self.split} loss",
            "vs first",
            "95% CI",
            "p (t-test)",
            "d_z",
            "p (Wilcoxon)",
            "bits/byte",
            f"{self._other} loss",
            "params",
            "time/run",
            "seeds",
        ]

    def _rows(self) -> list[list[str]]:
        by_model = {pw["model"]: pw for pw in self.pairwise}
        several = len(self.models) > 2
        rows = []
        for m in self.models:
            cells = pairwise_cells(by_model.get(m.label), several, "mean_difference", LOSS)
            rows.append(
                [
                    m.label,
                    mean_sd_text(m.losses(self.split), LOSS.digits),
                    *cells,
                    mean_sd_text(m.bits_per_byte, LOSS.digits),
                    mean_sd_text(m.losses(self._other), LOSS.digits),
                    f"{m.parameters:,}",
                    format_seconds(mean(m.times)),
                    str(len(m.seeds)),
                ]
            )
        return rows

    def _heading(self) -> str:
        cfg = self.config
        return (
            f"{cfg.get('data')} ({cfg.get('tokens')}), {cfg.get('recipe')} recipe, {cfg.get('epochs')} "
            f"epochs of {cfg.get('epoch_tokens')} tokens, seeds {', '.join(map(str, self.seeds))}; "
            f"{SPLITS[self.split]} loss (nats per token), lower is better"
        )

    def _notes(self) -> list[str]:
        return ([self.test.describe()] if self.test is not None else []) + self.verdicts

    def _explanation(self) -> str:
        windows = "fixed validation windows" if self.split == "val" else "windows of the test split"
        return (
            f"{SPLITS[self.split].capitalize()} loss: the final epoch's mean cross-entropy on the "
            f"{windows}, mean ± sample sd over the seeds; bits per byte on the validation windows. "
            "The differences (model - first; negative is better), their 95 % confidence intervals "
            "(paired t), the t-test, d_z and the Wilcoxon test are paired by seed."
        )

    def _per_seed(self) -> tuple[str, list[tuple[str, dict]], str]:
        values = [(m.label, dict(zip(self.seeds, m.losses(self.split)))) for m in self.models]
        return f"{SPLITS[self.split]} loss", values, ".4f"

    def to_dict(self) -> dict:
        return {
            "objective": self.objective,
            "direction": self.direction,
            "seeds": self.seeds,
            "evaluated_on": SPLITS[self.split],
            "config": self.config,
            "ranking": [m.label for m in sorted(self.models, key=lambda m: mean(m.losses(self.split)))],
            **self._outcome(),
        }


def _outcome(summary: dict) -> str:
    return f"validation loss {summary['final_val_loss']:.4f} in {format_seconds(summary.get('wall_time_s'))}"


def _verdicts(models: list[LossResult], test: stats.TestResult | None, pairwise: list[dict]) -> list[str]:
    n = len(models[0].seeds) if models else 0
    return too_few_seeds(len(models), n) + pairwise_verdicts(
        test, pairwise, len(models), "mean_difference", LOSS
    )


def compare_language(
    models: Sequence[tuple[str, Callable, dict | None]],
    config: TrainConfig,
    seeds: Sequence[int],
    out_dir: str | os.PathLike,
    *,
    progress: bool = True,
    quiet: bool = False,
    overwrite: bool = False,
    corpus: TextCorpus | None = None,
    on_run_end: Callable[[str, int, dict], None] | None = None,
    jobs: int = 1,
    split: str = "val",
) -> LossComparison:
    """Train every model with every seed on ``config.data`` (text) and compare them by final
    loss on ``split`` (val, or test for a confirmation); ``models`` are (label, build_model,
    describe) triples, the first the baseline. ``jobs > 1`` trains that many runs at once in
    separate processes, each with ``cpu count / jobs`` threads unless ``config.threads`` says
    otherwise (``build_model`` must then be picklable)."""
    config = config.validate()
    if split not in SPLITS:
        raise TrainError(f"compare by loss on one of {', '.join(SPLITS)}, not {split!r}")
    seeds = [int(s) for s in seeds]
    options = RunOptions(jobs, overwrite, progress, quiet, on_run_end)
    labels, dirs = checked_plan(models, seeds, jobs)
    corpus = corpus or load_corpus(config.data, config.tokens)
    out = Path(out_dir)
    runs = SeedRuns(plan_runs(models, dirs, seeds, out), train_language, config, options)
    # each process maps the corpus itself (loaded above: a character cache is written once)
    summaries = runs.train(_outcome, in_turn=lambda: {"corpus": corpus}, in_processes={})
    check_same_recipe([(label, seed, summaries[label, seed]) for seed in seeds for label in labels])
    results = []
    for (label, _, describe), d in zip(models, dirs):
        rs = [summaries[label, s] for s in seeds]
        results.append(
            LossResult(
                label=label,
                seeds=seeds,
                val_loss=[float(r["final_val_loss"]) for r in rs],
                bits_per_byte=[float(r["final_val_bits_per_byte"]) for r in rs],
                test_loss=[float(r["final_test_loss"]) for r in rs],
                parameters=int(rs[0]["parameters"]),
                times=[float(r["wall_time_s"]) for r in rs],
                run_dirs=[str(out / d / f"seed{s}") for s in seeds],
                describe=rs[0].get("model") or describe,
            )
        )
    test, pairwise = pairwise_statistics(
        [m.label for m in results],
        [m.losses(split) for m in results],
        "mean_difference",
        f"{SPLITS[split]} loss",
    )
    verdicts = _verdicts(results, test, pairwise)
    result = LossComparison(
        results, seeds, recipe_record(config), test, pairwise, str(out), verdicts, split=split
    )
    result.write(out, quiet=quiet)
    return result
