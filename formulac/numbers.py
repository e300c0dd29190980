"""Numbers and option values typed by a user (``--set``, ``--space``, ``-O``, counts), read exactly."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable

from .errors import UsageError
from .limits import (
    MAX_EPOCH_TOKENS,
    MAX_EPOCHS,
    MAX_PROCESSES,
    MAX_SAMPLE_TOKENS,
    MAX_SEED,
    MAX_TRIALS,
    MAX_WAIT_SECONDS,
)

__all__ = [
    "parse_number",
    "option_value",
    "whole_number",
    "positive_int",
    "nonnegative_int",
    "at_most",
    "epoch_count",
    "epoch_tokens",
    "trial_count",
    "process_count",
    "thread_count",
    "seed_value",
    "sample_tokens",
    "wait_seconds",
]

# ASCII digits only: Python reads "٣" (and int() reads "１２") as numbers, the language does not
_NUMBER = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE]([+-]?\d+))?$", re.ASCII)


def parse_number(what: str, text: str):
    """``2``, ``-0.25``, ``1e-3``, ``1/3`` -> an exact SymPy rational.

    ``what`` starts every error message (``--set a=x``), which is a :class:`UsageError`."""
    import sympy

    parts = text.strip().split("/")
    if len(parts) > 2 or not all(_NUMBER.match(p.strip()) for p in parts):
        raise UsageError(f"{what}: {text.strip()!r} is not a number (write 2, -0.25, 1e-3 or 1/3)")
    for p in parts:
        m = _NUMBER.match(p.strip())
        if m.group(1) is not None and abs(int(m.group(1))) > 400:
            raise UsageError(f"{what}: {text.strip()!r} is out of range")
    values = [sympy.Rational(p.strip()) for p in parts]
    if len(values) == 2:
        if values[1] == 0:
            raise UsageError(f"{what}: division by zero")
        value = values[0] / values[1]
    else:
        value = values[0]
    # a network computes in doubles: a value they cannot hold would silently become 0 or inf
    if value != 0 and (abs(value) > _LARGEST_DOUBLE or float(abs(value)) == 0):
        raise UsageError(
            f"{what}: {text.strip()!r} is outside the range of a double (about 5e-324 to 1.8e308 in size)"
        )
    return value


_LARGEST_DOUBLE = 1.7976931348623157e308


def option_value(text: str):
    """A backbone option's value: true/false, an int, a float, a comma list of these, or text."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float) if text.isascii() else ():  # "١٢" stays text, as in the language
        try:
            return kind(text)
        except ValueError:
            pass
    if "," in text:
        return [option_value(t) for t in text.split(",")]
    return text


def whole_number(text: str, minimum: int, wanted: str) -> int:
    """``text`` as an int of at least ``minimum``; an ``argparse.ArgumentTypeError`` saying
    ``expected WANTED, got TEXT`` otherwise (argparse prefixes the option's name)."""
    try:
        value = int(text) if text.isascii() else minimum - 1
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """argparse type: 1, 2, 3, ..."""
    return whole_number(text, 1, "a positive whole number")


def nonnegative_int(text: str) -> int:
    """argparse type: 0, 1, 2, ... (a depth of 0 is the input itself)."""
    return whole_number(text, 0, "a whole number >= 0")


def at_most(maximum: int, parse: Callable[[str], int] = positive_int) -> Callable[[str], int]:
    """argparse type: what ``parse`` reads, refused above ``maximum`` (``expected at most
    MAXIMUM, got TEXT``); the maximum is a limit of :mod:`formulac.limits`."""

    def bounded(text: str) -> int:
        value = parse(text)
        if value > maximum:
            raise argparse.ArgumentTypeError(f"expected at most {maximum:,}, got {text!r}")
        return value

    bounded.__name__ = parse.__name__  # argparse names the type in some of its messages
    return bounded


# the counts whose every unit costs time or memory, each with its limit
epoch_count = at_most(MAX_EPOCHS)
epoch_tokens = at_most(MAX_EPOCH_TOKENS)
trial_count = at_most(MAX_TRIALS)
process_count = at_most(MAX_PROCESSES)
thread_count = at_most(MAX_PROCESSES, nonnegative_int)  # 0: the library's default
seed_value = at_most(MAX_SEED, nonnegative_int)
sample_tokens = at_most(MAX_SAMPLE_TOKENS)
wait_seconds = at_most(MAX_WAIT_SECONDS)
