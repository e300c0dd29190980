"""LaTeX of representations with real subscripts, in the user's term order.

The ``.rec`` text printer (:func:`rec_expr`, :func:`to_rec`) belongs to the representation
(:mod:`formulac.ir`); it is re-exported here for the callers that print both.
"""

from __future__ import annotations

import sympy
from sympy.printing.latex import LatexPrinter

from .ir import BlockCall, Concat, RecPrinter, StateRef, index_text, n, pair_indices, rec_expr, to_rec

__all__ = ["to_rec", "rec_expr", "latex_expr", "index_text", "RecPrinter", "RecLatexPrinter"]


class RecLatexPrinter(LatexPrinter):
    """LaTeX with real subscripts (``x_{n+1}``, ``k_{n}``) in the given term order."""

    printmethod = "_rec_latex"

    def __init__(self, settings=None):
        super().__init__({"order": "none", **(settings or {})})

    def _print_Indexed(self, expr):
        if pair_indices(expr) is not None:  # a pair parameter: w_{n,i}
            return "%s_{%s}" % (
                self._indexed_name(StateRef.of(expr).name),
                ",".join(index_text(i, latex=True).strip("{}") for i in pair_indices(expr)),
            )
        ref = StateRef.of(expr)
        index = index_text(ref.index, latex=True)
        return "%s_{%s}" % (self._indexed_name(ref.name), index.strip("{}"))

    def _indexed_name(self, name: str) -> str:
        """The name of an indexed state or parameter: SymPy's (``alpha`` -> ``\\alpha``), except
        that a name with digits stays whole (SymPy would print ``h1`` as ``h_{1}``, and its
        index would make a double subscript)."""
        if any(c.isdigit() for c in name):
            return name
        return self._print(sympy.Symbol(name))

    def _print_BlockCall(self, expr: BlockCall, exp=None):
        sub = "" if expr.step == n else "_{%s}" % self._print(expr.step)
        tex = r"%s%s\left(%s\right)" % (expr.block, sub, self._print(expr.argument))
        return tex if exp is None else r"%s^{%s}" % (tex, exp)  # F(x_n)^2: the power printer passes exp

    def _print_Concat(self, expr: Concat, exp=None):
        tex = r"\left[%s\right]" % ", ".join(self._print(a) for a in expr.args)
        return tex if exp is None else r"%s^{%s}" % (tex, exp)

    def _print_KroneckerDelta(self, expr, exp=None):  # the file's [a == b], an Iverson bracket
        a, b = (self._print(x) for x in expr.args)
        tex = r"\left[%s = %s\right]" % (a, b)
        return tex if exp is None else r"%s^{%s}" % (tex, exp)

    # a stream formula's compact form (``stream h[4]``), as the file writes it
    def _print_Mix(self, expr, exp=None):  # M @ h: a matrix times the streams
        return r"%s\,%s" % tuple(self.parenthesize(a, 50) for a in expr.args)

    def _print_Read(self, expr, exp=None):  # v @ h: one combination of the streams
        return r"%s^{\top} %s" % tuple(self.parenthesize(a, 50) for a in expr.args)

    def _print_Spread(self, expr, exp=None):  # v*t: a tensor into every stream with weights v
        return r"%s\,%s" % tuple(self.parenthesize(a, 50) for a in expr.args)

    def _print_Scale(self, expr, exp=None):  # v*h: stream i scaled by v[i]
        return r"%s \odot %s" % tuple(self.parenthesize(a, 50) for a in expr.args)

    def _print_StreamSum(self, expr, exp=None):
        return r"\operatorname{sum}\left(%s\right)" % self._print(expr.args[0])

    def _print_Sinkhorn(self, expr, exp=None):
        return r"\operatorname{sinkhorn}\left(%s\right)" % self._print(expr.args[0])

    def _print_Softmax(self, expr, exp=None):
        return r"\operatorname{softmax}\left(%s\right)" % self._print(expr.args[0])

    def _print_StreamIdentity(self, expr, exp=None):
        return "I"

    def _print_OneHot(self, expr, exp=None):
        return "e_{%s}" % self._print(expr.args[0])

    def _print_Streams(self, expr, exp=None):  # a start copied to every stream
        return self._print(expr.args[0])

    def _print_Function(self, expr, exp=None):
        name = expr.func.__name__
        if name in ("relu", "sigmoid", "softplus", "gelu", "silu", "elu", "tanh", "norm"):
            body = r"\operatorname{%s}\left(%s\right)" % (name, self._print(expr.args[0]))
            return body if exp is None else r"%s^{%s}" % (body, exp)
        return super()._print_Function(expr, exp)


def latex_expr(expr) -> str:
    return RecLatexPrinter().doprint(expr)
