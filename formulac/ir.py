"""The representation of a recurrence: equations over indexed states, with SymPy inside.

States are ``IndexedBase`` objects indexed by the step symbol :data:`n` (``x[n + 1]``), so the
SymPy printers give real subscripts. A learned block applied at a step is a :class:`BlockCall`
``F(step, argument)``; a per-step parameter ``k_n`` is ``k[n]``; a history sum is a SymPy ``Sum``
over a bound index; channel concatenation is :class:`Concat`. Element-wise functions that SymPy
lacks (``relu``, ``sigmoid``, ...) are opaque SymPy functions named after them that evaluate
numerically by their definitions.

This module owns the facts about a formula that every later stage needs: the state references
(:class:`StateRef`: name and index), the walkers over expressions (:func:`walk`,
:func:`references`, :func:`block_calls`, :func:`top_level_calls`), the lags (:func:`lags_of`),
the output state (resolved once, by :func:`default_output` unless declared), the values of
constants (:meth:`Recurrence.substitutions`) and the formula's canonical text
(:func:`to_rec`, :attr:`Recurrence.text`). Nothing here knows about parsing, analysis or code
generation.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from functools import cached_property, lru_cache
from types import MappingProxyType

import sympy
from mpmath.libmp import prec_to_dps
from sympy.printing.precedence import PRECEDENCE
from sympy.printing.str import StrPrinter

from .errors import UnboundSymbolsError, UnknownNameError, UsageError
from .floats import coefficient_problem
from .limits import CHECKED_STEPS, SINKHORN_ITERATIONS

__all__ = [
    "n",
    "ELEMENTWISE",
    "UNBOUNDED",
    "BlockCall",
    "Concat",
    "Domain",
    "Equation",
    "Param",
    "Recurrence",
    "StateRef",
    "CycleError",
    "state",
    "walk",
    "references",
    "block_calls",
    "block_calls_innermost_first",
    "top_level_calls",
    "state_refs",
    "lags_of",
    "windows_written_out",
    "default_output",
    "evaluation_order",
    "resolve_values",
    "rebuild",
    "substitute_param_inits",
    "pair_indices",
    "StreamOp",
    "Mix",
    "Read",
    "Spread",
    "Scale",
    "StreamSum",
    "Streams",
    "Sinkhorn",
    "Softmax",
    "StreamIdentity",
    "OneHot",
    "Dynamic",
    "DYNAMIC_MAPS",
    "DEFAULT_DYNAMIC_MAP",
    "CONSTRAINTS",
    "shaped_initial",
    "sinkhorn_matrix",
    "softmax_vector",
    "entry_name",
    "pair_reference",
    "pair_entries",
    "pair_range",
    "pair_selection",
    "learned_coefficient_counts",
    "written_out",
    "has_activation",
    "RecPrinter",
    "rec_expr",
    "index_text",
    "decimal_text",
    "to_rec",
]

#: The step index. ``x[n + 1]`` is the state computed at step ``n``.
n = sympy.Symbol("n", integer=True)

#: The lag of a state read through a history sum (every past value).
UNBOUNDED = -1


# -- element-wise functions ------------------------------------------------------------------


class _Activation(sympy.Function):
    """An element-wise function SymPy lacks: opaque to simplification (SymPy's own ``tanh``
    queries assumptions exponentially in nesting), numeric through its definition, so that a
    coefficient such as ``sigmoid(1)`` evaluates to a number."""

    nargs = 1

    @staticmethod
    def definition(x: sympy.Expr) -> sympy.Expr:
        raise NotImplementedError

    def _eval_evalf(self, prec):
        return _evaluated(self, 30 * -(-prec_to_dps(prec) // 30))  # a few precisions: cache hits


@lru_cache(maxsize=4096)
def _evaluated(call: _Activation, digits: int) -> sympy.Expr | None:
    """A numeric value of an activation, memoised so that nested calls cost linear time."""
    x = call.args[0].evalf(digits)  # a Float first: the definition never sees nested calls
    if x.is_Number and not x.is_comparable:
        # a written cancellation (relu(2 - 2), kept as written) evaluates to a zero of no
        # precision, 0.e-165, which Max cannot compare: the exact value decides
        x = call.args[0].doit().evalf(digits)
    if not x.is_Number or not x.is_comparable:
        return None
    return call.definition(x).evalf(digits)


def _activation(name: str, definition, write_out: bool = True) -> type[_Activation]:
    attributes = {"definition": staticmethod(definition), "write_out": write_out, "__module__": __name__}
    return type(name, (_Activation,), attributes)


relu = _activation("relu", lambda x: sympy.Max(0, x))
sigmoid = _activation("sigmoid", lambda x: 1 / (1 + sympy.exp(-x)))
tanh = _activation("tanh", sympy.tanh, write_out=False)  # SymPy's tanh is slow when nested
softplus = _activation("softplus", lambda x: sympy.log(1 + sympy.exp(x)))
gelu = _activation("gelu", lambda x: x * (1 + sympy.erf(x / sympy.sqrt(2))) / 2)
silu = _activation("silu", lambda x: x / (1 + sympy.exp(-x)))
elu = _activation("elu", lambda x: sympy.Piecewise((x, x > 0), (sympy.exp(x) - 1, True)))
# the stream normalised over its features (a layer norm without learned gain and shift): a
# nonlinear map of a whole state, which forgets its scale and shift. Of one number it has no
# value (a single feature normalises to 0/0), so it is never written out.
norm = _activation("norm", lambda x: sympy.nan, write_out=False)

_ACTIVATIONS = (relu, sigmoid, tanh, softplus, gelu, silu, elu, norm)


def written_out(expr: sympy.Expr) -> sympy.Expr:
    """``expr`` with the language's own activations replaced by their SymPy definitions
    (``relu(2)`` -> ``2``, ``sigmoid(k)`` -> ``1/(1 + exp(-k))``): exact values of coefficients."""
    if not isinstance(expr, sympy.Basic) or not expr.has(*_ACTIVATIONS):
        return expr
    return expr.replace(
        lambda e: isinstance(e, _Activation) and e.write_out, lambda e: type(e).definition(e.args[0])
    )


def has_activation(expr: sympy.Expr) -> bool:
    """Does ``expr`` hold one of the language's opaque activations (which ``sympy.simplify``
    must not see: it rewrites nested calls exponentially)?"""
    return isinstance(expr, sympy.Basic) and expr.has(*_ACTIVATIONS)


#: Element-wise functions of the language: name -> SymPy function class.
ELEMENTWISE: Mapping[str, object] = MappingProxyType(
    {
        "relu": relu,
        "sigmoid": sigmoid,
        "tanh": tanh,
        "softplus": softplus,
        "gelu": gelu,
        "silu": silu,
        "elu": elu,
        "norm": norm,
        "exp": sympy.exp,
        "log": sympy.log,
        "sqrt": sympy.sqrt,
        "abs": sympy.Abs,
        "sin": sympy.sin,
        "cos": sympy.cos,
    }
)


# -- expressions -------------------------------------------------------------------------------


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


# -- streams (hyper-connections) ----------------------------------------------------------------
#
# A file may declare a stream state (``stream h[4]``: four copies of the stream, stacked) and
# per-step vector and matrix parameters (``param H_n[4,4] = identity``). The parser reads them
# into a compact form whose equations use the operations below, and lowers that form to plain
# scalar states (``h0 .. h3``) and scalar per-step parameters (``H01_n``: entry (0, 1)) for the
# analyses (:attr:`Recurrence.compact` keeps the compact form for code generation).


class StreamOp(sympy.Function):
    """An operation of the compact stream form; printed in ``.rec`` syntax by :class:`RecPrinter`."""

    is_commutative = True


class Mix(StreamOp):
    """``M @ s``: matrix ``M`` (k x k) times the stream state ``s``: stream j is sum_i M[j,i]*s_i."""

    nargs = 2


class Read(StreamOp):
    """``v @ s``: the combination sum_i v[i]*s_i of the streams, one tensor (what a block reads)."""

    nargs = 2


class Spread(StreamOp):
    """``v*t``: a tensor written to every stream with weight v[i] (a block output into the streams)."""

    nargs = 2


class Scale(StreamOp):
    """``v*s``: stream i scaled by v[i]."""

    nargs = 2


class StreamSum(StreamOp):
    """``sum(s)``: the sum of the streams, one tensor."""

    nargs = 1


class Streams(StreamOp):
    """k copies of a value (a stream state before the first step): ``Streams(x_0, 4)``."""

    nargs = 2


class Sinkhorn(StreamOp):
    """``sinkhorn(M)``: the doubly stochastic matrix of Sinkhorn-Knopp on exp(M) (mHC):
    :data:`~formulac.limits.SINKHORN_ITERATIONS` rounds of rows then columns normalised."""

    nargs = 1


class Softmax(StreamOp):
    """``softmax(v)``: exp(v) normalised to sum 1 (of a matrix: each row)."""

    nargs = 1


class StreamIdentity(StreamOp):
    """``identity``: the initial value of a k x k parameter that is the identity matrix."""

    nargs = 0


class OneHot(StreamOp):
    """``onehot(j)``: the initial value of a vector parameter, 1 at entry j (from 0), 0 elsewhere."""

    nargs = 1


class Dynamic(StreamOp):
    """``dynamic(s_n)`` in a parameter's initial value: an input-dependent part added to the
    static one, ``scale*tanh(rmsnorm(s_n) @ W)`` per token (hyper-connections' dynamic
    coefficients), zero at the start (``W`` starts at 0). ``dynamic(s_n, linear)``: the same
    without the tanh (:data:`DYNAMIC_MAPS`); the second argument is the map's name as a Symbol."""

    nargs = (1, 2)


