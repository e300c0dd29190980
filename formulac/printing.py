"""Print representations back as ``.rec`` text (canonical, re-parseable) and as LaTeX."""

from __future__ import annotations

import sympy
from sympy.printing.latex import LatexPrinter
from sympy.printing.precedence import PRECEDENCE
from sympy.printing.str import StrPrinter

from .ir import BlockCall, Concat, Recurrence, n

__all__ = ["to_rec", "rec_expr", "latex_expr", "index_text"]


def index_text(index: sympy.Expr, latex: bool = False) -> str:
    """``n`` -> ``n``, ``n + 1`` -> ``<n+1>`` (``{n+1}`` in LaTeX), ``3`` -> ``3``."""
    index = sympy.sympify(index)
    if index.is_Symbol or (index.is_Integer and index >= 0):
        return str(index)
    var = next(iter(index.free_symbols), None)
    if var is None:
        inner = str(index)
    else:
        offset = index - var
        inner = f"{var}{int(offset):+d}" if offset.is_Integer else str(index).replace(" ", "")
    return "{%s}" % inner if latex else "<%s>" % inner


class RecPrinter(StrPrinter):
    """SymPy expressions in the syntax of the ``.rec`` language."""

    printmethod = "_rec_text"  # not SymPy's own `_sympystr`, which Indexed defines

    def _print_Indexed(self, expr):
        return f"{expr.base.label}_{index_text(expr.indices[0])}"

    def _print_BlockCall(self, expr: BlockCall):
        step = "" if expr.step == n else "_" + index_text(expr.step)
        return f"{expr.block}{step}({self._print(expr.argument)})"

    def _print_Concat(self, expr: Concat):
        return "cat(%s)" % ", ".join(self._print(a) for a in expr.args)

    def _print_Sum(self, expr):
        ((var, low, high),) = expr.limits
        return f"sum({var}={self._print(low)}..{self._print(high)}, {self._print(expr.function)})"

    def _print_Pow(self, expr, rational=False):
        base, exp = expr.args
        if exp == -1:
            return "1/%s" % self.parenthesize(base, PRECEDENCE["Pow"])
        return "%s^%s" % (
            self.parenthesize(base, PRECEDENCE["Pow"]),
            self.parenthesize(exp, PRECEDENCE["Pow"]),
        )

    def _print_Abs(self, expr):
        return "abs(%s)" % self._print(expr.args[0])

    def _print_Rational(self, expr):
        return f"{expr.p}/{expr.q}"

    def _print_Float(self, expr):  # only from user bindings; keep it exact enough to re-read
        return repr(float(expr))


class RecLatexPrinter(LatexPrinter):
    """LaTeX with real subscripts (``x_{n+1}``, ``k_{n}``) in the given term order."""

    printmethod = "_rec_latex"

    def __init__(self, settings=None):
        super().__init__({"order": "none", **(settings or {})})

    def _print_Indexed(self, expr):
        index = index_text(expr.indices[0], latex=True)
        return "%s_{%s}" % (self._print(expr.base.label), index.strip("{}"))

    def _print_BlockCall(self, expr: BlockCall, exp=None):
        sub = "" if expr.step == n else "_{%s}" % self._print(expr.step)
        tex = r"%s%s\left(%s\right)" % (expr.block, sub, self._print(expr.argument))
        return tex if exp is None else r"%s^{%s}" % (tex, exp)  # F(x_n)^2: the power printer passes exp

    def _print_Concat(self, expr: Concat, exp=None):
        tex = r"\left[%s\right]" % ", ".join(self._print(a) for a in expr.args)
        return tex if exp is None else r"%s^{%s}" % (tex, exp)

    def _print_Function(self, expr, exp=None):
        name = expr.func.__name__
        if name in ("relu", "sigmoid", "softplus", "gelu", "silu", "elu", "tanh"):
            body = r"\operatorname{%s}\left(%s\right)" % (name, self._print(expr.args[0]))
            return body if exp is None else r"%s^{%s}" % (body, exp)
        return super()._print_Function(expr, exp)


def rec_expr(expr: sympy.Expr) -> str:
    return RecPrinter({"order": "none"}).doprint(expr)


def latex_expr(expr: sympy.Expr) -> str:
    return RecLatexPrinter().doprint(expr)


def to_rec(rec: Recurrence) -> str:
    """Canonical ``.rec`` text that parses back to the same formula."""
    lines: list[str] = []
    for name, value in rec.constants.items():
        lines.append(f"{name} = {rec_expr(value)}")
    for name, value in rec.bindings.items():
        lines.append(f"{name} = {rec_expr(value)}")
    free = [s for s in rec.symbols if s not in rec.bindings]
    if free:
        lines.append("symbol " + ", ".join(free))
    for p in rec.params.values():
        lines.append(f"param {p.name}{'_n' if p.per_step else ''} = {rec_expr(p.init)}")
    if rec.shared_blocks:
        lines.append("shared " + ", ".join(sorted(rec.shared_blocks)))
    if rec.output != "x" and (len(rec.states) > 1 or "x" in rec.states):
        lines.append(f"output {rec.output}")
    for (name, index), value in rec.initial.items():
        lines.append(f"{name}_{index_text(index)} = {rec_expr(value)}")
    for eq in rec.equations:
        lines.append(f"{eq.state}_<n+1> = {rec_expr(eq.rhs)}")
    return "\n".join(lines) + "\n"
