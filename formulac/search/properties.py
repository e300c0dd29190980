"""What the analysis says about a candidate, and the requirements that reject it untrained.

:func:`summarize` keeps the part of ``analyze(...).to_json()`` that the leaderboard stores
(roots, spectral radius, stability, consistency, a block-weight summary). :data:`PROPERTIES`
is the registry of properties a ``--require`` may name; another analysis joins the search by
adding one entry.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..errors import UsageError
from ..numbers import parse_number

__all__ = ["PROPERTIES", "Property", "Requirement", "parse_requirement", "summarize"]


def summarize(analysis) -> dict:
    """The analysis facts stored beside a trial's score (JSON values, analyze --json's rule)."""
    data = analysis.to_json()
    weights = data.get("block_weights")
    summary = {
        key: data.get(key)
        for key in (
            "order",
            "linear",
            "depth",
            "characteristic_polynomial",
            "roots",
            "stability",
            "rate",
            "rate_multiplicity",
            "consistent",
            "block_weights",
            "initial_weights",
            "invertible",
            "invertible_reason",
            "notes",
        )
    }
    rebuilding = data.get("reconstruction") or {}
    summary["rebuild_growth"] = rebuilding.get("growth")
    summary["block_weight_summary"] = _weight_summary(weights)
    return summary


def _weight_summary(weights) -> dict | None:
    """For the first block: weight of the earliest and the latest step in x_N, and their ratio."""
    if not weights:
        return None
    key, values = next(iter(weights.items()))
    numbers = [v for v in values if isinstance(v, (int, float))]
    if len(numbers) != len(values) or not numbers:
        return None
    first, last = float(numbers[0]), float(numbers[-1])
    return {
        "block": key,
        "first": first,
        "last": last,
        "min": float(min(numbers)),
        "max": float(max(numbers)),
        "first_over_last": first / last if last else None,
    }


@dataclass(frozen=True)
class Property:
    """A property of a candidate: ``kind`` "bool" or "number"; ``value(summary)`` is None when
    the property does not exist for it (a non-linear formula has no spectral radius)."""

    name: str
    kind: str
    value: Callable[[dict], object]
    help: str
    #: why the property does not exist for a candidate (its value is None)
    absent: Callable[[dict], str] = lambda summary: "it is not linear"


def _number(key: str) -> Callable[[dict], float | None]:
    def get(summary: dict):
        v = summary.get(key)
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    return get


def _stable(summary: dict) -> bool | None:
    s = summary.get("stability")
    return None if s is None else s in ("contracting", "neutral")


def _not_invertible(summary: dict) -> str:
    reason = summary.get("invertible_reason")
    if summary.get("invertible") is False:
        return "it is not invertible" + (f" ({reason})" if reason else "")
    return "it has no analysis of rebuilt states"


def _no_numeric_weights(summary: dict) -> str:
    return (
        "its block weights are not all numbers" if summary.get("block_weights") else "it has no block weights"
    )


def _first_weight(summary: dict) -> float | None:
    w = summary.get("block_weight_summary")
    return None if w is None else w["first"]


PROPERTIES: dict[str, Property] = {
    p.name: p
    for p in (
        Property("stable", "bool", _stable, "stability is contracting or neutral (not expanding)"),
        Property(
            "consistent", "bool", lambda s: s.get("consistent"), "a consistent discretisation of dx/dt = F(x)"
        ),
        Property("linear", "bool", lambda s: s.get("linear"), "linear in the states"),
        Property("rate", "number", _number("rate"), "spectral radius of the linear part"),
        Property("spectral_radius", "number", _number("rate"), "the same as rate"),
        Property("order", "number", _number("order"), "how many past states a step reads"),
        Property(
            "first_block_weight",
            "number",
            _first_weight,
            "weight of the step-0 block output in x_N",
            _no_numeric_weights,
        ),
        Property(
            "invertible",
            "bool",
            lambda s: s.get("invertible"),
            "each step can run backward (what --memory reversible needs)",
        ),
        Property(
            "rebuild_growth",
            "number",
            _number("rebuild_growth"),
            "growth per step of an error in states rebuilt backward (invertible formulas)",
            _not_invertible,
        ),
    )
}

_OPS = {
    "<=": operator.le,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    ">": operator.gt,
}
_REQUIREMENT = re.compile(r"^\s*(not\s+)?([A-Za-z_]\w*)\s*(?:(<=|>=|==|!=|<|>|=)\s*(\S.*?))?\s*$")


@dataclass(frozen=True)
class Requirement:
    """``stable``, ``not linear``, ``rate<=1``: a test of one property."""

    text: str
    prop: Property
    op: str = "=="
    target: object = True

    def failure(self, summary: dict) -> str | None:
        """None when the candidate passes; otherwise why it fails (property and value)."""
        value = self.prop.value(summary)
        if value is None:
            why = self.prop.absent(summary)
            return f"{self.prop.name} does not exist for this formula: {why}; required {self.text}"
        if _OPS[self.op](value, self.target):
            return None
        if self.prop.kind == "bool":
            detail = ""
            if self.prop.name == "stable":
                detail = f" ({summary.get('stability')}, spectral radius {_show(summary.get('rate'))})"
            elif self.prop.name == "invertible" and summary.get("invertible_reason"):
                detail = f" ({summary['invertible_reason']})"
            return f"{'not ' if self.target else ''}{self.prop.name}{detail}, required {self.text}"
        return f"{self.prop.name} = {_show(value)}, required {self.text}"


def _show(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:.6g}"
    return str(value)


def parse_requirement(text: str) -> Requirement:
    """Parse one ``--require``; an unknown property or a malformed test is a UsageError."""
    m = _REQUIREMENT.match(text)
    known = ", ".join(PROPERTIES)
    if not m:
        raise UsageError(
            f"--require {text!r}: write a property (stable) or a test (rate<=1); properties: {known}"
        )
    negate, name, op, target = m.groups()
    prop = PROPERTIES.get(name)
    if prop is None:
        raise UsageError(f"--require {text}: unknown property {name!r}; properties: {known}")
    if op is None:
        if prop.kind != "bool":
            raise UsageError(f"--require {text}: {name} is a number; compare it, e.g. {name}<=1")
        return Requirement(text.strip(), prop, "==", not negate)
    if negate:
        raise UsageError(f"--require {text}: 'not' applies to a yes/no property alone")
    op = "==" if op == "=" else op
    if prop.kind == "bool":
        lowered = target.strip().lower()
        if lowered not in ("true", "false", "yes", "no") or op not in ("==", "!="):
            raise UsageError(f"--require {text}: {name} is yes/no; write {name} or not {name}")
        value = lowered in ("true", "yes")
        return Requirement(text.strip(), prop, op, value)
    number = parse_number(f"--require {text}", target)
    return Requirement(text.strip(), prop, op, float(number))


def parse_requirements(texts: Sequence[str]) -> list[Requirement]:
    return [parse_requirement(t) for t in texts]