#: The maps of an input-dependent part, ``dynamic(s_n, MAP)``: name -> what it computes per
#: token. ``tanh`` (the default, hyper-connections' dynamic part) is bounded by ``scale``;
#: ``linear`` (mHC's, whose sigmoid and Sinkhorn bound the coefficient instead) is not.
DYNAMIC_MAPS: Mapping[str, str] = MappingProxyType(
    {"tanh": "scale*tanh(rmsnorm(s_n) @ W)", "linear": "scale*(rmsnorm(s_n) @ W)"}
)
#: The map of ``dynamic(s_n)`` without a second argument.
DEFAULT_DYNAMIC_MAP = "tanh"


#: Constraints of the language on a shaped parameter: name -> its SymPy function.
CONSTRAINTS: Mapping[str, type[StreamOp]] = MappingProxyType({"sinkhorn": Sinkhorn, "softmax": Softmax})


def shaped_initial(init: sympy.Expr, shape: tuple[int, ...]) -> list:
    """The initial entries of a vector (``[k]``) or matrix (``[k,k]``) parameter as nested lists
    of exact numbers: ``identity``, ``onehot(j)``, or one number for every entry."""
    if isinstance(init, StreamIdentity):
        return [[sympy.Integer(int(i == j)) for j in range(shape[1])] for i in range(shape[0])]
    if isinstance(init, OneHot):
        return [sympy.Integer(int(i == int(init.args[0]))) for i in range(shape[0])]
    if len(shape) == 1:
        return [init] * shape[0]
    return [[init] * shape[1] for _ in range(shape[0])]


def sinkhorn_matrix(logits: list[list], iterations: int = SINKHORN_ITERATIONS, exp=math.exp) -> list[list]:
    """Sinkhorn-Knopp of exp(logits) (each row shifted by its largest entry first, which changes
    nothing but the range): rows then columns normalised to sum 1, ``iterations`` times. Works on
    floats, or on mpmath numbers with ``exp=mpmath.exp``."""
    m = [[exp(v - max(row)) for v in row] for row in logits]
    for _ in range(iterations):
        m = [[v / sum(row) for v in row] for row in m]
        columns = [sum(col) for col in zip(*m)]
        m = [[v / c for v, c in zip(row, columns)] for row in m]
    return m


def softmax_vector(values: list, exp=math.exp) -> list:
    """exp(values) normalised to sum 1."""
    top = max(values)
    e = [exp(v - top) for v in values]
    total = sum(e)
    return [v / total for v in e]


