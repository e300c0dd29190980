"""The ``formulac`` command line: one sub-command module per stage of the pipeline.

Each module exposes ``register(subparsers)``, which adds its commands; a command's handler
takes the parsed arguments and returns an exit status. Handlers import heavy libraries (torch)
only when they run, so ``check``, ``unroll``, ``analyze`` and ``diff`` never import torch.
"""

from __future__ import annotations

import argparse
import sys

from ..errors import FormulacError, UsageError

__all__ = ["main", "build_parser"]

_COMMAND_MODULES = ("analysis_commands", "build_commands", "train_commands", "display_commands")


class _Parser(argparse.ArgumentParser):
    """argparse that reports mistakes as ``formulac: error: ...`` with exit status 2."""

    def error(self, message: str):  # noqa: D401 - argparse API
        self.print_usage(sys.stderr)
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = _Parser(
        prog="formulac",
        description="Compile recursion formulas into neural networks, and analyse them.",
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:  # a stage not installed in this checkout
            if exc.name != f"{__name__}.{name}":
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        return int(args.handler(args) or 0)
    except FormulacError as exc:
        print(exc.format(), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("formulac: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return "formulac " + version("formulac")
    except PackageNotFoundError:
        return "formulac (not installed)"
