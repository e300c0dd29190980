"""``formulac search`` (explore a family of formulas) and ``formulac learned`` (read back the
coefficients that training chose)."""

from __future__ import annotations

import shlex
import sys

from ..numbers import epoch_count, process_count, seed_value, trial_count, wait_seconds
from .common import (
    add_backbone_arguments,
    add_memory_argument,
    add_set_argument,
    backbone_kwargs,
    default_recipe,
    parse_bindings,
    positive_int,
)

__all__ = ["register"]


def register(subparsers) -> None:
    from ..train.options import add_training_arguments

    s = subparsers.add_parser(
        "search",
        conflict_handler="resolve",  # --workers: processes here, not the image-decoding threads of train
        help="search a family of formulas: prune by analysis, train the survivors, confirm a winner",
        description="Search free symbols (--space), several formula files and backbone knobs with "
        "Optuna. Candidates failing --require are rejected untrained; the others train on the "
        "training set less a validation split and are stopped early by the pruner. Writes "
        "leaderboard.json/.md, best.rec and figures into --out; --confirm K retrains the K best "
        "and --baseline with --seeds on the full training set and tests them on the test set. "
        "Running the same command again continues the study.",
    )
    s.add_argument(
        "files", nargs="+", metavar="FILE", help=".rec formula files (several: one categorical choice)"
    )
    add_set_argument(s)
    add_backbone_arguments(s)
    add_memory_argument(s)
    add_training_arguments(s)
    g = s.add_argument_group("search")
    _add_candidate_arguments(g)
    _add_study_arguments(g)
    _add_confirmation_arguments(s.add_argument_group("confirmation"))
    r = s.add_argument_group("run")
    r.add_argument(
        "-o", "--out", metavar="DIR", default="runs/search", help="output directory (default runs/search)"
    )
    r.add_argument("--no-progress", dest="progress", action="store_false", help="no progress lines")
    r.add_argument("-q", "--quiet", action="store_true", help="print the result only")

    s.set_defaults(handler=_search)
    _register_learned(subparsers)


def _add_candidate_arguments(g) -> None:
    """What is searched and what a candidate must satisfy to be trained."""
    from ..train.options import add_value

    g.add_argument(
        "--objective",
        choices=["val_accuracy", "val_loss"],
        help="the score to optimise: val_accuracy (maximised; the default for image data) or "
        "val_loss (minimised; the default for text: data)",
    )
    g.add_argument(
        "--space",
        action="append",
        default=[],
        metavar="NAME=DOMAIN",
        help="a searched name: NAME=LO:HI, NAME=LO:HI:log or NAME=V1,V2,... (free symbols; backbone "
        "options such as depth=20,32,44 take lists); overrides the file's domain; repeatable",
    )
    g.add_argument(
        "--require",
        action="append",
        default=[],
        metavar="PROPERTY",
        help="reject candidates that fail: stable, consistent, linear, 'rate<=1', 'order<=2', "
        "first_block_weight...; repeatable",
    )
    add_value(g, "--max-params", positive_int, "N", "reject networks with more parameters")
    add_value(g, "--max-macs", positive_int, "N", "reject networks with more multiply-adds per image")


def _add_study_arguments(g) -> None:
    """The Optuna study: trials, sampler, pruner, workers, storage, heartbeats."""
    from ..search.strategies import AUTO, PRUNERS, SAMPLERS, sampler_choices
    from ..train.options import add_value

    add_value(
        g, "--trials", trial_count, "N", "trials in the study, all workers together (default 20)", default=20
    )
    g.add_argument(
        "--sampler",
        choices=sampler_choices(),
        default=AUTO,
        help="; ".join(f"{e.name}: {e.help}" for e in SAMPLERS.values())
        + f" (default {AUTO}: grid when every domain is finite, else tpe)",
    )
    g.add_argument(
        "--pruner",
        choices=tuple(PRUNERS),
        default="hyperband",
        help="early stopping: " + "; ".join(f"{e.name}: {e.help}" for e in PRUNERS.values()),
    )
    add_value(g, "--sampler-seed", seed_value, "N", "seed of the sampler (default: random, recorded)")
    add_value(
        g,
        "--workers",
        process_count,
        "N",
        "worker processes on this machine (one per GPU)",
        default=1,
        dest="search_workers",
    )
    g.add_argument(
        "--storage",
        metavar="URL",
        help="study database shared by machines (e.g. postgresql://user@host/db); default: DIR/study.db",
    )
    g.add_argument("--study", metavar="NAME", help="study name in the storage (default formulac-search)")
    add_value(
        g,
        "--heartbeat",
        wait_seconds,
        "S",
        "seconds between heartbeats of a running trial (default 10)",
        default=10,
    )
    add_value(
        g,
        "--grace",
        wait_seconds,
        "S",
        "seconds without heartbeat before a trial is retried (default 3 heartbeats)",
    )
    add_value(
        g,
        "--analysis-depth",
        positive_int,
        "N",
        "depth of the analysis of each candidate (default 10)",
        default=10,
    )