def entry_name(name: str, index: tuple[int, ...], constraint: str | None = None) -> str:
    """The lowered scalar parameter of one entry: ``H01`` (entry (0, 1) of ``H``), or
    ``sinkhornH01`` (entry (0, 1) of ``sinkhorn(H)``)."""
    return (constraint or "") + name + "".join(str(i) for i in index)


def state(name: str, index: sympy.Expr | int) -> sympy.Indexed:
    """The reference ``name_index`` (``state('x', n + 1)`` is ``x_<n+1>``)."""
    return sympy.IndexedBase(name)[index]


@dataclass(frozen=True)
class StateRef:
    """A state (or per-step parameter) at an index: ``x_<n-1>`` is ``StateRef("x", n - 1)``.

    The index is ``n`` plus a whole number (in an equation), a sum's variable plus a whole
    number (``x_<i-1>`` in a history sum), or a whole number (``x_0``, and every index of an
    unrolled expansion). ``node`` is the SymPy ``Indexed`` it was read from.
    """

    name: str
    index: sympy.Expr
    node: sympy.Indexed | None = field(default=None, compare=False, repr=False)

    @classmethod
    def of(cls, node: sympy.Indexed) -> StateRef:
        return cls(node.base.label.name, node.indices[0], node)

    @property
    def indexed(self) -> sympy.Indexed:
        """The SymPy form, ``x[n - 1]``."""
        return self.node if self.node is not None else state(self.name, self.index)

    @property
    def variable(self) -> sympy.Symbol | None:
        """``n``, a sum's variable, or None for an absolute index."""
        return next(iter(self.index.free_symbols), None)

    @property
    def shift(self) -> int:
        """The index minus its variable: ``x_<n-1>`` -> -1, ``x_<i+1>`` -> 1, ``x_<-2>`` -> -2."""
        variable = self.variable
        return int(self.index if variable is None else self.index - variable)

    @property
    def offset(self) -> int | None:
        """Steps from ``n``: ``x_<n+1>`` -> 1, ``x_n`` -> 0, ``x_<n-1>`` -> -1; None otherwise."""
        difference = self.index - n
        return int(difference) if difference.is_Integer else None

    @property
    def step(self) -> int | None:
        """The absolute index (``x_0`` -> 0, ``x_<-1>`` -> -1, ``x_3`` -> 3); None otherwise."""
        return int(self.index) if self.index.is_Integer else None

    def at(self, step: int) -> int:
        """The index at a concrete step (``x_<n-1>`` at step 3 -> 2)."""
        return int(self.index.xreplace({n: step}))


def walk(expr: sympy.Basic, *, into_blocks: bool = True, into_sums: bool = True) -> Iterator[sympy.Basic]:
    """Every node of ``expr``, parents before children and left to right, without recursion.

    ``into_blocks=False`` yields block calls but not what is inside their arguments;
    ``into_sums=False`` does the same for history sums.
    """
    stack = [expr]
    while stack:
        node = stack.pop()
        yield node
        if (not into_blocks and isinstance(node, BlockCall)) or (
            not into_sums and isinstance(node, sympy.Sum)
        ):
            continue
        stack.extend(reversed(node.args))


def references(
    expr: sympy.Basic,
    names: Iterable[str] | None = None,
    *,
    into_blocks: bool = True,
    into_sums: bool = True,
) -> Iterator[StateRef]:
    """The indexed references of ``expr`` (of the states ``names`` when given), in order."""
    wanted = names if names is None or isinstance(names, (set, frozenset, dict)) else frozenset(names)
    for node in walk(expr, into_blocks=into_blocks, into_sums=into_sums):
        if isinstance(node, sympy.Indexed):
            ref = StateRef.of(node)
            if wanted is None or ref.name in wanted:
                yield ref


def block_calls(expr: sympy.Basic) -> Iterator[BlockCall]:
    """Every block call in ``expr``, outer calls before the ones nested in their arguments."""
    for node in walk(expr):
        if isinstance(node, BlockCall):
            yield node


def block_calls_innermost_first(expr: sympy.Basic) -> list[BlockCall]:
    """The distinct block calls of ``expr``, each after the calls nested in its argument and
    otherwise left to right: the order in which code can compute them."""
    found: list[BlockCall] = []

    def visit(node: sympy.Basic) -> None:
        for arg in node.args:
            visit(arg)
        if isinstance(node, BlockCall) and node not in found:
            found.append(node)

    visit(expr)
    return found


def top_level_calls(expr: sympy.Basic) -> Iterator[BlockCall]:
    """Block calls of ``expr`` that are not nested inside another block's argument."""
    for node in walk(expr, into_blocks=False):
        if isinstance(node, BlockCall):
            yield node


def state_refs(expr: sympy.Basic) -> Iterator[sympy.Indexed]:
    """Every indexed node in ``expr`` (states and per-step parameters alike)."""
    for node in walk(expr):
        if isinstance(node, sympy.Indexed):
            yield node


def lags_of(refs: Iterable[StateRef], states: Iterable[str]) -> dict[str, int]:
    """For each state, how many of its values up to step ``n`` the references read.

    ``x_n`` alone is lag 1, ``x_<n-1>`` makes it 2; a state read only at ``n+1`` (same step) or
    by absolute index (``x_0``) has lag 0; a read through a sum's variable is :data:`UNBOUNDED`.
    """
    lags = dict.fromkeys(states, 0)
    for ref in refs:
        if ref.name not in lags or lags[ref.name] == UNBOUNDED:
            continue
        if ref.variable is not None and ref.variable != n:
            lags[ref.name] = UNBOUNDED
            continue
        offset = ref.offset
        if offset is not None and offset <= 0:
            lags[ref.name] = max(lags[ref.name], 1 - offset)
    return lags


def default_output(states: Sequence[str]) -> str | None:
    """The output state when no ``output`` line names one: ``x`` if the formula advances it,
    else the only state; None when several states leave it open."""
    if "x" in states:
        return "x"
    if len(states) == 1:
        return states[0]
    return None


class CycleError(ValueError):
    """Items that depend on each other in a cycle; ``cycle`` lists it, first item repeated."""

    def __init__(self, cycle: list[str]):
        super().__init__(" -> ".join(cycle))
        self.cycle = cycle


