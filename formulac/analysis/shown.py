"""Expressions as a reader wants them: the lowered entries of a stream formula by the stream
or matrix they belong to, and the numbers that the lowering leaves as 30-digit floats written
exactly.

A ``stream h[4]`` formula is analysed lowered to the states ``h0 .. h3`` and the per-step
parameters ``res00_n .. res33_n``; an expansion shows ``h_1[0]`` (stream 0 of ``h`` after one
step) and ``res_1[0,1]`` (entry (0, 1) of the matrix ``res`` at step 1), as the file writes them.
Constraints (``sinkhorn``) make initial values 30-digit floats whose sums are whole numbers up
to the last digits (``1.0*x_0``); a float within 1e-20 of a fraction with a denominator up to
1000 is shown as that fraction, and an activation of a number with an exact value as that
value (``sigmoid(0)`` as ``1/2``), so ``1*`` and ``0*`` terms drop out.
"""

from __future__ import annotations

import itertools

import sympy

from ..ir import Recurrence, StateRef, pair_indices, written_out

__all__ = ["Entry", "entry_names", "shown"]

_MAX_DENOMINATOR = 1000
_TOLERANCE = sympy.Float("1e-20", 30)
_CONSTRAINTS = ("sinkhorn", "softmax")  # the prefixes of constrained entries' lowered names


class Entry(sympy.Expr):
    """Entry ``position`` of the stream state or shaped parameter ``name`` at step ``index``:
    ``h_1[0]``, ``res_1[0,1]``, ``sinkhorn(res_1)[0,1]`` (display only)."""

    def __new__(cls, name: str, constraint: str, index: sympy.Expr, position: tuple[int, ...]):
        return sympy.Expr.__new__(
            cls,
            sympy.Symbol(name),
            sympy.Symbol(constraint or "_"),
            sympy.sympify(index),
            *map(sympy.Integer, position),
        )

    def _parts(self, printer, left: str, right: str) -> tuple[str, str]:
        name, constraint, index, *position = self.args
        text = printer._print(index)
        if not index.is_Atom:
            text = f"{left}{text.replace(' ', '')}{right}"
        base = f"{name}_{text}"
        if constraint.name != "_":
            base = f"{constraint}({base})"
        return base, ",".join(str(p) for p in position)

    def _rec_text(self, printer) -> str:
        base, position = self._parts(printer, "<", ">")
        return f"{base}[{position}]"

    def _rec_latex(self, printer) -> str:
        name, constraint, index, *position = self.args
        base = f"{name}_{{{printer._print(index)}}}"
        if constraint.name != "_":
            base = f"\\operatorname{{{constraint}}}\\left({base}\\right)"
        return f"{base}[{','.join(str(p) for p in position)}]"


def entry_names(rec: Recurrence) -> dict[str, tuple[str, str, tuple[int, ...]]]:
    """Lowered name -> (stream state or parameter, constraint or "", position) of a stream
    formula's lowered form; empty for other formulas."""
    compact = rec.compact
    if compact is None:
        return {}
    names: dict[str, tuple[str, str, tuple[int, ...]]] = {}
    for name, k in compact.streams.items():
        names.update({f"{name}{j}": (name, "", (j,)) for j in range(k)})
    for name, p in compact.params.items():
        if p.shape is None:
            continue
        for position in itertools.product(*(range(size) for size in p.shape)):
            digits = "".join(map(str, position))
            names[f"{name}{digits}"] = (name, "", position)
            names.update({f"{c}{name}{digits}": (name, c, position) for c in _CONSTRAINTS})
    return names


def shown(expr: sympy.Expr, entries: dict | None = None) -> sympy.Expr:
    """``expr`` with lowered names as :class:`Entry` (``entries``: :func:`entry_names`) and
    near-exact floats as fractions; a sum keeps its order of terms and loses its zero terms."""
    replacements = {}
    for node in expr.atoms(sympy.Function):  # an activation of a number with an exact value
        if node.args and all(a.is_Number for a in node.args):
            value = sympy.simplify(written_out(node))
            if value.is_Rational:
                replacements[node] = value
    for node in expr.atoms(sympy.Float):
        exact = sympy.Rational(node).limit_denominator(_MAX_DENOMINATOR)
        if abs(node - exact) <= _TOLERANCE * max(1, abs(exact)):
            replacements[node] = exact
    if entries:
        for node in expr.atoms(sympy.Indexed):
            ref = StateRef.of(node)
            found = entries.get(ref.name)
            if found is not None and pair_indices(node) is None:
                name, constraint, position = found
                replacements[node] = Entry(name, constraint, ref.index, position)
    if not replacements:
        return expr
    if isinstance(expr, sympy.Add):  # written in order (an unevaluated sum): keep the order
        terms = [t.xreplace(replacements) for t in expr.args]
        terms = [t for t in terms if t != 0]
        return (
            sympy.Add(*terms, evaluate=False) if len(terms) > 1 else (terms[0] if terms else sympy.Integer(0))
        )
    return expr.xreplace(replacements)