def _add_confirmation_arguments(c) -> None:
    """Retraining the best candidates and a baseline with several seeds."""
    from ..train.options import add_seeds_argument, add_value

    add_value(c, "--confirm", int, "K", "retrain the K best with --seeds on the full training set", default=0)
    add_seeds_argument(c, "seeds of the confirmation (default 3)")
    add_value(
        c,
        "--confirm-epochs",
        epoch_count,
        "N",
        "epochs of the confirmation's runs (default: the search's --epochs); the search only "
        "ranks candidates, so it may train them for fewer",
    )
    add_value(
        c,
        "--confirm-limit-train",
        _limit_or_all,
        "N|all",
        "training examples of the confirmation's runs: the first N, or all (default: the "
        "search's --limit-train)",
    )
    c.add_argument(
        "--baseline",
        metavar="FILE",
        help="the formula the confirmation compares against (e.g. examples/resnet.rec)",
    )


def _register_learned(subparsers) -> None:
    learned = subparsers.add_parser(
        "learned",
        help="the formula with the coefficients that training learned (param k_n, gates, scales)",
        description="Read RUN_DIR (a formulac train run), print its formula with the trained "
        "values of its parameters per stage, write it as a .rec file, and analyse it.",
    )
    learned.add_argument("run_dir", metavar="RUN_DIR", help="a run directory (config.json, checkpoint.pt)")
    learned.add_argument(
        "-o", "--output", metavar="FILE.rec", help="where to write the formula (default RUN_DIR/learned.rec)"
    )
    learned.add_argument(
        "--depth", type=positive_int, default=None, help="analysis depth (default: the stage's steps)"
    )
    learned.add_argument("--json", action="store_true", help="print JSON")
    learned.set_defaults(handler=_learned)


def _search(args) -> int:
    from ..errors import UsageError
    from ..search.engine import StudyOptions
    from ..search.objective import Limits
    from ..search.run import SearchRequest, run_search
    from ..train.options import config_from_args

    text = (args.data or "").strip().lower().startswith("text:")  # a corpus has its own validation part
    if args.val_fraction is None and not text:
        args.val_fraction = 0.1  # the search selects on a validation split, never on the test set
    if not text and args.val_fraction <= 0:
        raise UsageError("search selects on a validation split: --val-fraction must be above 0 (default 0.1)")
    default_recipe(args)
    config = config_from_args(args)
    options = StudyOptions(
        out=args.out,
        trials=args.trials,
        storage=args.storage,
        study=args.study,
        sampler=args.sampler,
        pruner=args.pruner,
        seed=args.sampler_seed,
        epochs=config.epochs,
        heartbeat=args.heartbeat,
        grace=args.grace,
    )
    request = SearchRequest(
        files=tuple(args.files),
        space=tuple(args.space),
        require=tuple(args.require),
        bindings=parse_bindings(args.bindings),
        backbone_kwargs=backbone_kwargs(args),
        config=config,
        options=options,
        workers=args.search_workers,
        limits=Limits(args.max_params, args.max_macs),
        analysis_depth=args.analysis_depth,
        confirm=args.confirm,
        seeds=tuple(args.seeds),
        baseline=args.baseline,
        confirm_train=_confirm_train(args),
        objective=args.objective,
        progress=args.progress,
        quiet=args.quiet,
        origin="formulac " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
    )
    run_search(request)
    return 0


ALL = "all"


def _limit_or_all(text: str):
    """--confirm-limit-train: a positive count, or ``all`` (the whole training set)."""
    return ALL if text.strip().lower() == ALL else positive_int(text)


def _confirm_train(args) -> dict:
    """The confirmation's training settings that differ from the search's."""
    changes = {}
    if args.confirm_epochs is not None:
        changes["epochs"] = args.confirm_epochs
    if args.confirm_limit_train is not None:
        changes["limit_train"] = None if args.confirm_limit_train == ALL else args.confirm_limit_train
    return changes


def _learned(args) -> int:
    import json

    from ..search.learned import learned

    result = learned(args.run_dir, output=args.output, depth=args.depth)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(result.to_text(), end="")
    return 0