def evaluation_order(items: Sequence[str], depends_on: Mapping[str, Iterable[str]]) -> list[str]:
    """``items`` with each after everything it depends on, otherwise in the given order.

    Iterative (no recursion limit on long chains), linear in items plus dependencies; raises
    :class:`CycleError` for a cycle. Dependencies outside ``items`` are ignored.
    """
    position = {item: i for i, item in enumerate(items)}

    def deps(item: str) -> Iterator[str]:
        return iter(sorted((d for d in set(depends_on.get(item, ())) if d in position), key=position.get))

    order: list[str] = []
    done: set[str] = set()
    for root in items:
        if root in done:
            continue
        path = [root]
        on_path = {root}
        stack = [deps(root)]
        while stack:
            for dep in stack[-1]:
                if dep in on_path:
                    raise CycleError(path[path.index(dep) :] + [dep])
                if dep not in done:
                    path.append(dep)
                    on_path.add(dep)
                    stack.append(deps(dep))
                    break
            else:
                stack.pop()
                finished = path.pop()
                on_path.discard(finished)
                done.add(finished)
                order.append(finished)
    return order


def resolve_values(values: Mapping[str, sympy.Expr], check=None) -> dict[sympy.Symbol, sympy.Expr]:
    """Named values that may use one another (constants) -> Symbol -> value in none of them.

    Resolved in dependency order, each value once (linear in the total size for chains);
    ``check(name, value)`` sees every resolved value as it is made (the parser's size limits).
    Raises :class:`CycleError` when values are defined through themselves.
    """
    symbols = {name: sympy.Symbol(name) for name in values}
    uses = {
        name: [s.name for s in value.free_symbols if s.name in symbols and s == symbols[s.name]]
        for name, value in values.items()
    }
    resolved: dict[sympy.Symbol, sympy.Expr] = {}
    for name in evaluation_order(list(values), uses):
        value = values[name]
        if uses[name]:
            value = value.xreplace({symbols[d]: resolved[symbols[d]] for d in uses[name]})
        if check is not None:
            check(name, value)
        resolved[symbols[name]] = value
    return resolved


def rebuild(expr: sympy.Expr) -> sympy.Expr:
    """Evaluate an expression built with ``evaluate=False`` into SymPy's canonical form."""
    if not expr.args or isinstance(expr, (sympy.Indexed, sympy.Symbol)):
        return expr
    if isinstance(expr, sympy.Sum):
        return sympy.Sum(rebuild(expr.function), *expr.limits)
    return expr.func(*(rebuild(a) for a in expr.args))


def substitute_param_inits(expr: sympy.Expr, params: Mapping[str, Param]) -> sympy.Expr:
    """Replace every parameter (shared, per step or per pair of steps) by its initial value."""
    mapping = {}
    for p in params.values():
        if p.pair is not None:
            for ref in references(expr, (p.name,)):
                mapping[ref.indexed] = p.init_at(*pair_indices(ref.indexed))
        elif p.per_step:
            for ref in references(expr, (p.name,)):
                mapping[ref.indexed] = p.init
        else:
            mapping[sympy.Symbol(p.name)] = p.init
    return expr.xreplace(mapping)


def pair_range(rec: Recurrence, name: str) -> tuple[sympy.Expr, sympy.Expr]:
    """The limits (in ``n``) of the sum that reads the pair parameter ``name``; the parser
    gives each pair parameter one range, so a step holds one weight per step of it."""
    for eq in rec.equations:
        for total in eq.rhs.atoms(sympy.Sum):
            if next(references(total.function, (name,)), None) is not None:
                ((_, low, high),) = total.limits
                return low, high
    raise UsageError(f"pair parameter {name} is not read in any sum")


def pair_selection(rec: Recurrence, name: str) -> tuple[sympy.Symbol, sympy.Expr, sympy.Expr, sympy.Expr]:
    """``(variable, low, high, selector)`` of the sum that reads the pair parameter ``name``:
    ``selector`` is the product of the conditions (``[a == b]``, in ``n`` and the variable) that
    multiply the sum or its body, 1 when none. Step ``t`` holds a weight for every ``i`` in
    ``low..high`` where the selector is 1 (DenseFormer's dilation and period)."""
    for eq in rec.equations:
        for term in sympy.Add.make_args(eq.rhs):
            for total in term.atoms(sympy.Sum):
                if next(references(total.function, (name,)), None) is None:
                    continue
                ((var, low, high),) = total.limits
                outer = [f for f in sympy.Mul.make_args(term) if isinstance(f, sympy.KroneckerDelta)]
                inner = [
                    f for f in sympy.Mul.make_args(total.function) if isinstance(f, sympy.KroneckerDelta)
                ]
                return var, low, high, sympy.Mul(*outer, *inner)
    raise UsageError(f"pair parameter {name} is not read in any sum")


def pair_entries(rec: Recurrence, name: str, step: int) -> list[int]:
    """The earlier steps ``i`` that hold a weight of the pair parameter ``name`` at ``step``."""
    var, low, high, selector = pair_selection(rec, name)
    at = {n: sympy.Integer(step)}
    first, last = int(low.xreplace(at)), int(high.xreplace(at))
    return [i for i in range(first, last + 1) if selector.xreplace({**at, var: sympy.Integer(i)}) != 0]


def learned_coefficient_counts(rec: Recurrence, depth: int) -> dict[str, int]:
    """How many learned scalars each parameter holds in ``depth`` steps (one stage): 1 shared,
    ``depth`` per step, and for a pair parameter one per step of its sum at every step."""
    counts = {}
    if rec.compact is not None:  # the learned parameters are the compact form's (H_n[4,4]: 16 a step)
        return learned_coefficient_counts(rec.compact, depth)
    for name, p in rec.params.items():
        if p.shape is not None:
            counts[p.declared] = depth * math.prod(p.shape)
        elif p.pair is not None:
            counts[p.declared] = sum(len(pair_entries(rec, name, t)) for t in range(depth))
        else:
            counts[p.declared] = depth if p.per_step else 1
    return counts


