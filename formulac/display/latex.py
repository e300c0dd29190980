"""LaTeX for a whole formula: its equations in the user's term order, then what they refer to.

``formula_latex(rec)`` gives one ``aligned`` environment: one row per equation
(``x_{n+1} &= x_{n} + F\\left(x_{n}\\right)``), then a row listing constants, bound and free
symbols, learnable parameters and explicit initial conditions. Notebooks wrap it in ``$$...$$``
(``Formula._repr_latex_``); the Markdown report does the same.
"""

from __future__ import annotations

import sympy

from ..ir import Recurrence, n, state
from ..printing import latex_expr

__all__ = ["formula_latex", "equation_latex", "symbol_latex"]


def symbol_latex(name: str) -> str:
    """A declared name as LaTeX (``alpha`` -> ``\\alpha``, ``g`` -> ``g``)."""
    return latex_expr(sympy.Symbol(name))


def equation_latex(rec: Recurrence, state_name: str, align: bool = True) -> str:
    """One equation, ``x_{n+1} &= ...`` (without ``&`` when ``align`` is false)."""
    eq = rec.equation(state_name)
    lhs = latex_expr(state(eq.state, n + 1))
    rhs = latex_expr(eq.display_rhs)
    return f"{lhs} {'&=' if align else '='} {rhs}"


def _where_items(rec: Recurrence) -> list[str]:
    items: list[str] = []
    for name, value in rec.constants.items():
        items.append(f"{symbol_latex(name)} = {latex_expr(value)}")
    for name in rec.symbols:
        if name in rec.bindings:
            items.append(f"{symbol_latex(name)} = {latex_expr(rec.bindings[name])}")
    free = [symbol_latex(s) for s in rec.free_symbols]
    if free:
        items.append(r"%s\ \text{free}" % ", ".join(free))
    for name, k in rec.streams.items():
        items.append(r"%s\ \text{%d streams}" % (symbol_latex(name), k))
    for p in rec.params.values():
        what = r"\text{learnable per step, initially}" if p.per_step else r"\text{learnable, initially}"
        if p.shape is not None:  # a vector or matrix per step
            size = r"\times ".join(str(s) for s in p.shape)
            what = r"\text{learnable %s per step, initially}" % ("vector" if len(p.shape) == 1 else "matrix")
            what = f"{size}\\ {what}"
        items.append(f"{latex_expr(p.symbol)}\\ {what}\\ {latex_expr(p.init)}")
    for (name, index), value in rec.initial.items():
        items.append(f"{latex_expr(state(name, index))} = {latex_expr(value)}")
    if rec.output != "x" and len(rec.states) > 1:
        items.append(r"\text{output } %s" % symbol_latex(rec.output))
    if rec.shared_blocks:
        blocks = ", ".join(sorted(rec.shared_blocks))
        items.append(r"%s\ \text{shared across steps}" % blocks)
    return items


def formula_latex(rec: Recurrence) -> str:
    r"""The formula as a LaTeX ``aligned`` environment (no surrounding ``$$``).

    >>> from formulac.parse import parse
    >>> print(formula_latex(parse("x_<n+1> = x_n + F(x_n)")))
    \begin{aligned}
    x_{n+1} &= x_{n} + F\left(x_{n}\right)
    \end{aligned}
    """
    if rec.compact is not None:  # a stream formula: as the file writes it, not lowered
        rec = rec.compact
    rows = [equation_latex(rec, eq.state) for eq in rec.equations]
    items = _where_items(rec)
    if items:
        rows.append(r"&\text{where } " + r",\quad ".join(items))
    return "\\begin{aligned}\n" + " \\\\\n".join(rows) + "\n\\end{aligned}"
