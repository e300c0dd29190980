"""The samplers and pruners a search may name: one table each, name -> factory.

A new sampler or pruner is one entry (:func:`register_sampler`, :func:`register_pruner`); the
command line's choices and help are read from these tables, and :func:`resolve_sampler` is the
one place that turns ``auto`` into a sampler.

Seeding. A seeded sampler that is created again (a study continued with more ``--trials``, a
rerun after a kill, a second worker or machine with the same command) would draw the same
sequence again. So every sampler but the grid draws trial k's values from a fresh sampler
seeded by (seed, k) (:func:`per_trial_seed`): Optuna numbers the trials of a study once,
atomically in its storage, so no two trials share a seed, and the same seed still gives the
same values to the same trial numbers. The grid sampler needs no such help: it proposes only
grid points that no trial has taken.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..errors import UsageError

__all__ = [
    "AUTO",
    "PRUNERS",
    "SAMPLERS",
    "PrunerEntry",
    "SamplerEntry",
    "StrategyEntry",
    "build_pruner",
    "build_sampler",
    "check_pruner",
    "per_trial_seed",
    "register_pruner",
    "register_sampler",
    "resolve_sampler",
    "sampler_choices",
    "trial_seed",
]

#: The sampler name that :func:`resolve_sampler` replaces with grid or TPE.
AUTO = "auto"


@dataclass(frozen=True)
class StrategyEntry:
    """A registered sampler or pruner: its ``name``, its ``factory`` and the ``help`` that
    ``--sampler`` / ``--pruner`` show."""

    name: str
    factory: Callable
    help: str


@dataclass(frozen=True)
class SamplerEntry(StrategyEntry):
    """``factory(space, seed)`` -> an Optuna sampler. ``grid``: the sampler proposes the points
    of ``space.grid()`` (finite domains only) and seeds itself; otherwise every trial is drawn
    by a sampler of its own seed."""

    grid: bool = False


@dataclass(frozen=True)
class PrunerEntry(StrategyEntry):
    """``factory(epochs)`` -> an Optuna pruner (``epochs``: a trial's training epochs)."""


SAMPLERS: dict[str, SamplerEntry] = {}
PRUNERS: dict[str, PrunerEntry] = {}


def register_sampler(name: str, factory: Callable, help: str, grid: bool = False) -> None:
    """Make ``--sampler NAME`` build ``factory(space, seed)``."""
    if name == AUTO or not name.replace("-", "_").isidentifier():
        raise ValueError(f"a sampler cannot be named {name!r}")
    SAMPLERS[name] = SamplerEntry(name, factory, help, grid)


def register_pruner(name: str, factory: Callable, help: str) -> None:
    """Make ``--pruner NAME`` build ``factory(epochs)``."""
    if not name.replace("-", "_").isidentifier():
        raise ValueError(f"a pruner cannot be named {name!r}")
    PRUNERS[name] = PrunerEntry(name, factory, help)


def sampler_choices() -> tuple[str, ...]:
    return (AUTO, *SAMPLERS)


def resolve_sampler(name: str, space) -> SamplerEntry:
    """The entry that ``--sampler NAME`` means for ``space``: ``auto`` is grid when every domain
    is finite, else TPE. An unknown name, or a grid over an interval, is a UsageError."""
    if name == AUTO:
        name = "grid" if space.is_finite else "tpe"
    entry = SAMPLERS.get(name)
    if entry is None:
        raise UsageError(f"--sampler must be one of {', '.join(sampler_choices())}, not {name!r}")
    if entry.grid and not space.is_finite:
        interval = next(d.name for d in space.symbols if not d.domain.is_finite)
        raise UsageError(
            f"--sampler {name} needs finite domains; {interval} is an interval (write {interval}=V1,V2,...)"
        )
    return entry


def check_pruner(name: str) -> PrunerEntry:
    entry = PRUNERS.get(name)
    if entry is None:
        raise UsageError(f"--pruner must be one of {', '.join(PRUNERS)}, not {name!r}")
    return entry


def build_sampler(name: str, space, seed: int | None):
    """The sampler of a study (``seed`` None: unseeded)."""
    entry = resolve_sampler(name, space)
    if entry.grid:
        # one shuffle of the grid for every worker
        return entry.factory(space, seed or 0)
    if seed is None:
        return entry.factory(space, None)
    return per_trial_seed(lambda s: entry.factory(space, s), seed)


def build_pruner(name: str, epochs: int):
    return check_pruner(name).factory(max(epochs, 1))


def trial_seed(seed: int, number: int) -> int:
    """A well-mixed 32-bit seed of (seed, trial number) (NumPy's SeedSequence)."""
    import numpy as np

    return int(np.random.SeedSequence([seed & (2**63 - 1), number + 1]).generate_state(1)[0])


def _per_trial_seed_class():
    import optuna

    class PerTrialSeedSampler(optuna.samplers.BaseSampler):
        """Draws trial k with ``build(trial_seed(seed, k))``: a fresh sampler for every trial."""

        def __init__(self, build: Callable[[int], object], seed: int):
            self._build = build
            self._seed = seed
            self._inner = build(trial_seed(seed, -1))

        def before_trial(self, study, trial) -> None:
            self._inner = self._build(trial_seed(self._seed, trial.number))
            self._inner.before_trial(study, trial)

        def infer_relative_search_space(self, study, trial):
            return self._inner.infer_relative_search_space(study, trial)

        def sample_relative(self, study, trial, search_space):
            return self._inner.sample_relative(study, trial, search_space)

        def sample_independent(self, study, trial, param_name, param_distribution):
            return self._inner.sample_independent(study, trial, param_name, param_distribution)

        def after_trial(self, study, trial, state, values) -> None:
            self._inner.after_trial(study, trial, state, values)

        def reseed_rng(self) -> None:
            self._inner.reseed_rng()

    return PerTrialSeedSampler


def per_trial_seed(build: Callable[[int], object], seed: int):
    """An Optuna sampler that draws trial k with ``build(trial_seed(seed, k))`` (Optuna is
    imported only when a study is built)."""
    return _per_trial_seed_class()(build, seed)


# --------------------------------------------------------------------------------------------
# the built-in entries


def _tpe(space, seed):
    import optuna

    return optuna.samplers.TPESampler(seed=seed)


def _random(space, seed):
    import optuna

    return optuna.samplers.RandomSampler(seed=seed)


def _grid(space, seed):
    import optuna

    return optuna.samplers.GridSampler(space.grid(), seed=seed)


def _hyperband(epochs):
    import optuna

    return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs, reduction_factor=3)


def _successive_halving(epochs):
    import optuna

    return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)


def _median(epochs):
    import optuna

    return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)


def _no_pruning(epochs):
    import optuna

    return optuna.pruners.NopPruner()


register_sampler("tpe", _tpe, "Optuna's tree-structured Parzen estimator")
register_sampler("random", _random, "independent uniform draws")
register_sampler("grid", _grid, "every point of finite domains, each once", grid=True)
register_pruner("hyperband", _hyperband, "Hyperband over the epochs (default)")
register_pruner("sha", _successive_halving, "successive halving")
register_pruner("median", _median, "stop below the median of earlier trials at the same epoch")
register_pruner("none", _no_pruning, "train every candidate to the end")