# -- the formula -------------------------------------------------------------------------------


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
    """A learnable coefficient: one shared value, one per step (``k_n``), or one per pair of a
    step and an earlier step (``w_<n,i>``, read in a history sum).

    A pair parameter has ``per_step`` true and ``pair`` the name of its second index as
    declared (``"i"``); its ``init`` may depend on ``n`` and on :meth:`pair_symbol`
    (``[i == n]`` is ``KroneckerDelta(i, n)``).
    """

    name: str
    init: sympy.Expr
    per_step: bool
    pair: str | None = None
    #: a vector (``(k,)``) or matrix (``(k, k)``) parameter of the compact stream form
    shape: tuple[int, ...] | None = None
    #: a lowered entry: (the shaped parameter, its constraint or None, the entry's index)
    entry: tuple[str, str | None, tuple[int, ...]] | None = None
    #: the state an input-dependent part reads (``param pre_n[4] = onehot(0) + dynamic(h_n)``:
    #: ``h[n]``); ``init`` is the static part, the value at the start
    dynamic: sympy.Expr | None = None
    #: the map of the input-dependent part, a key of :data:`DYNAMIC_MAPS` (``dynamic(h_n, linear)``)
    dynamic_map: str = DEFAULT_DYNAMIC_MAP

    @property
    def symbol(self) -> sympy.Expr:
        """How the parameter appears in equations: ``k``, ``k[n]`` or ``w[n, i]``."""
        if self.pair is not None:
            return sympy.IndexedBase(self.name)[n, self.pair_symbol]
        return sympy.IndexedBase(self.name)[n] if self.per_step else sympy.Symbol(self.name)

    @property
    def pair_symbol(self) -> sympy.Symbol | None:
        """The second index of a pair parameter's initial value (None for other parameters)."""
        return None if self.pair is None else sympy.Symbol(self.pair, integer=True)

    def init_at(self, step, earlier=None) -> sympy.Expr:
        """The initial value at a step (and, for a pair parameter, an earlier step)."""
        if self.pair is None:
            return self.init
        return self.init.xreplace({n: sympy.sympify(step), self.pair_symbol: sympy.sympify(earlier)})

    @property
    def declared(self) -> str:
        """The parameter as its declaration writes it: ``k``, ``k_n`` or ``w_<n,i>``."""
        if self.pair is not None:
            return f"{self.name}_<n,{self.pair}>"
        if self.shape is not None:
            return f"{self.name}_n[{','.join(map(str, self.shape))}]"
        return f"{self.name}_n" if self.per_step else self.name

    @property
    def declaration(self) -> str:
        """The declaration without its keyword: ``pre_n[4] = onehot(0) + dynamic(h_n)``."""
        if self.dynamic is None:
            return f"{self.declared} = {rec_expr(self.init)}"
        # dynamic(h_n), or dynamic(h_n, linear) for a map other than the default
        named = () if self.dynamic_map == DEFAULT_DYNAMIC_MAP else (sympy.Symbol(self.dynamic_map),)
        return f"{self.declared} = {rec_expr(self.init)} + {rec_expr(Dynamic(self.dynamic, *named))}"


def pair_indices(node: sympy.Indexed) -> tuple[sympy.Expr, sympy.Expr] | None:
    """``w[n, i]`` -> ``(n, i)``; None for a reference with one index."""
    return tuple(node.indices) if len(node.indices) == 2 else None


def pair_reference(name: str, step: sympy.Expr, earlier: sympy.Expr) -> sympy.Indexed:
    """The pair parameter ``name`` at ``(step, earlier)``: ``pair_reference("w", n, i)`` is ``w_<n,i>``."""
    return sympy.IndexedBase(name)[step, earlier]


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


def windows_written_out(expr: sympy.Expr) -> sympy.Expr:
    """``expr`` with every window (a sum whose limits both follow n) written out term by term,
    so that its states are lags like any other: ``sum(j=n-2..n, x_j)`` -> ``x_<n-2> + x_<n-1> + x_n``."""
    if isinstance(expr, sympy.Sum):
        ((var, low, high),) = expr.limits
        if low.is_Integer:
            return expr
        terms = [_substituted(expr.function, var, low + k) for k in range(int(high - low) + 1)]
        if not terms:
            return sympy.Integer(0)
        return terms[0] if len(terms) == 1 else sympy.Add(*terms, evaluate=False)
    if not expr.args or isinstance(expr, (sympy.Indexed, sympy.Symbol)):
        return expr
    return _remade(expr, [windows_written_out(a) for a in expr.args])


def _windows_as_lags(expr: sympy.Expr) -> sympy.Expr:
    """The canonical ``expr`` with its windows written out and its sums evaluated again, so that
    terms that cancel (``sum(j=n-2..n, x_j) - x_<n-2>``) leave no lag behind."""
    if not expr.has(sympy.Sum):
        return expr
    return windows_written_out(expr).replace(
        lambda e: isinstance(e, (sympy.Add, sympy.Mul)), lambda e: e.func(*e.args)
    )


def _substituted(expr: sympy.Expr, var: sympy.Symbol, value: sympy.Expr) -> sympy.Expr:
    """``expr`` with ``var`` replaced by ``value``, the user's term order kept."""
    if expr == var:
        return value
    if isinstance(expr, sympy.Indexed) and pair_indices(expr) is not None:
        step, earlier = pair_indices(expr)
        return pair_reference(
            StateRef.of(expr).name, step.xreplace({var: value}), earlier.xreplace({var: value})
        )
    if isinstance(expr, sympy.Indexed):
        ref = StateRef.of(expr)
        return state(ref.name, ref.index.xreplace({var: value}))
    if not expr.args or not expr.has(var):
        return expr
    return _remade(expr, [_substituted(a, var, value) for a in expr.args])


def _remade(expr: sympy.Expr, args: list) -> sympy.Expr:
    if list(expr.args) == args:
        return expr
    if isinstance(expr, (sympy.Add, sympy.Mul, sympy.Pow)):
        return expr.func(*args, evaluate=False)
    if isinstance(expr, (BlockCall, Concat, sympy.Sum)):
        return expr.func(*args)
    return expr.func(*args, evaluate=False)


