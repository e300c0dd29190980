"""One trial: draw a candidate, analyse it, reject it untrained if it fails a requirement, else
train it (reporting its score, validation accuracy or loss, every epoch to the pruner) and return
its score.

The trainer is injected: ``trainer(candidate, run_dir, report) -> TrialScore``, where
``report(epoch, value)`` hands one epoch's score (:mod:`~formulac.search.metrics`) to Optuna and raises ``optuna.TrialPruned``
when the pruner stops the trial. :class:`~formulac.search.training.FormulaTrainer` trains the
compiled network; tests pass a fast function of the parameters instead.

Each trial writes two user attributes (every write is a database commit): ``formulac_trial``
when it starts (what it is) and ``formulac_outcome`` when it ends. The outcome's state is
``rejected`` or ``pruned`` (Optuna's PRUNED), ``failed`` (Optuna's FAIL: diverged, or the
network could not be trained) or ``complete``. A FAIL without it (a worker killed or
interrupted mid-trial) is superseded by its retry and counts for nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UsageError
from ..limits import DEFAULT_MEMORY_MODE
from .metrics import METRICS, SearchMetric
from .properties import Requirement, summarize
from .space import Candidate, SearchSpace

__all__ = [
    "OUTCOME_ATTR",
    "TRIAL_ATTR",
    "Limits",
    "Objective",
    "TrialFailed",
    "TrialScore",
    "outcome",
    "trial_record",
]

#: User attribute written when the trial starts: run_dir, formula, params, candidate (text),
#: analysis (summary), size (with --max-params/--max-macs).
TRIAL_ATTR = "formulac_trial"
#: User attribute written when it ends: state (complete, rejected, pruned, failed; or
#: interrupted, surplus), reason, epochs, extra.
OUTCOME_ATTR = "formulac_outcome"
#: A trial started when the study already held its --trials; it is dropped (see engine).
SURPLUS = "surplus"


@dataclass
class TrialScore:
    """What training gave: the last epoch's validation accuracy (None for a language model)
    and the epochs trained; ``val_loss`` for a language model."""

    val_accuracy: float | None
    epochs: int
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)
    val_loss: float | None = None

    def value(self, metric: SearchMetric) -> float:
        """The score the search optimises."""
        value = getattr(self, metric.name)
        if value is None:
            raise TrialFailed(f"training reported no {metric.label}")
        return float(value)


def outcome(trial) -> dict:
    """The outcome record of a (frozen) trial; empty while it runs or after its worker died."""
    return trial.user_attrs.get(OUTCOME_ATTR) or {}


def trial_record(trial) -> dict:
    """What the trial is (run_dir, formula, params, candidate, analysis, size); empty before
    its analysis."""
    return trial.user_attrs.get(TRIAL_ATTR) or {}


class _Clock:
    """Adds the seconds since the last lap to ``timing[name]``."""

    def __init__(self, timing: dict):
        self.timing = timing
        self.last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.timing[name] = self.timing.get(name, 0.0) + now - self.last
        self.last = now


class TrialFailed(Exception):
    """Training could not give a score (loss became NaN or infinite, the network does not fit):
    the trial is recorded as failed with this message, and the study goes on."""


class Surplus(Exception):
    """The study already holds its number of trials (two workers asked at the same moment)."""


@dataclass(frozen=True)
class Limits:
    """Size limits checked before training (None: no limit)."""

    max_params: int | None = None
    max_macs: int | None = None

    @property
    def any(self) -> bool:
        return self.max_params is not None or self.max_macs is not None


Trainer = Callable[[Candidate, Path, Callable[[int, float], None]], TrialScore]


def _memory_refusal(rec, memory: str) -> str | None:
    """Why ``rec`` cannot be built with the memory mode (not invertible, rebuilding useless,
    unsupported reads), or None."""
    from ..codegen.memory_modes import get_memory_mode

    try:
        get_memory_mode(memory).plan(rec)
    except UsageError as exc:
        return str(exc)
    return None


class Objective:
    """The function Optuna calls once per trial."""

    def __init__(
        self,
        space: SearchSpace,
        requirements: Sequence[Requirement],
        limits: Limits,
        trainer: Trainer,
        trials_dir: Path,
        analysis_depth: int,
        grid: bool,
        slots: Callable[[object], bool],
        sizer: Callable[[Candidate], dict] | None = None,
        epochs: int | None = None,
        memory: str = DEFAULT_MEMORY_MODE,
        metric: SearchMetric = METRICS["val_accuracy"],
    ):
        self.space = space
        self.metric = metric
        self.memory = memory  # a mode other than standard is checked per candidate
        self.requirements = list(requirements)
        self.limits = limits
        self.trainer = trainer
        self.trials_dir = trials_dir
        self.analysis_depth = analysis_depth
        self.grid = grid
        self.slots = slots
        self.sizer = sizer
        self.epochs = epochs  # of a whole training run
        self._analyses: dict[str, dict] = {}
        self.last_timing: dict = {}
        self.last_number: int | None = None  # the trial this process ran last

    def analysis(self, candidate: Candidate) -> dict:
        """The candidate's analysis summary (cached per formula and values: knobs do not change it)."""
        key = Candidate(candidate.formula, candidate.path, candidate.rec, candidate.values).key
        if key not in self._analyses:
            from ..analysis import analyze

            summary = summarize(analyze(candidate.rec, depth=self.analysis_depth, paths=False))
            if self.memory != DEFAULT_MEMORY_MODE:
                summary["memory_refusal"] = _memory_refusal(candidate.rec, self.memory)
            self._analyses[key] = summary
        return self._analyses[key]

    def warm_up(self) -> None:
        """Analyse each formula at one value of its domain before the first trial: a formula
        the analysis fails on shows at once, and the symbolic engine's one-time start-up
        (caches, about 0.3 s) is not charged to the first trial."""
        for choice in self.space.formulas:
            values = {
                d.name: d.domain.choices[0] if d.domain.choices is not None else d.domain.low
                for d in self.space.symbols
                if choice.label in d.formulas
            }
            rec = choice.rec.bind(**values) if values else choice.rec
            self.analysis(Candidate(choice.label, choice.path, rec, values))

    def __call__(self, trial) -> float:
        import optuna

        clock = _Clock(self.last_timing)
        self.last_timing.clear()
        self.last_timing.update(train=0.0, report=0.0)
        self.last_number = trial.number
        if not self.slots(trial):
            trial.set_user_attr(OUTCOME_ATTR, {"state": SURPLUS})
            raise Surplus(f"trial {trial.number}: the study already holds its trials")
        clock.lap("slot")
        candidate = self.space.suggest(trial, self.grid)
        clock.lap("sample")
        summary = self.analysis(candidate)
        reasons = [r for r in (req.failure(summary) for req in self.requirements) if r]
        if summary.get("memory_refusal"):
            reasons.append(summary["memory_refusal"])
        size = self.sizer(candidate) if self.limits.any and not reasons and self.sizer else None
        if size is not None:
            reasons += self._size_failures(size)
        clock.lap("analysis")
        # one write of what the trial is (each write is a commit); a retried trial keeps its
        # record and so its run directory and checkpoint
        record = trial.user_attrs.get(TRIAL_ATTR)
        if record is None:
            record = {
                "run_dir": str(self.trials_dir / f"trial-{trial.number:04d}"),
                "formula": candidate.formula,
                "params": candidate.params,
                "candidate": candidate.describe(),
                "analysis": summary,
                "size": size,
            }
            trial.set_user_attr(TRIAL_ATTR, record)
        run_dir = Path(record["run_dir"])
        clock.lap("record")
        if reasons:
            trial.set_user_attr(OUTCOME_ATTR, {"state": "rejected", "reason": "; ".join(reasons)})
            raise optuna.TrialPruned("rejected by analysis: " + "; ".join(reasons))

        def report(epoch: int, value: float) -> None:
            if epoch in trial_reported:
                return
            trial_reported.add(epoch)
            start = time.perf_counter()
            try:
                trial.report(float(value), int(epoch))
                # the last epoch is trained already: stopping there saves nothing
                if (self.epochs is None or epoch < self.epochs) and trial.should_prune():
                    reason = f"stopped after epoch {epoch} ({self.metric.label} {value:.4f})"
                    trial.set_user_attr(OUTCOME_ATTR, {"state": "pruned", "reason": reason})
                    raise optuna.TrialPruned(f"pruned after epoch {epoch}")
            finally:  # the pruner's time is the search's, not training's
                self.last_timing["report"] += time.perf_counter() - start

        trial_reported: set[int] = set()  # a resumed run reports its earlier epochs once
        t1 = time.perf_counter()
        try:
            score = self.trainer(candidate, run_dir, report)
        except TrialFailed as exc:
            trial.set_user_attr(OUTCOME_ATTR, {"state": "failed", "reason": str(exc)})
            raise
        except KeyboardInterrupt:
            trial.set_user_attr(OUTCOME_ATTR, {"state": "interrupted"})
            raise
        finally:
            self.last_timing["train"] = time.perf_counter() - t1 - self.last_timing["report"]
        outcome = {"state": "complete", "epochs": int(score.epochs)}
        if score.extra:
            outcome["extra"] = score.extra
        trial.set_user_attr(OUTCOME_ATTR, outcome)
        return score.value(self.metric)

    def _size_failures(self, size: dict) -> list[str]:
        out = []
        if self.limits.max_params is not None and size["parameters"] > self.limits.max_params:
            out.append(f"--max-params {self.limits.max_params}: parameters = {size['parameters']}")
        if self.limits.max_macs is not None and size["multiply_adds"] > self.limits.max_macs:
            out.append(f"--max-macs {self.limits.max_macs}: multiply-adds = {size['multiply_adds']}")
        return out
