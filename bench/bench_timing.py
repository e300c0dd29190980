"""Timing, options and JSON output shared by the benchmark scripts (they import it from this
folder)."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable


def seconds_per_call(
    fn: Callable[[], object], calls: int = 1, synchronize: Callable[[], object] | None = None
) -> tuple[float, float]:
    """(wall, CPU) seconds per call of ``fn()`` over ``calls`` calls; ``synchronize()``, when
    given, runs before each reading of the clocks (to wait for a GPU's queued work)."""
    if synchronize is not None:
        synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        fn()
    if synchronize is not None:
        synchronize()
    return (time.perf_counter() - wall) / calls, (time.process_time() - cpu) / calls


def whole_number_options(description: str, **defaults: int | tuple[int, str]) -> argparse.ArgumentParser:
    """A parser described by ``description`` with the integer options of :func:`add_whole_numbers`."""
    return add_whole_numbers(argparse.ArgumentParser(description=description), **defaults)


def add_whole_numbers(parser: argparse.ArgumentParser, **defaults: int | tuple[int, str]):
    """Add one integer option per keyword, in order, and return ``parser``: ``mlp_ratio=2`` is
    ``--mlp-ratio`` (default 2); a (default, help) pair gives the option a help line."""
    for name, default in defaults.items():
        value, help_text = default if isinstance(default, tuple) else (default, None)
        parser.add_argument("--" + name.replace("_", "-"), type=int, default=value, help=help_text)
    return parser


def write_json(path: str, figures, indent: int = 1) -> None:
    """Write ``figures`` to ``path`` as indented JSON."""
    with open(path, "w") as handle:
        json.dump(figures, handle, indent=indent)
