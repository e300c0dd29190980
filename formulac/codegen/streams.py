"""Code of the compact stream form (``stream h[4]``): one ``einsum`` per stream operation.

A stream state is one tensor with the streams stacked in dimension 0 (``(k, batch, ...)``); a
vector or matrix parameter is one ``nn.Parameter`` of shape ``(k,)`` or ``(k, k)`` per step. The
typed operations of :mod:`formulac.ir` (what the parser's lowering made of ``@`` and ``*``)
print as:

- ``M @ h`` (:class:`~formulac.ir.Mix`): ``torch.einsum("ji,i...->j...", M, h)``
- ``v @ h`` (:class:`~formulac.ir.Read`): ``torch.einsum("i,i...->...", v, h)``
- ``v*t`` (:class:`~formulac.ir.Spread`): ``torch.einsum("i,...->i...", v, t)``
- ``v*h`` (:class:`~formulac.ir.Scale`): ``torch.einsum("i,i...->i...", v, h)``
- ``sum(h)``: ``torch.sum(h, dim=0)``; ``sinkhorn(M)``: ``sinkhorn_knopp(M)`` (a function of the
  emitted file, :func:`runtime_lines`); ``softmax(v)``: ``torch.softmax(v, dim=-1)``; of a
  coefficient computed per token (``+ dynamic(h_n)``), the same over its streams' dimensions
  (``sinkhorn_knopp_per_token(M)``, ``torch.softmax(v, dim=0)``).
"""

from __future__ import annotations

import ast

import sympy

from ..errors import UsageError
from ..ir import (
    Mix,
    Read,
    Recurrence,
    Scale,
    Sinkhorn,
    Softmax,
    Spread,
    StateRef,
    Streams,
    StreamSum,
    references,
    shaped_initial,
)
from ..limits import SINKHORN_ITERATIONS

__all__ = ["compact_form", "stream_code", "shaped_initial_code", "runtime_lines", "refuse_streams"]

_EINSUM = {
    Mix: "ji,i...->j...",
    Read: "i,i...->...",
    Spread: "i,...->i...",
    Scale: "i,i...->i...",
}

# the same with coefficients that vary per token (input-dependent, codegen/dynamic.py), whose
# trailing dimensions (the feature dimension of size 1) broadcast against the streams': broadcast
# products summed over the streams read (torch.einsum with broadcast dimensions falls back to
# thousands of small copies on CPU, 2-4 times slower)
_PER_TOKEN = {
    Mix: "torch.sum({} * {}, dim=1)",
    Read: "torch.sum({} * {}, dim=0)",
    Spread: "({} * {})",
    Scale: "({} * {})",
}


def _factor(code: str) -> str:
    """``code`` as a factor of a product: a name or call as it is, anything else parenthesised."""
    try:
        node = ast.parse(code, mode="eval").body
    except SyntaxError:
        return f"({code})"
    return code if isinstance(node, (ast.Name, ast.Attribute, ast.Call, ast.Subscript)) else f"({code})"


def _per_token(printer, coefficient) -> bool:
    """Does a stream operation's coefficient read an input-dependent parameter?"""
    dynamic = set(printer.plan.dynamic)
    return next(references(coefficient, dynamic), None) is not None


# one-argument operations: the code around the argument's code
_ONE_ARGUMENT = {
    StreamSum: "torch.sum({}, dim=0)",
    Sinkhorn: "sinkhorn_knopp({})",
    Softmax: "torch.softmax({}, dim=-1)",
}


# the constraints of a coefficient computed per token (codegen/dynamic.py: a vector (k, batch...),
# a matrix (k, k, batch...) with entry (j, i) first), by the number of the parameter's dimensions:
# the same normalisation over the streams' dimensions instead of the last ones
_PER_TOKEN_CONSTRAINT = {
    Sinkhorn: {2: "sinkhorn_knopp_per_token({})"},
    Softmax: {1: "torch.softmax({}, dim=0)", 2: "torch.softmax({}, dim=1)"},
}


