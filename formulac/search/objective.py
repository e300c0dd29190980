"""One trial: draw a candidate, analyse it, reject it untrained if it fails a requirement, else
train it (reporting validation accuracy every epoch to the pruner) and return its score.

The trainer is injected: ``trainer(candidate, run_dir, report) -> TrialScore``, where
``report(epoch, val_accuracy)`` hands one epoch to Optuna and raises ``optuna.TrialPruned``
when the pruner stops the trial. :class:`~formulac.search.training.FormulaTrainer` trains the
compiled network; tests pass a fast function of the parameters instead.

Trial states are kept in the user attribute ``formulac_state``: ``rejected`` and ``pruned``
(Optuna's PRUNED), ``failed`` (Optuna's FAIL: diverged, or the network could not be trained),
``complete``. A FAIL without it (a worker killed or interrupted mid-trial) is superseded by its
retry and counts for nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .properties import Requirement, summarize
from .space import Candidate, SearchSpace

__all__ = ["STATE_ATTR", "REASON_ATTR", "Limits", "Objective", "TrialFailed", "TrialScore"]

STATE_ATTR = "formulac_state"
REASON_ATTR = "formulac_reason"
#: A trial started when the study already held its --trials; it is dropped (see engine).
SURPLUS = "surplus"


@dataclass
class TrialScore:
    """What training gave: the last epoch's validation accuracy and the epochs trained."""

    val_accuracy: float
    epochs: int
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)


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
        every_dimension: bool,
        slots: Callable[[object], bool],
        sizer: Callable[[Candidate], dict] | None = None,
    ):
        self.space = space
        self.requirements = list(requirements)
        self.limits = limits
        self.trainer = trainer
        self.trials_dir = trials_dir
        self.analysis_depth = analysis_depth
        self.every_dimension = every_dimension
        self.slots = slots
        self.sizer = sizer
        self._analyses: dict[str, dict] = {}
        self.last_timing: dict = {}
        self.last_number: int | None = None  # the trial this process ran last

    def analysis(self, candidate: Candidate) -> dict:
        """The candidate's analysis summary (cached per formula and values: knobs do not change it)."""
        key = Candidate(candidate.formula, candidate.path, candidate.rec, candidate.values).key
        if key not in self._analyses:
            from ..analysis import analyze

            self._analyses[key] = summarize(analyze(candidate.rec, depth=self.analysis_depth, paths=False))
        return self._analyses[key]

    def __call__(self, trial) -> float:
        import optuna

        t0 = time.perf_counter()
        self.last_timing = {"train": 0.0}
        self.last_number = trial.number
        if not self.slots(trial):
            trial.set_user_attr(STATE_ATTR, SURPLUS)
            raise Surplus(f"trial {trial.number}: the study already holds its trials")
        candidate = self.space.suggest(trial, self.every_dimension)
        attrs = trial.user_attrs
        if "run_dir" not in attrs:  # a retried trial keeps its run directory (and checkpoint)
            trial.set_user_attr("run_dir", str(self.trials_dir / f"trial-{trial.number:04d}"))
            trial.set_user_attr("formula", candidate.formula)
            trial.set_user_attr("params", candidate.params)
            trial.set_user_attr("candidate", candidate.describe())
        run_dir = Path(trial.user_attrs["run_dir"])
        summary = self.analysis(candidate)
        trial.set_user_attr("analysis", summary)
        reasons = [r for r in (req.failure(summary) for req in self.requirements) if r]
        if self.limits.any and not reasons:
            reasons += self._size_failures(trial, candidate)
        self.last_timing["analysis"] = time.perf_counter() - t0
        if reasons:
            trial.set_user_attr(STATE_ATTR, "rejected")
            trial.set_user_attr(REASON_ATTR, "; ".join(reasons))
            raise optuna.TrialPruned("rejected by analysis: " + "; ".join(reasons))

        def report(epoch: int, val_accuracy: float) -> None:
            if epoch in trial_reported:
                return
            trial_reported.add(epoch)
            trial.report(float(val_accuracy), int(epoch))
            if trial.should_prune():
                trial.set_user_attr(STATE_ATTR, "pruned")
                trial.set_user_attr(
                    REASON_ATTR, f"stopped after epoch {epoch} (validation accuracy {val_accuracy:.4f})"
                )
                raise optuna.TrialPruned(f"pruned after epoch {epoch}")

        trial_reported: set[int] = set()  # a resumed run reports its earlier epochs once
        t1 = time.perf_counter()
        try:
            score = self.trainer(candidate, run_dir, report)
        except TrialFailed as exc:
            trial.set_user_attr(STATE_ATTR, "failed")
            trial.set_user_attr(REASON_ATTR, str(exc))
            raise
        except KeyboardInterrupt:
            trial.set_user_attr(STATE_ATTR, "interrupted")
            raise
        finally:
            self.last_timing["train"] = time.perf_counter() - t1
        trial.set_user_attr(STATE_ATTR, "complete")
        trial.set_user_attr("epochs", int(score.epochs))
        if score.extra:
            trial.set_user_attr("extra", score.extra)
        return float(score.val_accuracy)

    def _size_failures(self, trial, candidate: Candidate) -> list[str]:
        if self.sizer is None:
            return []
        size = self.sizer(candidate)
        trial.set_user_attr("size", size)
        out = []
        if self.limits.max_params is not None and size["parameters"] > self.limits.max_params:
            out.append(f"--max-params {self.limits.max_params}: parameters = {size['parameters']}")
        if self.limits.max_macs is not None and size["multiply_adds"] > self.limits.max_macs:
            out.append(f"--max-macs {self.limits.max_macs}: multiply-adds = {size['multiply_adds']}")
        return out
