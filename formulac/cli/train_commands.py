"""``formulac train`` and ``formulac compare``: training runs of compiled formulas."""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..errors import UsageError
from .common import add_backbone_arguments, add_set_argument, backbone_kwargs, load_all_bound, load_bound

__all__ = ["register"]


def register(subparsers) -> None:
    from ..train.options import add_run_arguments, add_training_arguments

    t = subparsers.add_parser(
        "train",
        help="train the network of a formula (checkpoints, metrics, resumable)",
        description="Train FILE's network on a data set under a recipe. Writes config.json, "
        "metrics.jsonl, checkpoint.pt (every epoch, atomically), summary.json and "
        "curves.png into --out. Under torchrun the run is data-parallel.",
    )
    t.add_argument("file", metavar="FILE", help=".rec formula file")
    add_set_argument(t)
    add_backbone_arguments(t)
    add_training_arguments(t)
    add_run_arguments(t)
    t.set_defaults(handler=_train)

    c = subparsers.add_parser(
        "compare",
        help="train several formulas under one recipe and seeds; table with significance tests",
        description="Train every FILE with every seed under the same recipe (each run a train "
        "run under --out/<name>/seed<k>/) and print mean ± std test error, parameters "
        "and time, with a paired t-test for two formulas or a Friedman test for more.",
    )
    c.add_argument("files", nargs="+", metavar="FILE", help=".rec formula files (the first is the baseline)")
    add_set_argument(c)
    add_backbone_arguments(c)
    add_training_arguments(c)
    add_run_arguments(c, compare=True)
    c.set_defaults(handler=_compare)


class FormulaModel:
    """``build_model(in_channels, num_classes, input_size)`` for :func:`formulac.train.train`:
    compiles the network of a formula file with ``--set`` values and backbone options.

    Picklable (it carries the file's path and reloads it), so that ``compare --jobs`` can
    build in worker processes.  ``describe`` is the run's description of the model; each
    build records there the SHA-256 of the source it compiled (``formulac compile`` writes the
    same file for the same classes and input channels)."""

    def __init__(self, path: str, bindings: list[str], kwargs: dict):
        from ..codegen import compile_source, get_backbone_info

        self.path, self.bindings, self.kwargs = path, list(bindings), dict(kwargs)
        self._rec = load_bound(path, self.bindings)
        self._takes_input_size = "input_size" in get_backbone_info(kwargs["backbone"]).defaults
        compile_source(self._rec, **kwargs)  # bad options fail here, before any data is loaded
        self.describe = {
            "formula": _formula_text(self._rec),
            "file": Path(path).name,
            **{k: v for k, v in kwargs.items() if v is not None},
        }

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_rec"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._rec = load_bound(self.path, self.bindings)

    def __call__(self, in_channels: int, num_classes: int, input_size: int):
        from ..codegen import compile_source, load_source

        options = dict(self.kwargs)
        options["in_channels"] = options["in_channels"] or in_channels
        options["num_classes"] = options["num_classes"] or num_classes
        if self._takes_input_size and "input_size" not in options:
            options["input_size"] = input_size
        source = compile_source(self._rec, **options)
        self.describe["source_sha256"] = hashlib.sha256(source.encode()).hexdigest()
        return load_source(source, "net").FormulaNet()


def _formula_text(rec) -> str:
    from ..printing import to_rec

    return to_rec(rec)


def _config(args):
    from ..train.options import config_from_args

    return config_from_args(args)


def _train(args) -> int:
    from ..train import train

    build_model = FormulaModel(args.file, args.bindings, backbone_kwargs(args))
    config = _config(args)
    out = args.out or str(Path("runs") / Path(args.file).stem)
    train(
        build_model,
        config,
        out,
        resume=args.resume,
        overwrite=args.overwrite,
        progress=args.progress,
        describe=build_model.describe,
        quiet=args.quiet,
    )
    return 0


def _compare(args) -> int:
    from ..train import compare

    names = [Path(f).stem for f in args.files]
    if len(set(names)) != len(names):
        raise UsageError("compare: two files have the same name; rename one so runs do not collide")
    recs = load_all_bound(args.files, args.bindings)  # every --set name must belong to some file
    models = []
    for path, name, rec in zip(args.files, names, recs):
        names_here = set(rec.symbols) | set(rec.constants)
        mine = [item for item in args.bindings if item.partition("=")[0].strip() in names_here]
        build_model = FormulaModel(path, mine, backbone_kwargs(args))
        models.append((name, build_model, build_model.describe))
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
