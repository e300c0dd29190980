"""Arguments and helpers that several commands share: formula files, --set, backbones."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..codegen.backbones import backbone_key, backbone_names, backbones_help, get_backbone
from ..codegen.memory_modes import DEFAULT_MEMORY_MODE, memory_mode_names, memory_modes_help
from ..errors import UsageError
from ..files import atomic_write
from ..ir import Recurrence
from ..limits import DEFAULT_BACKBONE
from ..numbers import nonnegative_int, option_value, positive_int
from ..numbers import parse_number as _parse_number

__all__ = [
    "formula_command",
    "add_set_argument",
    "parse_number",
    "parse_bindings",
    "load_all_bound",
    "load_bound",
    "add_backbone_arguments",
    "add_memory_argument",
    "backbone_kwargs",
    "positive_int",
    "nonnegative_int",
    "write_atomically",
]


def formula_command(
    subparsers,
    name: str,
    handler,
    *,
    help: str,
    description: str | None = None,
    several: bool = False,
    files_help: str = ".rec formula files",
) -> argparse.ArgumentParser:
    """The parser of a command that reads one formula file (``args.file``), or with ``several``
    one or more (``args.files``), and runs ``handler(args)``."""
    parser = subparsers.add_parser(name, help=help, description=description)
    if several:
        parser.add_argument("files", nargs="+", metavar="FILE", help=files_help)
    else:
        parser.add_argument("file", metavar="FILE", help=".rec formula file")
    parser.set_defaults(handler=handler)
    return parser


def add_set_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        dest="bindings",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="give a free symbol or constant a value (repeatable)",
    )


def parse_number(item: str, text: str):
    """``2``, ``-0.25``, ``1e-3``, ``1/3`` -> an exact SymPy rational (``--set item`` in errors)."""
    return _parse_number(f"--set {item}", text)


def parse_bindings(items: list[str]) -> dict:
    """``--set NAME=VALUE`` items -> {name: exact value}."""
    values = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise UsageError(f"--set expects NAME=VALUE, got {item!r}")
        values[name] = parse_number(item, text)
    return values


def load_all_bound(paths: list[str], bindings: list[str] | dict) -> list[Recurrence]:
    """Parse formula files and bind ``--set`` values; every name must belong to some file."""
    from ..formula import load_bound_recurrences

    values = parse_bindings(bindings) if isinstance(bindings, list) else dict(bindings)
    return load_bound_recurrences(paths, values)


def load_bound(path: str, bindings: list[str]) -> Recurrence:
    """Parse one formula file and apply ``--set`` values to it."""
    return load_all_bound([path], bindings)[0]


def default_recipe(args: argparse.Namespace) -> None:
    """With no ``--recipe``, the backbone's own recipe where it has one (transformers')."""
    if getattr(args, "recipe", None) is None and getattr(args, "backbone", None):
        args.recipe = get_backbone(args.backbone).default_recipe or None


def add_backbone_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("backbone")
    group.add_argument(
        "--backbone",
        default=DEFAULT_BACKBONE,
        type=backbone_key,
        # the registry's names; an unknown one is refused by the registry, which names them
        metavar="{" + ",".join(backbone_names()) + "}",
        help=backbones_help(),
    )
    group.add_argument(
        "--depth", type=positive_int, default=None, help="network depth (backbone's rule, e.g. 6n+2)"
    )
    group.add_argument("--num-classes", type=positive_int, default=None)
    group.add_argument("--in-channels", type=positive_int, default=None)
    group.add_argument("--shortcut", choices=("A", "B"), default=None, help="CIFAR shortcut option")
    group.add_argument(
        "--transition",
        choices=("reset", "project"),
        default="reset",
        help="how history states cross stage boundaries (default: reset)",
    )
    group.add_argument(
        "-O",
        "--backbone-option",
        dest="backbone_options",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="another backbone option, e.g. -O widen_factor=4 (repeatable)",
    )


def add_memory_argument(parser: argparse.ArgumentParser, table: bool = False) -> None:
    """``--memory MODE``: how the network keeps activations for backward (``formulac.compile``'s
    ``memory``). With ``table`` (``info``) the mode may be left out: ``--memory`` alone asks for
    the predicted activation memory of every mode, with a mode also builds that network."""
    help_text = memory_modes_help()
    if table:
        parser.add_argument(
            "--memory",
            nargs="?",
            const=DEFAULT_MEMORY_MODE,
            default=None,
            choices=memory_mode_names(),
            metavar="MODE",
            help="print the predicted activation memory per image of every mode; " + help_text,
        )
    else:
        parser.add_argument(
            "--memory",
            choices=memory_mode_names(),
            default=DEFAULT_MEMORY_MODE,
            metavar="MODE",
            help=help_text,
        )


def backbone_kwargs(args: argparse.Namespace) -> dict:
    """The keyword arguments of ``formulac.compile`` from the backbone arguments."""
    kwargs = {
        "backbone": args.backbone,
        "depth": args.depth,
        "transition": args.transition,
        "num_classes": args.num_classes,
        "in_channels": args.in_channels,
    }
    if getattr(args, "memory", None) not in (
        None,
        DEFAULT_MEMORY_MODE,
    ):  # standard runs keep their old config
        kwargs["memory"] = args.memory
    if args.shortcut is not None:
        kwargs["shortcut"] = args.shortcut
    for item in args.backbone_options:
        key, sep, text = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise UsageError(f"-O expects KEY=VALUE, got {item!r}")
        kwargs[key.strip()] = option_value(text.strip())
    return kwargs


def write_atomically(path: str | Path, text: str) -> None:
    """Write a file so that a failure leaves the old one intact (and its mode as it was)."""
    target = Path(path)
    if target.is_dir():
        raise UsageError(f"{path} is a directory")
    directory = target.parent if str(target.parent) else Path(".")
    if not directory.is_dir():
        raise UsageError(f"cannot write {path}: no directory {directory}")
    try:
        atomic_write(target, text)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
