"""``x_N`` written out in terms of ``x_0`` and the block outputs ``F_i(...)``.

Block arguments keep the named states (``F_2(x_2)``): substituting inside them would make the
expansion exponentially large and hide the structure. A linear formula is written as its
weights times the block outputs, in step order; a non-linear one is substituted symbolically
(``relu(relu(x_0 + F_0(x_0)) + F_1(x_1))``) up to a size budget.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy

from ..errors import UsageError
from ..ir import BlockCall, Recurrence, n, state
from ..printing import latex_expr, rec_expr
from .linear import Structure, structure

__all__ = ["Unrolled", "unroll", "MAX_EXPANSION_NODES"]

#: The largest non-linear expansion (in expression-tree nodes) that ``unroll`` builds.
MAX_EXPANSION_NODES = 50_000


@dataclass(frozen=True)
class Unrolled:
    """The expansion of ``state_steps`` (``lhs``) as a SymPy expression ``expr``."""

    lhs: sympy.Indexed
    expr: sympy.Expr
    steps: int

    @property
    def text(self) -> str:
        """The right-hand side in ``.rec`` syntax."""
        return rec_expr(self.expr)

    @property
    def latex(self) -> str:
        """The right-hand side in LaTeX, with real subscripts (``F_{3}\\left(x_{3}\\right)``)."""
        return latex_expr(self.expr)

    def __str__(self) -> str:
        return f"{rec_expr(self.lhs)} = {self.text}"

    def _repr_latex_(self) -> str:
        return f"${latex_expr(self.lhs)} = {self.latex}$"


def unroll(
    rec: Recurrence | Structure, steps: int, state_name: str | None = None, params: str = "symbolic"
) -> Unrolled:
    """Unroll ``rec`` to ``steps`` steps: ``x_steps`` in terms of ``x_0`` and block outputs."""
    st = rec if isinstance(rec, Structure) else structure(rec, params)
    steps = _check_steps(steps)
    name = state_name or st.output
    if name not in st.states:
        raise UsageError(f"no state {name!r}; the formula's states are {', '.join(st.states)}")
    lhs = state(name, steps)
    if st.linear and name == st.output:
        from .weights import TooDeep, TooLarge, compute_weights

        try:
            w = compute_weights(st, steps)
        except TooDeep as exc:
            raise UsageError(f"cannot unroll {rec_expr(lhs)}: {exc}") from None
        except TooLarge as exc:
            raise UsageError(
                f"the expansion of {rec_expr(lhs)} with symbolic parameters is too large "
                f"(more than {exc.terms} terms); use fewer steps, or the parameters' initial "
                "values (params='init', --params init)"
            ) from None
        return Unrolled(lhs, linear_expansion(st, w, steps), steps)
    return Unrolled(lhs, _substituted(st, name, steps), steps)


def _check_steps(steps) -> int:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise UsageError(f"the number of steps must be a whole number >= 0, not {steps!r}")
    if steps > 100_000:
        raise UsageError(f"the number of steps must be at most 100000, not {steps}")
    return steps


def linear_expansion(st: Structure, w, steps: int) -> sympy.Expr:
    """``w_x0 * x_0 + sum_i w_i * F_i(...)`` in step order, zero terms left out."""
    terms = []
    for text, weight in w.initial.items():
        if weight != 0:
            terms.append(_times(weight, w.inputs[text]))
    for t in range(steps):
        for key in st.key_order:
            weight = w.block[key][t]
            if weight != 0:
                call = st.concrete_call(key, t)
                terms.append(_times(weight, call))
    if w.offset != 0:
        terms.append(w.offset)
    if not terms:
        return sympy.Integer(0)
    if len(terms) == 1:
        return terms[0]
    return sympy.Add(*terms, evaluate=False)


def _times(weight, thing):
    if weight == 1:
        return thing
    if weight == -1:
        return -thing
    return sympy.Mul(weight, thing)


def _substituted(st: Structure, name: str, steps: int) -> sympy.Expr:
    """Symbolic substitution of every state outside block arguments, memoised per state."""
    states = frozenset(st.states)
    # 1. size estimate by dynamic programming, before building anything
    size: dict = {}
    concrete: dict = {}

    def concrete_rhs(s, j):
        key = (s, j)
        if key not in concrete:
            e = st.rhs[s].xreplace({n: sympy.Integer(j - 1)})
            if e.has(sympy.Sum):
                e = e.doit()
            concrete[key] = st.name_initial_states(e)
        return concrete[key]

    order = [(s, j) for j in range(1, steps + 1) for s in st.states]
    for s, j in order:
        e = concrete_rhs(s, j)
        total = _count(e)
        for ref in _outside_refs(e, states):
            r = (ref.base.label.name, int(ref.indices[0]))
            total += size.get(r, 1)
        size[(s, j)] = total
        if total > MAX_EXPANSION_NODES:
            raise UsageError(
                f"the expansion of {rec_expr(state(name, steps))} would have more than "
                f"{MAX_EXPANSION_NODES} terms (already at {rec_expr(state(s, j))}); use fewer steps"
            )
    # 2. build
    value: dict = {}

    def val(s, j):
        if j <= 0 or (s, j) not in size:
            return st.initial_value(s, j) if not (s == st.output and j == 0) else state(s, 0)
        if (s, j) not in value:
            e = concrete_rhs(s, j)
            mapping = {
                ref: val(ref.base.label.name, int(ref.indices[0])) for ref in set(_outside_refs(e, states))
            }
            value[(s, j)] = _replace_outside(e, mapping)
        return value[(s, j)]

    if steps == 0:
        return st.initial_value(name, 0) if name != st.output else state(name, 0)
    return val(name, steps)


def _count(e) -> int:
    if isinstance(e, BlockCall):
        return 1
    return 1 + sum(_count(a) for a in e.args)


def _outside_refs(e, states):
    if isinstance(e, BlockCall):
        return
    if isinstance(e, sympy.Indexed):
        if e.base.label.name in states:
            yield e
        return
    for a in e.args:
        yield from _outside_refs(a, states)


def _replace_outside(e, mapping):
    if isinstance(e, BlockCall):
        return e
    if e in mapping:
        return mapping[e]
    if not e.args or isinstance(e, sympy.Indexed):
        return e
    return e.func(*(_replace_outside(a, mapping) for a in e.args))