@dataclass(frozen=True)
class Recurrence:
    """A parsed formula file: equations in evaluation order and everything they refer to.

    ``initial`` maps ``(state, index)`` to an explicit initial value (an expression in the
    input ``output_0``); unlisted states before step 0 follow the language defaults
    (:meth:`initial_value`). ``display_values`` keeps the user's term order of constant values
    (by name) and initial values (by ``(state, index)``) for printing, as
    ``Equation.display_rhs`` does for equations.
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
    display_values: Mapping[object, sympy.Expr] = field(default_factory=dict)
    #: stream state -> its number of streams (the compact form of a ``stream h[k]`` file)
    streams: Mapping[str, int] = field(default_factory=dict)
    #: the compact stream form of a lowered formula (what code generation builds), else None
    compact: Recurrence | None = field(default=None, repr=False, compare=False)
    #: :meth:`substitutions` when the parser has already computed it (None: on first use)
    resolved: Mapping[sympy.Symbol, sympy.Expr] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.equations and self.output not in self.states:
            raise ValueError(f"the output {self.output!r} is not one of the states {self.states}")

    # -- what the formula contains -------------------------------------------------------
    @cached_property
    def states(self) -> tuple[str, ...]:
        return tuple(eq.state for eq in self.equations)

    @cached_property
    def _equations_by_state(self) -> dict[str, Equation]:
        return {eq.state: eq for eq in self.equations}  # equation() in constant time: long systems

    def equation(self, state_name: str) -> Equation:
        return self._equations_by_state[state_name]

    @property
    def blocks(self) -> tuple[str, ...]:
        """Block names in order of first appearance."""
        seen: dict[str, None] = {}
        for eq in self.equations:
            for call in block_calls(eq.display_rhs):
                seen.setdefault(call.block, None)
        return tuple(seen)

    def references(self) -> Iterator[StateRef]:
        """Every state reference of every equation, block arguments and history sums included."""
        names = frozenset(self.states)
        for eq in self.equations:
            yield from references(eq.rhs, names)

    @cached_property
    def lags(self) -> dict[str, int]:
        """For each state, how many past values (``s_n``, ``s_<n-1>``, ...) the equations read.

        A state read only at ``n+1`` (same step) has lag 0; a history sum makes the lag
        unbounded (:data:`UNBOUNDED`, -1).
        """
        names = frozenset(self.states)
        return lags_of(
            (r for eq in self.equations for r in references(_windows_as_lags(eq.rhs), names)), self.states
        )

    @cached_property
    def step_equations(self) -> tuple[tuple[str, sympy.Expr], ...]:
        """(state, right-hand side) of each equation as one step computes it: the user's terms
        (``display_rhs``) with every window written out (:func:`windows_written_out`)."""
        return tuple((eq.state, windows_written_out(eq.display_rhs)) for eq in self.equations)

    @cached_property
    def carried_lags(self) -> dict[str, int]:
        """The states a step keeps and how many values of each (``x_n``, ``x_<n-1>``, ...): those
        the step reads at ``n`` or before (windows written out), the output at least once, and a
        state summed over its whole history at least once (its history is kept besides); a state
        read only at ``n+1`` or at a fixed step is left out. The one home of this fact: the
        generated step, its memory modes and the backward step all read it."""
        names = frozenset(self.states)
        reads = [ref for _, rhs in self.step_equations for ref in references(rhs, names)]
        lagged = lags_of((r for r in reads if r.variable in (None, n)), self.states)
        summed = {r.name for r in reads if r.variable not in (None, n)}
        carried = {}
        for s in self.states:
            depth = max(lagged[s], 1) if s == self.output or s in summed else lagged[s]
            if depth:
                carried[s] = depth
        return carried

    @property
    def order(self) -> int | None:
        """How many past steps the formula reads (1 for ResNet); None for a history sum."""
        lags = self.lags.values()
        if any(v == UNBOUNDED for v in lags):
            return None
        return max(lags, default=0)

    @property
    def free_symbols(self) -> tuple[str, ...]:
        """Symbols (declared, or used without a declaration) that have no value yet."""
        return tuple(s for s in self.symbols if s not in self.bindings)

    @property
    def text(self) -> str:
        """The canonical ``.rec`` text (:func:`to_rec`)."""
        return to_rec(self)

    def display_value(self, key) -> sympy.Expr:
        """A constant's value (by name) or an initial value (by ``(state, index)``) as written."""
        if key in self.display_values:
            return self.display_values[key]
        return self.constants[key] if isinstance(key, str) else self.initial[key]

    # -- values ----------------------------------------------------------------------------
    @cached_property
    def _values(self) -> Mapping[sympy.Symbol, sympy.Expr]:
        if self.resolved is not None:
            return self.resolved
        try:
            return resolve_values({**self.constants, **self.bindings})
        except CycleError as exc:  # only bind() can make one: the parser refuses them
            raise UsageError(f"the values given make {exc.cycle[0]} depend on itself: {exc}") from None

    def substitutions(self) -> dict[sympy.Symbol, sympy.Expr]:
        """Symbol -> value for constants and bound symbols, each in terms of free symbols only."""
        return dict(self._values)

    def resolved_rhs(self, state_name: str, params: str = "symbolic") -> sympy.Expr:
        """The canonical right-hand side with constants and bindings substituted."""
        rhs = self.equation(state_name).rhs.xreplace(self._values)
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

    def require_bound(self, action: str = "a network") -> None:
        """Raise :class:`~formulac.errors.UnboundSymbolsError` naming every free symbol, if any."""
        if self.free_symbols:
            raise UnboundSymbolsError(self.free_symbols, action)

    def bind(self, **values) -> Recurrence:
        """A copy with free symbols (or constants) given values (numbers or SymPy expressions)."""
        unknown = sorted(set(values) - set(self.symbols) - set(self.constants))
        if unknown:
            raise UnknownNameError(
                f"cannot bind {', '.join(unknown)}: the formula's symbols are "
                f"{', '.join(self.symbols + tuple(self.constants)) or '(none)'}"
            )
        bindings = dict(self.bindings)
        constants = dict(self.constants)
        display = dict(self.display_values)
        domains = dict(self.domains)
        for key, value in values.items():
            value = _exact(key, value)
            if key in constants:
                constants[key] = value
                display.pop(key, None)
            else:
                bindings[key] = value
                domains.pop(key, None)
        compact = self.compact
        if compact is not None:
            compact = replace(compact, bindings=bindings, constants=constants, domains=domains, resolved=None)
        bound = replace(
            self,
            bindings=bindings,
            constants=constants,
            display_values=display,
            domains=domains,
            resolved=None,
            compact=compact,
        )
        bound._check_values(", ".join(f"{k} = {rec_expr(bound._values[sympy.Symbol(k)])}" for k in values))
        return bound

    def _check_values(self, given: str) -> None:
        """Every value finite and real once constants and bindings are substituted."""
        values = self._values
        checked = [(f"the value of {s}", v) for s, v in values.items()]
        checked += [(f"the equation of {eq.state}", eq.rhs.xreplace(values)) for eq in self.equations]
        checked += [(f"{k[0]}_{index_text(k[1])}", v.xreplace(values)) for k, v in self.initial.items()]
        for what, value in checked:
            if value.has(sympy.zoo, sympy.nan, sympy.oo, -sympy.oo):
                raise UsageError(f"with {given}, {what} divides by zero (or is otherwise undefined)")
            if value.has(sympy.I):
                raise UsageError(f"with {given}, {what} is not a real number")
        # what the network computes: its coefficients as doubles, at every step, exact and as written
        computed = [(f"the equation of {eq.state}", eq.rhs) for eq in self.equations]
        computed += [(f"the equation of {eq.state}", eq.display_rhs) for eq in self.equations]
        computed += [(f"{k[0]}_{index_text(k[1])}", v) for k, v in self.initial.items()]
        for what, value in computed:
            problem = coefficient_problem(value, n, CHECKED_STEPS, values)
            if problem is not None:
                raise UsageError(f"with {given}, in {what} the coefficient {problem.describe(rec_expr)}")


