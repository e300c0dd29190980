"""``formulac compile`` and ``formulac info``: networks from formulas (imports torch when run)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import UsageError
from .common import (
    add_backbone_arguments,
    add_memory_argument,
    add_set_argument,
    backbone_kwargs,
    formula_command,
    load_bound,
    positive_int,
    write_atomically,
)

__all__ = ["register"]


def register(subparsers) -> None:
    c = formula_command(
        subparsers,
        "compile",
        _compile,
        help="write a standalone PyTorch module for a formula on a backbone",
        description="Write the network of FILE on a backbone as a standalone Python file that "
        "imports torch only; its FormulaNet() builds with the chosen options as defaults.",
    )
    c.add_argument("-o", "--output", metavar="MODEL.py", help="file to write (default: standard output)")
    c.add_argument(
        "--overwrite",
        action="store_true",
        help="replace MODEL.py even if formulac did not write it (a module it wrote is always replaced)",
    )
    add_set_argument(c)
    add_backbone_arguments(c)
    add_memory_argument(c)

    i = formula_command(
        subparsers,
        "info",
        _info,
        help="parameters, multiply-adds, states kept and stage layout of a compiled network",
    )
    i.add_argument(
        "--input-size",
        type=_input_size,
        default=None,
        help=f"image side for multiply-adds, 1 to {MAX_INPUT_SIZE} (default: the backbone's; for mlp, "
        "the size its stem is built for)",
    )
    i.add_argument("--json", action="store_true", help="print JSON")
    add_set_argument(i)
    add_backbone_arguments(i)
    add_memory_argument(i, table=True)


#: The largest image side ``info`` runs a network on (it runs one forward pass).
MAX_INPUT_SIZE = 1024


def _input_size(text: str) -> int:
    side = positive_int(text)
    if side > MAX_INPUT_SIZE:
        raise argparse.ArgumentTypeError(f"expected an image side of at most {MAX_INPUT_SIZE}, got {text!r}")
    return side


def _compile(args) -> int:
    from ..codegen import PlanError, compile_source

    rec = load_bound(args.file, args.bindings)
    if args.output:
        _refuse_to_replace_work(Path(args.output), Path(args.file), args.overwrite)
    try:
        source = compile_source(rec, **backbone_kwargs(args))
    except PlanError as exc:
        raise exc.in_file(args.file) from None
    if args.output:
        write_atomically(args.output, source)
        print(f"{args.output}: FormulaNet ({args.backbone}) from {args.file}", file=sys.stderr)
    else:
        sys.stdout.write(source)
    return 0


def _refuse_to_replace_work(output: Path, formula: Path, overwrite: bool) -> None:
    """Refuse an ``-o`` that would replace the formula or a file formulac did not write (the
    user's own code): recompiling into a generated module is the common case, a typo the costly one."""
    from ..codegen import is_generated_module

    if not output.is_file():
        return  # a new file; a directory or a missing folder is write_atomically's error
    if output.samefile(formula):
        raise UsageError(f"-o {output} is the formula file: writing the module there would replace it")
    if overwrite:
        return
    try:
        with open(output, encoding="utf-8", errors="replace") as handle:
            beginning = handle.read(200)
    except OSError as exc:
        raise UsageError(f"cannot read {output}: {exc.strerror or exc}") from None
    if beginning and not is_generated_module(beginning):  # an empty file holds no work
        raise UsageError(
            f"{output} exists and formulac did not write it: pass --overwrite to replace it, or choose another -o"
        )


def _info(args) -> int:
    from ..codegen import PlanError, compile_network, get_backbone_info
    from ..codegen.info import network_info

    rec = load_bound(args.file, args.bindings)
    kwargs = backbone_kwargs(args)
    backbone = get_backbone_info(args.backbone)
    size = args.input_size or backbone.default_input_size
    if "input_size" in backbone.defaults:  # the network is built for one input size (mlp)
        option = kwargs.get("input_size")
        if args.input_size is not None and option is not None and option != args.input_size:
            raise UsageError(f"--input-size {args.input_size} and -O input_size={option} disagree")
        kwargs["input_size"] = size = option if args.input_size is None and option is not None else size
    try:
        model = compile_network(rec, **kwargs)
    except PlanError as exc:
        raise exc.in_file(args.file) from None
    in_channels = args.in_channels or backbone.default_in_channels
    info = network_info(rec, model, size, in_channels, backbone.name, kwargs)
    memory = None
    if args.memory is not None:  # --memory: every mode's predicted activation memory
        from ..codegen.memory_info import memory_estimates

        memory = memory_estimates(rec, kwargs, in_channels, size)
    if args.json:
        data = info.to_json()
        if memory is not None:
            data["memory"] = [e.to_json() for e in memory]
        print(json.dumps(data, indent=2))
    else:
        print(f"{args.file} on {args.backbone}")
        print(info.to_text())
        if memory is not None:
            from ..codegen.memory_info import memory_text

            print(memory_text(memory))
    return 0
