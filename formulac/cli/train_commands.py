"""``formulac train`` and ``formulac compare``: training runs of compiled formulas."""

from __future__ import annotations

from pathlib import Path

from ..errors import UsageError
from .common import (
    add_backbone_arguments,
    add_memory_argument,
    add_set_argument,
    backbone_kwargs,
    default_recipe,
    formula_command,
    load_all_bound,
    load_bound,
)

__all__ = ["register"]


def register(subparsers) -> None:
    from ..train.options import add_run_arguments, add_training_arguments

    t = formula_command(
        subparsers,
        "train",
        _train,
        help="train the network of a formula (checkpoints, metrics, resumable)",
        description="Train FILE's network on a data set under a recipe. Writes config.json, "
        "metrics.jsonl, checkpoint.pt (every epoch, atomically), summary.json and "
        "curves.png into --out. Under torchrun the run is data-parallel.",
    )
    c = formula_command(
        subparsers,
        "compare",
        _compare,
        help="train several formulas under one recipe and seeds; table with significance tests",
        description="Train every FILE with every seed under the same recipe (each run a train "
        "run under --out/<name>/seed<k>/) and print mean ± std test error, parameters "
        "and time, with a paired t-test for two formulas or a Friedman test for more.",
        several=True,
        files_help=".rec formula files (the first is the baseline)",
    )
    for parser in (t, c):
        add_set_argument(parser)
        add_backbone_arguments(parser)
        add_memory_argument(parser)
        add_training_arguments(parser)
        add_run_arguments(parser, compare=parser is c)


def _model_factory(rec, args):
    """``(build_model, describe)`` compiling the formula (picklable: ``compare --jobs``)."""
    from ..formula import network_factory

    return network_factory(rec, backbone_kwargs(args))


def _config(args):
    from ..train.options import config_from_args

    default_recipe(args)
    return config_from_args(args)


def _train(args) -> int:
    from ..train import train

    build_model, describe = _model_factory(load_bound(args.file, args.bindings), args)
    config = _config(args)
    out = args.out or str(Path("runs") / Path(args.file).stem)
    train(
        build_model,
        config,
        out,
        resume=args.resume,
        overwrite=args.overwrite,
        progress=args.progress,
        describe=describe,
        quiet=args.quiet,
    )
    return 0


def _compare(args) -> int:
    from ..train import compare

    names = [Path(f).stem for f in args.files]
    if len(set(names)) != len(names):
        raise UsageError("compare: two files have the same name; rename one so runs do not collide")
    # each --set name goes to the files that have it; one that no file has is an error
    recs = load_all_bound(args.files, args.bindings)
    models = []
    for name, rec in zip(names, recs):
        build_model, describe = _model_factory(rec, args)
        models.append((name, build_model, describe))
    config = _config(args)
    out = args.out or "runs/compare"
    compare(
        models,
        config,
        args.seeds,
        out,
        progress=args.progress,
        quiet=args.quiet,
        overwrite=args.overwrite,
        jobs=args.jobs,
    )
    return 0
