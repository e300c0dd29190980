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
from ..ir import BlockCall, Recurrence, StateRef, n, state
from ..limits import MAX_EXPANSION_DEPTH, MAX_EXPANSION_NODES
from ..printing import latex_expr, rec_expr
from .linear import Structure, check_steps, structure
from .shown import entry_names, shown
from .weights import TooDeep, TooLarge, Weights, compute_weights

__all__ = ["Unrolled", "unroll", "linear_expansion"]


@dataclass(frozen=True)
class Unrolled:
    """The expansion of ``state_steps`` (``lhs``) as a SymPy expression ``expr``."""

    lhs: sympy.Indexed
    expr: sympy.Expr
    steps: int
    #: a stream formula's lowered names -> what they are (:func:`.shown.entry_names`): they
    #: print as the file writes them (h_1[0], res_1[0,1])
    entries: tuple = ()

    @property
    def text(self) -> str:
        """The right-hand side in ``.rec`` syntax (streams as ``h_1[0]``, exact numbers)."""
        return rec_expr(shown(self.expr, dict(self.entries)))

    @property
    def latex(self) -> str:
        """The right-hand side in LaTeX, with real subscripts (``F_{3}\\left(x_{3}\\right)``)."""
        return latex_expr(shown(self.expr, dict(self.entries)))

    def __str__(self) -> str:
        return f"{rec_expr(shown(self.lhs, dict(self.entries)))} = {self.text}"

    def _repr_latex_(self) -> str:
        return f"${latex_expr(shown(self.lhs, dict(self.entries)))} = {self.latex}$"


def unroll(
    rec: Recurrence | Structure, steps: int, state_name: str | None = None, params: str = "symbolic"
) -> Unrolled:
    """Unroll ``rec`` to ``steps`` steps: ``x_steps`` in terms of ``x_0`` and block outputs."""
    st = rec if isinstance(rec, Structure) else structure(rec, params)
    steps = check_steps(steps)
    name = state_name or st.output
    if name not in st.states:
        raise UsageError(f"no state {name!r}; the formula's states are {', '.join(st.states)}")
    lhs = state(name, steps)
    streams = tuple(entry_names(st.rec).items())
    if st.linear:
        try:
            w = compute_weights(st, steps, name)
        except TooDeep as exc:
            raise UsageError(f"cannot unroll {rec_expr(lhs)}: {exc}") from None
        except TooLarge as exc:
            raise UsageError(
                f"the expansion of {rec_expr(lhs)} with symbolic parameters is too large "
                f"(more than {exc.terms} terms); use fewer steps, or the parameters' initial "
                "values (params='init', --params init)"
            ) from None
        return Unrolled(lhs, linear_expansion(st, w, steps), steps, streams)
    return Unrolled(lhs, _substituted(st, name, steps), steps, streams)


def linear_expansion(st: Structure, w: Weights, steps: int) -> sympy.Expr:
    """``w_x0 * x_0 + sum_i w_i * F_i(...)`` in step order, one term per distinct block output
    (``F(x_n)`` and ``F(x_<n-1>)`` are one output at step 0, where ``x_<-1>`` is ``x_0``),
    zero terms left out."""
    terms: dict = {}
    for text, weight in w.initial.items():
        _collect(terms, w.inputs[text], weight)
    for t in range(steps):
        for key in st.key_order:
            weight = w.block[key][t]
            if weight != 0:
                _collect(terms, st.concrete_call(key, t), weight)
    _collect(terms, sympy.Integer(1), w.offset)
    shown = [_times(weight, thing) for thing, weight in terms.items() if sympy.expand(weight) != 0]
    if not shown:
        return sympy.Integer(0)
    if len(shown) == 1:
        return shown[0]
    return sympy.Add(*shown, evaluate=False)


def _collect(terms: dict, thing: sympy.Expr, weight: sympy.Expr) -> None:
    if weight != 0:
        terms[thing] = terms.get(thing, 0) + weight