def _exact(name: str, value) -> sympy.Expr:
    """A value given to ``bind``: floats become the rational they print as (0.1 -> 1/10)."""
    if isinstance(value, bool):
        raise UsageError(f"cannot bind {name} to {value!r}: give a number")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise UsageError(f"cannot bind {name} to {value!r}: give a finite number")
        return sympy.Rational(str(value))
    if isinstance(value, Fraction):
        return sympy.Rational(value.numerator, value.denominator)
    try:
        result = sympy.sympify(value, strict=not isinstance(value, str))
    except (sympy.SympifyError, TypeError, SyntaxError) as exc:
        raise UsageError(f"cannot bind {name} to {value!r}: give a number ({exc})") from None
    if result.has(sympy.zoo, sympy.oo, -sympy.oo, sympy.nan):
        raise UsageError(f"cannot bind {name} to {value!r}: give a finite number")
    return result


# -- canonical text ------------------------------------------------------------------------------


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
    """SymPy expressions in the syntax of the ``.rec`` language (the text re-parses)."""

    printmethod = "_rec_text"  # not SymPy's own `_sympystr`, which Indexed defines

    def _print_Indexed(self, expr):
        if len(expr.indices) == 2:  # a pair parameter: w_<n,i>
            return f"{expr.base.label}_<{','.join(index_text(i).strip('<>') for i in expr.indices)}>"
        return f"{expr.base.label}_{index_text(expr.indices[0])}"

    def _print_KroneckerDelta(self, expr):
        return f"[{self._print(expr.args[0])} == {self._print(expr.args[1])}]"

    def _print_Mod(self, expr):
        value, modulus = expr.args
        text = self._print(value)
        return (
            f"({text}) % {self._print(modulus)}"
            if not (value.is_Atom)
            else f"{text} % {self._print(modulus)}"
        )

    def _print_BlockCall(self, expr: BlockCall):
        step = "" if expr.step == n else "_" + index_text(expr.step)
        return f"{expr.block}{step}({self._print(expr.argument)})"

    def _print_Mix(self, expr):
        return " @ ".join(self.parenthesize(a, PRECEDENCE["Mul"]) for a in expr.args)

    _print_Read = _print_Mix

    def _print_Spread(self, expr):
        return "*".join(self.parenthesize(a, PRECEDENCE["Mul"]) for a in expr.args)

    _print_Scale = _print_Spread

    def _print_StreamSum(self, expr):
        return f"sum({self._print(expr.args[0])})"

    def _print_Streams(self, expr):
        return self._print(expr.args[0])

    def _print_Sinkhorn(self, expr):
        return f"sinkhorn({self._print(expr.args[0])})"

    def _print_Softmax(self, expr):
        return f"softmax({self._print(expr.args[0])})"

    def _print_StreamIdentity(self, expr):
        return "identity"

    def _print_OneHot(self, expr):
        return f"onehot({self._print(expr.args[0])})"

    def _print_Dynamic(self, expr):
        return "dynamic(%s)" % ", ".join(self._print(a) for a in expr.args)

    def _print_Concat(self, expr: Concat):
        return "cat(%s)" % ", ".join(self._print(a) for a in expr.args)

    def _print_Sum(self, expr):
        ((var, low, high),) = expr.limits
        return f"sum({var}={self._print(low)}..{self._print(high)}, {self._print(expr.function)})"

    def _print_Mul(self, expr):
        """Factors in their order after one numeric coefficient that carries the sign, with
        ``p/q`` and negative powers below one bar: ``-2*a*b/(3*c)``. Nested products print flat
        and their numbers combine, which is also how the parser reads the text back."""
        coefficient, above, below = _product_parts(expr)
        if coefficient == 0:
            return "0"
        sign = "-" if coefficient < 0 else ""
        coefficient = abs(coefficient)
        if coefficient.p != 1 or not above:
            above.insert(0, sympy.Integer(coefficient.p))
        if coefficient.q != 1:
            below.insert(0, sympy.Integer(coefficient.q))
        level = PRECEDENCE["Mul"]
        text = "*".join(self.parenthesize(f, level) for f in above)
        if len(below) == 1:
            text += "/" + self.parenthesize(below[0], level)
        elif below:
            text += "/(" + "*".join(self.parenthesize(f, level) for f in below) + ")"
        return sign + text

    def _print_Pow(self, expr, rational=False):
        base, exp = expr.args
        if exp == sympy.S.Half:
            return "sqrt(%s)" % self._print(base)
        if exp.is_Integer and exp.is_negative:  # 1/x, 1/x^2, and numbers as the parser folds them
            return self._print_Mul(sympy.Mul(sympy.Integer(1), expr, evaluate=False))
        # ^ groups to the right: a power as the base needs parentheses, (x^3)^2
        return "%s^%s" % (
            self.parenthesize(_single_factor(base), PRECEDENCE["Pow"]),
            self.parenthesize(_single_factor(exp), PRECEDENCE["Pow"]),
        )

    def _print_Exp1(self, expr):
        return "exp(1)"

    def _print_Abs(self, expr):
        return "abs(%s)" % self._print(expr.args[0])

    def _print_Integer(self, expr):
        return decimal_text(int(expr.p))

    def _print_Rational(self, expr):
        return f"{decimal_text(int(expr.p))}/{decimal_text(int(expr.q))}"

    def _print_Float(self, expr):  # only from user bindings; keep it exact enough to re-read
        return repr(float(expr))


