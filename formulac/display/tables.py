"""Block-weight tables of several formulas side by side: Markdown, HTML (notebooks) and text.

``weights_table([resnet, two_step], depth=8)`` gives a :class:`WeightTable` with one row per
step ``i`` and one column per formula (per block where a formula has several): the weight of
the block applied at step ``i`` in ``x_N``. Values are exact (rationals stay rationals) with a
decimal beside them where that helps; free symbols stay symbolic.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sympy

from ..printing import RecPrinter
from ._common import analyses_of, as_list, check_depth, labels_for
from .plot import why_missing

__all__ = ["WeightTable", "weights_table", "format_value", "format_text"]


def rec_expr(expr: sympy.Expr) -> str:
    """``.rec`` syntax with polynomial terms by descending degree (``3*a^2 + 4*a + 1``)."""
    return RecPrinter({"order": "lex"}).doprint(expr)


def _decimal(expr: sympy.Expr) -> str:
    try:
        z = complex(sympy.N(expr, 17))
    except (TypeError, ValueError, OverflowError):
        return str(expr)
    if abs(z.imag) <= 1e-12 * max(1.0, abs(z)):
        return f"{z.real:.6g}"
    return f"{z.real:.4g}{z.imag:+.4g}i"


def format_text(value: Any) -> str:
    """A value as plain text: exact, with a decimal for non-integer numbers (``3/16 ≈ 0.1875``)."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return value
    expr = sympy.sympify(value)
    if expr.is_Integer:
        return str(expr)
    if expr.is_Rational:
        return f"{expr.p}/{expr.q} ≈ {_decimal(expr)}"
    if expr.is_Float:
        return _decimal(expr)
    if not expr.free_symbols and expr.is_number:
        return f"{rec_expr(expr)} ≈ {_decimal(expr)}"
    return rec_expr(expr)


def format_value(value: Any) -> str:
    """A value for a Markdown table cell (symbolic expressions as code, ``|`` escaped)."""
    if value is None or isinstance(value, (bool, str)):
        return format_text(value).replace("|", "\\|")
    expr = sympy.sympify(value)
    if expr.is_number or not expr.free_symbols:
        if expr.is_Rational or expr.is_Float:
            return format_text(expr)
        return f"`{rec_expr(expr)}` ≈ {_decimal(expr)}".replace("|", "\\|")
    return f"`{rec_expr(expr)}`".replace("|", "\\|")


@dataclass
class WeightTable:
    """Block weights of several formulas by step; ``columns`` maps a heading to its weights."""

    depth: int | None
    columns: dict[str, list | None]
    missing: dict[str, str] = field(default_factory=dict)

    @property
    def steps(self) -> int:
        return max((len(v) for v in self.columns.values() if v), default=0)

    def _cell(self, heading: str, i: int, fmt) -> str:
        values = self.columns[heading]
        if values is None or i >= len(values):
            return "—"
        return fmt(values[i])

    def _title(self) -> str:
        n = "N" if self.depth is None else str(self.depth)
        return f"weight of the block applied at step i in x_{n}"

    def to_markdown(self) -> str:
        headings = list(self.columns)
        rows = [
            "| step $i$ | " + " | ".join(h.replace("|", "\\|") for h in headings) + " |",
            "|---:|" + "---:|" * len(headings),
        ]
        for i in range(self.steps):
            rows.append(f"| {i} | " + " | ".join(self._cell(h, i, format_value) for h in headings) + " |")
        text = "\n".join(rows)
        if self.missing:
            text += "\n\n" + "\n".join(f"- {h}: {why}" for h, why in self.missing.items())
        return text

    def _repr_markdown_(self) -> str:
        return self.to_markdown()

    def _repr_html_(self) -> str:
        headings = list(self.columns)
        esc = html.escape
        head = "".join(f"<th>{esc(h)}</th>" for h in headings)
        body = []
        for i in range(self.steps):
            cells = "".join(
                f"<td style='text-align:right'>{esc(self._cell(h, i, format_text))}</td>" for h in headings
            )
            body.append(f"<tr><th style='text-align:right'>{i}</th>{cells}</tr>")
        caption = esc(self._title())
        notes = "".join(f"<li>{esc(h)}: {esc(why)}</li>" for h, why in self.missing.items())
        notes_html = f"<ul>{notes}</ul>" if notes else ""
        return (
            f"<table><caption>{caption}</caption><thead><tr><th>step i</th>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>{notes_html}"
        )

    def __str__(self) -> str:
        headings = list(self.columns)
        grid = [["i", *headings]]
        for i in range(self.steps):
            grid.append([str(i), *(self._cell(h, i, format_text) for h in headings)])
        widths = [max(len(row[k]) for row in grid) for k in range(len(grid[0]))]
        lines = [self._title()]
        for r, row in enumerate(grid):
            lines.append("  ".join(cell.rjust(w) for cell, w in zip(row, widths)).rstrip())
            if r == 0:
                lines.append("  ".join("-" * w for w in widths))
        for h, why in self.missing.items():
            lines.append(f"{h}: {why}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<WeightTable depth={self.depth} columns={list(self.columns)}>"


def weights_table(
    formulas_or_analyses,
    depth: int | None = None,
    labels: Sequence[str] | None = None,
    block: str | None = None,
    params: str = "init",
) -> WeightTable:
    """The block weights of several formulas side by side, one row per step.

    A formula with several blocks gives one column per block (``name: F``) unless ``block``
    names one; a formula without block weights gets an empty column and a note saying why.
    """
    check_depth(depth)
    items = as_list(formulas_or_analyses)
    labels = labels_for(items, labels)
    analyses = analyses_of(items, depth, params=params)
    columns: dict[str, list | None] = {}
    missing: dict[str, str] = {}
    depths = {int(a.depth) for a in analyses}
    for analysis, label in zip(analyses, labels):
        weights = analysis.block_weights
        if not weights:
            columns[label] = None
            missing[label] = why_missing(analysis, "block weights")
            continue
        names = list(weights)
        if block is not None:
            if block not in weights:
                from ..errors import UsageError

                raise UsageError(f"{label} has no block {block} (its blocks: {', '.join(names)})")
            names = [block]
        for name in names:
            heading = label if len(names) == 1 else f"{label}: {name}"
            columns[heading] = weights[name]
    return WeightTable(depth=depths.pop() if len(depths) == 1 else None, columns=columns, missing=missing)
