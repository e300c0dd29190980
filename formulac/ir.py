"""The representation of a recurrence: equations over indexed states, with SymPy inside.

States are ``IndexedBase`` objects indexed by the step symbol :data:`n` (``x[n + 1]``), so the
SymPy printers give real subscripts. A learned block applied at a step is a :class:`BlockCall`
``F(step, argument)``; a per-step parameter ``k_n`` is ``k[n]``; a history sum is a SymPy ``Sum``
over a bound index; channel concatenation is :class:`Concat`. Element-wise functions that SymPy
lacks (``relu``, ``sigmoid``, ...) are undefined SymPy functions named after them.

Nothing here knows about parsing, analysis or code generation.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

import sympy

__all__ = [
    "n",
    "ELEMENTWISE",
    "BlockCall",
    "Concat",
    "Domain",
    "Equation",
    "Param",
    "Recurrence",
    "state",
    "block_calls",
    "state_refs",
    "rebuild",
]

#: The step index. ``x[n + 1]`` is the state computed at step ``n``.
n = sympy.Symbol("n", integer=True)


#: Element-wise functions of the language: name -> SymPy function class.
ELEMENTWISE: Mapping[str, object] = MappingProxyType(
    {
        "relu": sympy.Function("relu"),
        "sigmoid": sympy.Function("sigmoid"),
        # activations stay opaque: SymPy's own tanh queries assumptions exponentially in nesting
        "tanh": sympy.Function("tanh"),
        "softplus": sympy.Function("softplus"),
        "gelu": sympy.Function("gelu"),
        "silu": sympy.Function("silu"),
        "elu": sympy.Function("elu"),
        "exp": sympy.exp,
        "log": sympy.log,
        "sqrt": sympy.sqrt,
        "abs": sympy.Abs,
        "sin": sympy.sin,
        "cos": sympy.cos,
    }
)


class BlockCall(sympy.Function):
    """A learned block applied at a step: ``BlockCall(Symbol('F'), step, argument)``.

    The block name is a Symbol so that substitution and comparison work structurally; the step
    is ``n`` in a formula and an integer in an unrolled expansion.
    """

    nargs = 3
    is_commutative = True

    @property
    def block(self) -> str:
        return self.args[0].name

    @property
    def step(self) -> sympy.Expr:
        return self.args[1]

    @property
    def argument(self) -> sympy.Expr:
        return self.args[2]

    def _latex(self, printer) -> str:
        sub = "" if self.step == n else "_{%s}" % printer._print(self.step)
        return r"%s%s\left(%s\right)" % (self.block, sub, printer._print(self.argument))

    def _sympystr(self, printer) -> str:
        sub = "" if self.step == n else "_%s" % printer._print(self.step)
        return "%s%s(%s)" % (self.block, sub, printer._print(self.argument))


class Concat(sympy.Function):
    """Channel concatenation of its arguments (DenseNet), kept in argument order."""

    is_commutative = True

    def _latex(self, printer) -> str:
        return r"\left[%s\right]" % ", ".join(printer._print(a) for a in self.args)

    def _sympystr(self, printer) -> str:
        return "cat(%s)" % ", ".join(printer._print(a) for a in self.args)


def state(name: str, index: sympy.Expr | int) -> sympy.Indexed:
    """The reference ``name_index`` (``state('x', n + 1)`` is ``x_<n+1>``)."""
    return sympy.IndexedBase(name)[index]


@dataclass(frozen=True)
class Equation:
    """``state_<n+1> = rhs``; ``display_rhs`` keeps the user's term order for printing."""

    state: str
    rhs: sympy.Expr
    display_rhs: sympy.Expr
    line: int = 0
    column: int = 0


@dataclass(frozen=True)
class Param:
    """A learnable coefficient: one shared value, or one per step (``k_n``)."""

    name: str
    init: sympy.Expr
    per_step: bool

    @property
    def symbol(self) -> sympy.Expr:
        """How the parameter appears in equations: ``k`` or ``k[n]``."""
        return sympy.IndexedBase(self.name)[n] if self.per_step else sympy.Symbol(self.name)


@dataclass(frozen=True)
class Domain:
    """Where a free symbol may range when a family of formulas is searched.

    Either a closed interval ``[low, high]`` (sampled on a log scale when ``log``), or a finite
    set of ``choices``. Values are exact SymPy numbers, as everywhere in the representation.
    """

    low: sympy.Expr | None = None
    high: sympy.Expr | None = None
    log: bool = False
    choices: tuple[sympy.Expr, ...] | None = None

    def __post_init__(self) -> None:
        if (self.choices is None) == (self.low is None or self.high is None):
            raise ValueError("a domain is either an interval (low, high) or a set of choices")

    @property
    def is_finite(self) -> bool:
        """True for a set of choices (a grid can enumerate it)."""
        return self.choices is not None