def _times(weight, thing):
    if isinstance(weight, sympy.Add):  # a polynomial weight by descending degree: a^2 + 3*a + 1
        weight = sympy.Add(*weight.as_ordered_terms(), evaluate=False)
    if thing == 1:
        return weight
    if weight == 1:
        return thing
    if weight == -1:
        return -thing
    return sympy.Mul(weight, thing, evaluate=not isinstance(weight, sympy.Add))


def _substituted(st: Structure, name: str, steps: int) -> sympy.Expr:
    """Symbolic substitution of every state outside block arguments, each value built once.

    Sizes and nesting are estimated first, over the values ``name_steps`` needs, so that an
    expansion beyond :data:`MAX_EXPANSION_NODES` nodes or :data:`MAX_EXPANSION_DEPTH` levels is
    refused before anything is built; nothing here recurses over steps or states.
    """
    if steps == 0:
        return st.initial_value(name, 0) if name != st.output else state(name, 0)
    states = frozenset(st.states)
    concrete: dict = {}

    def shape(key):  # (the value's rhs at its step, its size, its nesting, its state references)
        if key not in concrete:
            s, j = key
            e = st.rhs[s].xreplace({n: sympy.Integer(j - 1)})
            if e.has(sympy.Sum):
                e = e.doit()
            e = st.name_initial_states(e)
            concrete[key] = (e, *_shape(e, states))
        return concrete[key]

    # 1. the values needed, newest first; then their sizes and nesting, oldest first
    needed = {(name, steps)}
    order = [(s, j) for j in range(steps, 0, -1) for s in reversed(st.states)]
    for key in order:
        if key in needed:
            needed.update((ref.name, ref.step) for ref, _ in shape(key)[3] if ref.step >= 1)
    size: dict = {}
    depth: dict = {}
    for key in reversed(order):
        if key not in needed:
            continue
        _, nodes, height, refs = shape(key)
        inner = [((ref.name, ref.step), level) for ref, level in refs]
        size[key] = nodes + sum(size.get(r, 1) for r, _ in inner)
        depth[key] = max([height] + [level + depth.get(r, 0) for r, level in inner])
        what = f"the expansion of {rec_expr(state(name, steps))} would"
        where = f"(already at {rec_expr(state(*key))}); use fewer steps"
        if size[key] > MAX_EXPANSION_NODES:
            raise UsageError(f"{what} have more than {MAX_EXPANSION_NODES} terms {where}")
        if depth[key] > MAX_EXPANSION_DEPTH:
            raise UsageError(f"{what} nest more than {MAX_EXPANSION_DEPTH} levels deep {where}")
    # 2. build, oldest first
    value: dict = {}
    for key in reversed(order):
        if key in needed:
            e, _, _, refs = shape(key)
            mapping = {ref.indexed: _value(st, ref, value) for ref, _ in refs}
            value[key] = _replace_outside(e, mapping)
    return value[(name, steps)]


def _value(st: Structure, ref: StateRef, built: dict) -> sympy.Expr:
    if ref.step >= 1:
        return built[(ref.name, ref.step)]
    if ref.name == st.output and ref.step == 0:
        return ref.indexed
    return st.initial_value(ref.name, ref.step)


def _shape(e: sympy.Expr, states) -> tuple[int, int, list]:
    """Nodes (a block call counts one), nesting levels, and the state references outside block
    arguments with the level each sits at."""
    nodes, height, refs = 0, 0, []
    stack = [(e, 1)]
    while stack:
        node, level = stack.pop()
        nodes += 1
        height = max(height, level)
        if isinstance(node, sympy.Indexed):
            ref = StateRef.of(node)
            if ref.name in states:
                refs.append((ref, level))
        elif not isinstance(node, BlockCall):
            stack.extend((a, level + 1) for a in node.args)
    return nodes, height, refs


def _replace_outside(e, mapping):
    if isinstance(e, BlockCall):
        return e
    if e in mapping:
        return mapping[e]
    if not e.args or isinstance(e, sympy.Indexed):
        return e
    return e.func(*(_replace_outside(a, mapping) for a in e.args))
