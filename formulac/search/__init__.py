"""Design by search: explore a family of formulas (free symbols with domains, several files,
backbone knobs), reject candidates by analysis before training, train the survivors with early
stopping, and confirm the winners against a baseline. Built on Optuna.

>>> import formulac
>>> board = formulac.search(["examples/two_step_free.rec"], space=["a=-0.9:0.9"],
...                         require=["stable"], trials=24, epochs=4, out="runs/search-a")  # doctest: +SKIP
>>> board["best"]["params"]                                                                 # doctest: +SKIP
{'a': -0.31}

Modules: ``space`` (domains, Optuna distributions, candidates), ``properties`` (analysis
summary, ``--require``), ``objective`` (one trial), ``training`` (the trial's training run),
``engine`` (storage, sampler, pruner, the worker loop), ``report`` (leaderboard, best.rec,
figures), ``confirm`` (retraining with seeds and tests), ``learned`` (trained coefficients).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from ..callable_package import make_callable
from ..limits import DEFAULT_BACKBONE, DEFAULT_MEMORY_MODE

__all__ = ["search"]


def search(
    files: str | Sequence[str],
    *,
    space: Sequence[str] | Mapping = (),
    require: Sequence[str] = (),
    bindings: Mapping | None = None,
    backbone: str = DEFAULT_BACKBONE,
    depth: int | None = None,
    backbone_options: Mapping | None = None,
    memory: str = DEFAULT_MEMORY_MODE,
    trials: int = 20,
    out: str = "runs/search",
    storage: str | None = None,
    study: str | None = None,
    sampler: str = "auto",
    pruner: str = "hyperband",
    seed: int | None = None,
    workers: int = 1,
    confirm: int = 0,
    seeds: int | Sequence[int] = 3,
    baseline: str | None = None,
    confirm_train: Mapping | None = None,
    max_params: int | None = None,
    max_macs: int | None = None,
    analysis_depth: int = 10,
    heartbeat: int = 10,
    grace: int | None = None,
    config=None,
    trainer: Callable | None = None,
    objective: str | None = None,
    quiet: bool = True,
    **train_options,
) -> dict:
    """Search a family of formulas; returns the leaderboard that ``DIR/leaderboard.json`` holds.

    ``space``: ``--space`` items (``"a=-0.9:0.9"``) or a mapping name -> Domain / item text /
    list of values. ``config``: a :class:`~formulac.train.TrainConfig`, or ``train_options``
    for :func:`~formulac.train.make_config` (``data="synthetic", epochs=4, val_fraction=0.1``).
    ``trainer(candidate, run_dir, report) -> TrialScore`` replaces training (see
    :mod:`formulac.search.objective`). ``confirm_train``: the confirmation's training settings
    that differ from the search's (``{"epochs": 4, "limit_train": None}``: 4 epochs on the
    whole training set). ``objective``: ``"val_accuracy"`` (maximised) or
    ``"val_loss"`` (minimised; the default for ``text:`` data). Mistakes raise :class:`~formulac.UsageError`.
    """
    from .engine import StudyOptions
    from .objective import Limits
    from .run import SearchRequest, run_search

    paths = (files,) if isinstance(files, str) else tuple(str(f) for f in files)
    config, epochs = _training_config(config, trainer, confirm, backbone, train_options)
    options = StudyOptions(
        out=str(out),
        trials=trials,
        storage=storage,
        study=study,
        sampler=sampler,
        pruner=pruner,
        seed=seed,
        epochs=epochs,
        heartbeat=heartbeat,
        grace=grace,
    )
    kwargs = {"backbone": backbone, "depth": depth, **dict(backbone_options or {})}
    if memory != DEFAULT_MEMORY_MODE:  # as the CLI: standard runs keep their old config
        kwargs["memory"] = memory
    seed_list = tuple(range(seeds)) if isinstance(seeds, int) else tuple(seeds)
    request = SearchRequest(
        files=paths,
        space=tuple(space) if not isinstance(space, Mapping) else dict(space),
        require=tuple(require),
        bindings=dict(bindings or {}),
        backbone_kwargs=kwargs,
        config=config,
        options=options,
        workers=workers,
        limits=Limits(max_params, max_macs),
        analysis_depth=analysis_depth,
        confirm=confirm,
        seeds=seed_list,
        baseline=baseline,
        confirm_train=dict(confirm_train or {}),
        trainer=trainer,
        objective=objective,
        progress=not quiet,
        quiet=quiet,
    )
    return run_search(request)


def _training_config(config, trainer: Callable | None, confirm: int, backbone: str, train_options: dict):
    """The trials' training configuration (None where a ``trainer`` replaces training and
    nothing is confirmed) and their epochs: ``config`` as given, or made from
    ``train_options``, which are refused beside a ``config``."""
    from ..errors import UsageError

    fake_epochs = (
        train_options.pop("epochs", 1) if trainer is not None and config is None and not confirm else None
    )
    if config is None and (trainer is None or confirm):
        from ..train import make_config

        if not str(train_options.get("data", "")).startswith("text:"):  # a corpus has its own
            train_options.setdefault("val_fraction", 0.1)  # selection never sees the test set
        try:
            config = make_config(train_options.pop("recipe", None), backbone=backbone, **train_options)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    elif train_options:
        raise UsageError(f"unexpected options {', '.join(sorted(train_options))}: pass them in config")
    return config, config.epochs if config is not None else int(fake_epochs)


make_callable(__name__, search)