@dataclass(frozen=True)
class Recurrence:
    """A parsed formula file: equations in evaluation order and everything they refer to.

    ``initial`` maps ``(state, index)`` to an explicit initial value (an expression in the
    input ``output_0``); unlisted states before step 0 follow the language defaults
    (:meth:`initial_value`).
    """

    equations: tuple[Equation, ...]
    output: str = "x"
    constants: Mapping[str, sympy.Expr] = field(default_factory=dict)
    params: Mapping[str, Param] = field(default_factory=dict)
    symbols: tuple[str, ...] = ()
    bindings: Mapping[str, sympy.Expr] = field(default_factory=dict)
    domains: Mapping[str, Domain] = field(default_factory=dict)  # free symbol -> search domain
    initial: Mapping[tuple[str, int], sympy.Expr] = field(default_factory=dict)
    shared_blocks: frozenset[str] = frozenset()
    name: str = "<formula>"

    # -- what the formula contains -------------------------------------------------------
    @property
    def states(self) -> tuple[str, ...]:
        return tuple(eq.state for eq in self.equations)

    def equation(self, state_name: str) -> Equation:
        for eq in self.equations:
            if eq.state == state_name:
                return eq
        raise KeyError(state_name)

    @property
    def blocks(self) -> tuple[str, ...]:
        """Block names in order of first appearance."""
        seen: dict[str, None] = {}
        for eq in self.equations:
            for call in block_calls(eq.display_rhs):
                seen.setdefault(call.block, None)
        return tuple(seen)

    @property
    def lags(self) -> dict[str, int]:
        """For each state, how many past values (``s_n``, ``s_<n-1>``, ...) the equations read.

        A state read only at ``n+1`` (same step) has lag 0; a history sum makes the lag
        unbounded and is reported as ``-1``.
        """
        lags = dict.fromkeys(self.states, 0)
        for eq in self.equations:
            if eq.rhs.has(sympy.Sum):
                for s in _summed_states(eq.rhs):
                    lags[s] = -1
            for ref in state_refs(eq.rhs):
                name = ref.base.label.name
                offset = ref.indices[0] - n
                if name in lags and lags[name] != -1 and offset.is_Integer and offset <= 0:
                    lags[name] = max(lags[name], 1 - int(offset))
        return lags

    @property
    def order(self) -> int | None:
        """How many past steps the formula reads (1 for ResNet); None for a history sum."""
        lags = self.lags.values()
        if any(v == -1 for v in lags):
            return None
        return max(lags, default=0)

    @property
    def free_symbols(self) -> tuple[str, ...]:
        """Declared symbols that have no value yet."""
        return tuple(s for s in self.symbols if s not in self.bindings)

    # -- values ----------------------------------------------------------------------------
    def substitutions(self) -> dict[sympy.Symbol, sympy.Expr]:
        """Symbol -> value for constants and bound symbols."""
        subs: dict = {sympy.Symbol(k): v for k, v in self.constants.items()}
        subs.update({sympy.Symbol(k): v for k, v in self.bindings.items()})
        # constants may refer to other constants
        for _ in range(len(subs)):
            changed = False
            for k, v in list(subs.items()):
                new = v.subs(subs) if hasattr(v, "subs") else v
                if new != v:
                    subs[k] = new
                    changed = True
            if not changed:
                break
        return subs

    def resolved_rhs(self, state_name: str, params: str = "symbolic") -> sympy.Expr:
        """The canonical right-hand side with constants and bindings substituted."""
        rhs = self.equation(state_name).rhs.xreplace(self.substitutions())
        if params == "init":
            rhs = substitute_param_inits(rhs, self.params)
        return rhs

    def initial_value(self, state_name: str, index: int) -> sympy.Expr:
        """The value of ``state_index`` for ``index <= 0`` in terms of the input ``output_0``."""
        if (state_name, index) in self.initial:
            return self.initial[(state_name, index)]
        if state_name == self.output:
            return state(self.output, 0)
        return sympy.Integer(0)

    def bind(self, **values) -> Recurrence:
        """A copy with free symbols given values (numbers or SymPy expressions)."""
        unknown = sorted(set(values) - set(self.symbols) - set(self.constants))
        if unknown:
            raise KeyError(
                f"cannot bind {', '.join(unknown)}: the formula's symbols are "
                f"{', '.join(self.symbols + tuple(self.constants)) or '(none)'}"
            )
        bindings = dict(self.bindings)
        constants = dict(self.constants)
        for key, value in values.items():
            value = (
                sympy.nsimplify(value, rational=True) if isinstance(value, float) else sympy.sympify(value)
            )
            if key in constants:
                constants[key] = value
            else:
                bindings[key] = value
        return replace(self, bindings=bindings, constants=constants)


def substitute_param_inits(expr: sympy.Expr, params: Mapping[str, Param]) -> sympy.Expr:
    """Replace every parameter (shared or per step) by its initial value."""
    mapping = {}
    for p in params.values():
        if p.per_step:
            base = sympy.IndexedBase(p.name)
            for ref in expr.atoms(sympy.Indexed):
                if ref.base == base:
                    mapping[ref] = p.init
        else:
            mapping[sympy.Symbol(p.name)] = p.init
    return expr.xreplace(mapping)


def block_calls(expr: sympy.Expr) -> Iterator[BlockCall]:
    """Every block call in ``expr``, outer calls before the ones nested in their arguments."""
    for node in sympy.preorder_traversal(expr):
        if isinstance(node, BlockCall):
            yield node


def state_refs(expr: sympy.Expr) -> Iterator[sympy.Indexed]:
    """Every indexed reference in ``expr`` (states and per-step parameters alike)."""
    for node in sympy.preorder_traversal(expr):
        if isinstance(node, sympy.Indexed):
            yield node


def _summed_states(expr: sympy.Expr) -> set[str]:
    names: set[str] = set()
    for s in expr.atoms(sympy.Sum):
        for ref in state_refs(s.function):
            names.add(ref.base.label.name)
    return names


def rebuild(expr: sympy.Expr) -> sympy.Expr:
    """Evaluate an expression built with ``evaluate=False`` into SymPy's canonical form."""
    if not expr.args or isinstance(expr, (sympy.Indexed, sympy.Symbol)):
        return expr
    if isinstance(expr, sympy.Sum):
        return sympy.Sum(rebuild(expr.function), *expr.limits)
    return expr.func(*(rebuild(a) for a in expr.args))
