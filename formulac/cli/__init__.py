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

# command -> the module that registers it; only the module of the command being run is
# imported, so that `formulac check` does not pay for (or import) torch.
_COMMANDS = {
    "check": "analysis_commands",
    "unroll": "analysis_commands",
    "analyze": "analysis_commands",
    "diff": "analysis_commands",
    "compile": "build_commands",
    "info": "build_commands",
    "train": "train_commands",
    "search": "search_commands",
    "learned": "search_commands",
    "compare": "train_commands",
    "sample": "train_commands",
    "plot": "display_commands",
    "report": "display_commands",
}


class _Parser(argparse.ArgumentParser):
    """argparse that reports mistakes as ``formulac: error: ...`` with exit status 2."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        raise UsageError(message)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser with every command, or only with ``command``'s module when it is known."""
    import importlib

    parser = _Parser(
        prog="formulac",
        description="Compile recursion formulas into neural networks, and analyse them.",
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    modules = [_COMMANDS[command]] if command in _COMMANDS else list(dict.fromkeys(_COMMANDS.values()))
    for name in modules:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    try:
        parser = build_parser(command)
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