def decimal_text(value: int) -> str:
    """``str(value)`` at any size (Python refuses more than 4,300 digits by default)."""
    if abs(value).bit_length() <= _SAFE_BITS:
        return str(value)
    pieces: list[str] = []
    _decimal_pieces(abs(value), pieces, 0)
    return ("-" if value < 0 else "") + "".join(pieces)


_SAFE_BITS = 12_000  # about 3,600 digits: within Python's default limit


def _decimal_pieces(value: int, pieces: list[str], width: int) -> None:
    """Append the digits of ``value`` (zero-padded to ``width``), splitting at a power of ten."""
    if value.bit_length() <= _SAFE_BITS:
        pieces.append(str(value).rjust(width, "0"))
        return
    digits = int(value.bit_length() * 0.30103) // 2
    high, low = divmod(value, 10**digits)
    _decimal_pieces(high, pieces, max(0, width - digits))
    _decimal_pieces(low, pieces, digits)


def _product_parts(expr: sympy.Mul) -> tuple[sympy.Rational, list, list]:
    """A product as its numeric coefficient, the factors above the bar and those below it."""
    coefficient, above, below = sympy.Integer(1), [], []
    stack = list(reversed(expr.args))
    while stack:
        f = stack.pop()
        if isinstance(f, sympy.Mul):
            stack.extend(reversed(f.args))
        elif f.is_Rational:
            coefficient *= f
        elif f.is_Pow and f.exp.is_Integer and f.exp.is_negative and isinstance(f.base, sympy.Mul):
            stack.extend(sympy.Pow(g, f.exp, evaluate=False) for g in reversed(f.base.args))
        elif f.is_Pow and f.exp.is_Integer and f.exp.is_negative and f.base.is_Pow:
            power = f.base.exp * f.exp
            stack.append(f.base.base if power == 1 else sympy.Pow(f.base.base, power, evaluate=False))
        elif f.is_Pow and f.exp.is_Rational and f.exp.is_negative:  # x^(-1/2): below as sqrt(x)
            if f.base.is_Rational and f.exp.is_Integer:
                coefficient /= f.base ** (-f.exp)
            else:
                below.append(f.base if f.exp == -1 else sympy.Pow(f.base, -f.exp, evaluate=False))
        else:
            above.append(f)
    return coefficient, above, below


def _single_factor(expr: sympy.Expr) -> sympy.Expr:
    """A product that prints as one factor (``2*(1/2*a)`` prints ``a``) as that factor, so
    that it is parenthesised as what it prints."""
    if expr.is_Pow and expr.exp.is_Integer and expr.exp.is_negative:
        expr = sympy.Mul(sympy.Integer(1), expr, evaluate=False)  # printed as a product: 1/x
    if isinstance(expr, sympy.Mul):
        coefficient, above, below = _product_parts(expr)
        if not below and ((coefficient == 1 and len(above) == 1) or not above):
            return above[0] if above else coefficient
    return expr


def rec_expr(expr: sympy.Expr) -> str:
    """An expression in ``.rec`` syntax, in the order of its terms (as written, for display forms)."""
    return RecPrinter({"order": "none"}).doprint(expr)


def _domain_text(domain: Domain) -> str:
    if domain.choices is not None:
        return "{%s}" % ", ".join(rec_expr(c) for c in domain.choices)
    return f"[{rec_expr(domain.low)}, {rec_expr(domain.high)}]" + (" log" if domain.log else "")


def to_rec(rec: Recurrence) -> str:
    """Canonical ``.rec`` text that parses back to the same formula, terms as the user wrote them.

    Printing, parsing and printing again gives the same text. A lowered stream formula prints
    its compact form (``stream h[4]``, ``H_n @ h_n``), which is what the file said.
    """
    if rec.compact is not None:
        return to_rec(rec.compact)
    lines: list[str] = []
    for name in rec.constants:
        lines.append(f"{name} = {rec_expr(rec.display_value(name))}")
    for name, value in rec.bindings.items():
        lines.append(f"{name} = {rec_expr(value)}")
    plain: list[str] = []  # runs of symbols without a domain share a line, in the formula's order
    for name in rec.free_symbols:
        if name not in rec.domains:
            plain.append(name)
            continue
        if plain:
            lines.append("symbol " + ", ".join(plain))
            plain = []
        lines.append(f"symbol {name} in {_domain_text(rec.domains[name])}")
    if plain:
        lines.append("symbol " + ", ".join(plain))
    for name, k in rec.streams.items():
        lines.append(f"stream {name}[{k}]")
    for p in rec.params.values():
        lines.append(f"param {p.declaration}")
    if rec.shared_blocks:
        lines.append("shared " + ", ".join(sorted(rec.shared_blocks)))
    if rec.output != default_output(rec.states):
        lines.append(f"output {rec.output}")
    for name, index in rec.initial:
        lines.append(f"{name}_{index_text(index)} = {rec_expr(rec.display_value((name, index)))}")
    for eq in rec.equations:
        lines.append(f"{eq.state}_<n+1> = {rec_expr(eq.display_rhs)}")
    return "\n".join(lines) + "\n"