def compact_form(rec: Recurrence) -> Recurrence:
    """What code generation builds: the compact form of a stream formula, else the formula."""
    return rec.compact if rec.compact is not None else rec


def refuse_streams(rec: Recurrence, what: str) -> None:
    """A :class:`UsageError` for the code paths that build a stream formula's lowered scalars
    instead of its stacked streams (which would learn the wrong parameters)."""
    if rec.compact is not None:
        raise UsageError(f"{what} does not support stream states (stream h[k]) yet; compile builds them")


def stream_code(printer, expr) -> str | None:
    """Code of a stream operation or a shaped parameter; None for anything else. ``printer`` is
    the step's expression printer (its ``emit``, ``initial``, ``rec`` and ``plan``)."""
    if isinstance(expr, sympy.Indexed):
        p = printer.rec.params.get(StateRef.of(expr).name)
        if p is None or p.shape is None:
            return None
        if p.name in printer.plan.dynamic:  # one value per token, computed at the start of the step
            return printer.plan.dynamic[p.name]["local"]
        return "self." + printer.plan.pair_params[p.name][0]
    spec = _EINSUM.get(type(expr))
    if spec is not None:
        left, right = (printer.emit(a) for a in expr.args)
        if _per_token(printer, expr.args[0]):  # coefficients per token: their own batch dimensions
            return _PER_TOKEN[type(expr)].format(*(_factor(code) for code in (left, right)))
        return f'torch.einsum("{spec}", {left}, {right})'
    template = _ONE_ARGUMENT.get(type(expr))
    if template is not None:
        if type(expr) in _PER_TOKEN_CONSTRAINT and _per_token(printer, expr.args[0]):
            shape = printer.rec.params[StateRef.of(expr.args[0]).name].shape
            template = _PER_TOKEN_CONSTRAINT[type(expr)][len(shape)]
        return template.format(printer.emit(expr.args[0]))
    if isinstance(expr, Streams):
        value, k = expr.args
        return f"torch.stack([{printer.initial(value)}] * {int(k)})"
    return None


def shaped_initial_code(param, literal) -> str:
    """The initial entries of a vector or matrix parameter as a nested list literal."""
    entries = shaped_initial(param.init, param.shape)

    def text(e):
        if isinstance(e, list):
            return "[" + ", ".join(text(x) for x in e) + "]"
        return f"{int(e)}.0" if e.is_Integer else literal(e)  # floats: a parameter learns

    return text(entries)


def runtime_lines(rec: Recurrence) -> list[str]:
    """The module-level functions a formula with ``sinkhorn(...)`` calls (torch only)."""
    constrained = {StateRef.of(s.args[0]).name for eq in rec.equations for s in eq.rhs.atoms(Sinkhorn)}
    if not constrained:
        return []
    per_token = any(rec.params[name].dynamic is not None for name in constrained if name in rec.params)
    return [
        f"def sinkhorn_knopp(logits, iterations={SINKHORN_ITERATIONS}):",
        '    """The doubly stochastic matrix of Sinkhorn-Knopp on exp(logits) (mHC): rows, then',
        '    columns, normalised to sum 1, `iterations` times (the columns sum to 1 exactly)."""',
        "    m = torch.exp(logits - logits.amax(dim=-1, keepdim=True).detach())",
        "    for _ in range(iterations):",
        "        m = m / m.sum(dim=-1, keepdim=True)",
        "        m = m / m.sum(dim=-2, keepdim=True)",
        "    return m",
        "",
        "",
    ] + (_PER_TOKEN_SINKHORN if per_token else [])


_PER_TOKEN_SINKHORN = [
    "def sinkhorn_knopp_per_token(logits):",
    '    """sinkhorn_knopp of every token\'s matrix: logits (k, k, batch...), entry (j, i) first."""',
    "    matrices = torch.movedim(logits, (0, 1), (-2, -1))",
    "    return torch.movedim(sinkhorn_knopp(matrices), (-2, -1), (0, 1))",
    "",
    "",
]
