"""Can a step run backward, and how fast do rounding errors grow when states are rebuilt?

A step maps the states it keeps, ``C_n = (x_n, x_<n-1>, ..., v_n, ...)``, to ``C_<n+1>``. It is
*invertible* when the oldest state of each kept sequence (and every state computed at the step but
not kept) can be solved for from ``C_<n+1>`` and block outputs whose arguments are already known.
:func:`invert` finds that solution symbolically, one equation at a time in reverse evaluation
order (RevNet: ``x_n = x_<n+1> - G(y_<n+1>)``, then ``y_n = y_<n+1> - F(x_n)``), or says in one
line why there is none. The solution is exact: the code generator prints it as the backward step.

:func:`reconstruction` analyses the backward recurrence's linear part ``C_n = B C_<n+1> + ...``
(``B = A^-1``, ``A`` the forward companion/system matrix; blocks are opaque inputs, so their
Jacobians are not part of the model). The growth factor of an error per rebuilt step is the
spectral radius of ``B``, i.e. ``1 / min |root|`` of the forward characteristic polynomial, exact
where the roots are. A rebuilt step adds about one unit roundoff ``u`` (relative) and carries the
error so far through ``B``, so after ``j`` rebuilt steps the relative error is about
``u * sum_{i<j} ||B^i||_inf``; the longest run of steps within the tolerance follows. Learnable
parameters enter at their initial values (or at values given, e.g. after training); the inverse
itself stays exact for whatever value they have.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import sympy

from ..floats import coefficient_problem
from ..ir import (
    BlockCall,
    Concat,
    Recurrence,
    n,
    references,
    state,
    state_refs,
    substitute_param_inits,
    windows_written_out,
)
from ..limits import CHECKED_STEPS
from ..printing import rec_expr
from .formatting import stream_parameters_text

__all__ = [
    "Inverse",
    "Invertibility",
    "Reconstruction",
    "invert",
    "reconstruction",
    "UNIT_ROUNDOFF",
    "DEFAULT_TOLERANCE",
    "MAX_RUN",
]

#: Unit roundoff (half an ulp at 1) of the floating-point formats states may be stored in.
UNIT_ROUNDOFF: Mapping[str, float] = {
    "float64": 2.0**-53,
    "float32": 2.0**-24,
    "float16": 2.0**-11,
    "bfloat16": 2.0**-8,
}
#: Relative error allowed in a rebuilt state (the stated tolerance of ``max_steps``).
DEFAULT_TOLERANCE = 1e-3
#: Runs are counted up to this many steps (a longer run is reported as this number).
MAX_RUN = 100_000
#: Formats reported by ``analyze`` (the others are available through :meth:`Reconstruction.max_run`).
REPORTED_FORMATS = ("float32", "bfloat16")

# element-wise functions that map two states to one value: no inverse exists
_NOT_ONE_TO_ONE = {
    "relu": "it maps every negative value to 0",
    "Abs": "it maps v and -v to the same value",
    "sin": "it is periodic",
    "cos": "it is periodic",
    "gelu": "it is not monotone",
    "silu": "it is not monotone",
    "norm": "it forgets the scale and shift of the stream",
}


@dataclass(frozen=True)
class Inverse:
    """The backward step: ``solution`` assigns, in order, each rebuilt reference an expression
    in the kept states after the step, block calls on known arguments, parameters, and the
    references solved before it. ``conditions`` are coefficients that must not be 0."""

    carried: dict  # state -> how many of its values a step keeps (x: 2 for x_n, x_<n-1>)
    solution: tuple  # ((Indexed, sympy.Expr), ...)
    conditions: tuple  # (sympy.Expr, ...), the divisors of the solution
    # per solved equation, in solving order: (state, rebuilt reference, its coefficient, the rest),
    # the state's equation being state_<n+1> = coefficient*reference + rest
    affine: tuple = ()


@dataclass
class Invertibility:
    invertible: bool
    reason: str | None  # one line, when not invertible
    inverse: Inverse | None
    conditions: list[str] = field(default_factory=list)  # ".rec" text, e.g. "k_n != 0"


class _Stuck(Exception):
    pass


def invert(rec: Recurrence) -> Invertibility:
    """Whether a step of ``rec`` can be run backward, with the exact solution or the reason."""
    for eq in rec.equations:
        if windows_written_out(eq.rhs).has(sympy.Sum):  # a window is lags, like x_<n-2>
            return Invertibility(
                False,
                f"{eq.state}'s equation sums over the whole history: every past state is kept, so "
                "there is nothing to rebuild",
                None,
            )
    carried = rec.carried_lags
    rhs = {s: windows_written_out(rec.resolved_rhs(s)) for s in rec.states}
    unknown: dict = {}  # reference -> what it is (for messages)
    for s in rec.states:
        ref = state(s, n + 1 - carried[s]) if s in carried else state(s, n + 1)
        unknown[ref] = s
    pending = list(reversed(rec.states))
    solution: list = []
    divisors: list = []
    read = {s: set(state_refs(rhs[s])) for s in rec.states}  # once: a long system is read N times
    solved: list = []
    while pending:
        for s in pending:
            lhs = state(s, n + 1)
            expr = rhs[s]
            inside = [u for u in read[s] if u in unknown]
            if lhs in unknown:  # a state computed at the step but not kept: recompute it
                if inside:
                    continue
                solution.append((lhs, expr))
                del unknown[lhs]
            elif not inside:
                pass  # a kept state whose equation holds no unknown: nothing to solve
            elif len(inside) > 1:
                continue
            else:
                (u,) = inside
                if _bad_context(expr, u, set(rec.states)) is not None:
                    continue
                dummy = sympy.Dummy("u")
                affine = sympy.expand(expr.xreplace({u: dummy}))
                coefficient = sympy.simplify(affine.coeff(dummy))
                rest = expr.xreplace({u: sympy.Integer(0)})
                # lhs first, then the other terms, as a reader would solve it by hand
                difference = sympy.Add(
                    lhs, *(-t for t in sympy.Add.make_args(rest) if t != 0), evaluate=False
                )
                solution.append(
                    (u, sympy.Mul(difference, sympy.Pow(coefficient, -1, evaluate=False), evaluate=False))
                    if coefficient != 1
                    else (u, difference)
                )
                if coefficient != 1:
                    divisors.append(coefficient)
                solved.append((s, u, coefficient, rest))
                del unknown[u]
            pending.remove(s)
            break
        else:
            return Invertibility(False, _reason(rec, rhs, pending, unknown), None)
    if unknown:  # a kept state no equation determines (cannot happen: each state has one)
        names = ", ".join(rec_expr(u) for u in unknown)
        return Invertibility(False, f"no equation determines {names}", None)
    inverse = Inverse(carried, tuple(solution), tuple(divisors), tuple(solved))
    # a divisor in n alone is checked at every step below: not a condition on the user's values
    conditions = [f"{rec_expr(c)} != 0" for c in divisors if not c.is_number and not c.free_symbols <= {n}]
    at_values = _zero_at_some_step(divisors) or _zero_at_initial_values(rec, divisors)
    if at_values is not None:
        return Invertibility(False, at_values, inverse, conditions)
    return Invertibility(True, None, inverse, conditions)


def _bad_context(expr, u, states: set[str]) -> str | None:
    """Why ``u`` does not enter ``expr`` affinely with a coefficient free of states (or None)."""
    if expr == u or not expr.has(u):
        return None
    if isinstance(expr, sympy.Add):
        for a in expr.args:
            why = _bad_context(a, u, states)
            if why is not None:
                return why
        return None
    if isinstance(expr, sympy.Mul):
        holders = [a for a in expr.args if a.has(u)]
        if len(holders) > 1:
            return _block_reading(expr, u) or f"{rec_expr(u)} appears in the product {rec_expr(expr)}"
        others = [a for a in expr.args if not a.has(u)]
        for a in others:
            if a.has(BlockCall, Concat) or any(True for _ in references(a, states)):
                return (
                    f"{rec_expr(u)} is multiplied by {rec_expr(a)}, which depends on the states "
                    f"(formulac inverts steps whose coefficient of the rebuilt state is a number or a parameter)"
                )
        return _bad_context(holders[0], u, states)
    if isinstance(expr, BlockCall):
        return _block_reading(expr, u)
    if isinstance(expr, Concat):
        return (
            f"{rec_expr(expr)} concatenates {rec_expr(u)} into a wider state: the state keeps "
            "everything already, so there is nothing to rebuild"
        )
    if not _outside_blocks(expr, u):  # u reaches expr only through block arguments
        return _block_reading(expr, u)
    if isinstance(expr, sympy.Pow):
        return f"{rec_expr(u)} appears in the power {rec_expr(expr)}: the step is not affine in it"
    if isinstance(expr, sympy.Function):
        name = type(expr).__name__
        shown = "abs" if name == "Abs" else name
        if name in _NOT_ONE_TO_ONE:
            return (
                f"{shown}(...) is applied to {rec_expr(u)}: {_NOT_ONE_TO_ONE[name]}, so "
                f"{rec_expr(u)} cannot be recovered from the states after the step"
            )
        return (
            f"{shown}(...) is applied to {rec_expr(u)}: the backward step would need the inverse of "
            f"{shown}, which formulac does not generate (it inverts steps affine in the rebuilt state)"
        )
    return f"{rec_expr(u)} enters {rec_expr(expr)} non-linearly"


def _outside_blocks(expr, u) -> bool:
    """Does ``u`` occur in ``expr`` other than inside a block's argument?"""
    if expr == u:
        return True
    if isinstance(expr, BlockCall):
        return False
    return any(_outside_blocks(a, u) for a in expr.args)


def _block_reading(expr, u) -> str | None:
    """The reason for the outermost block call in ``expr`` that reads ``u`` (None if none does)."""
    call = next((c for c in sympy.preorder_traversal(expr) if isinstance(c, BlockCall) and c.has(u)), None)
    if call is None:
        return None
    return (
        f"{rec_expr(call)} reads {rec_expr(u)}, the state the backward step must rebuild: "
        f"{rec_expr(u)} cannot be solved for without inverting {call.block}"
    )


def _reason(rec: Recurrence, rhs: dict, pending: list, unknown: dict) -> str:
    """One line: why the first equation (in reverse evaluation order) that still holds an
    unknown cannot be solved."""
    for s in pending:
        inside = [u for u in unknown if rhs[s].has(u)]
        if not inside:
            continue
        if state(s, n + 1) in unknown:
            names = ", ".join(rec_expr(u) for u in inside)
            return (
                f"{s}_<n+1> is not kept and its equation reads {names}, which the backward step must "
                "rebuild first"
            )
        for u in inside:
            why = _bad_context(rhs[s], u, set(rec.states))
            if why is not None:
                return why
        names = " and ".join(rec_expr(u) for u in inside)
        return f"{s}'s equation mixes {names}, and no other equation gives one of them alone"
    return "the equations leave some state undetermined"


def _zero_at_some_step(divisors) -> str | None:
    """A divisor that follows the step alone and is 0 (or its inverse not a finite double) at
    some step a network can have: ``n - 2`` in ``x_n + (n-2)*x_<n-1>`` at n = 2."""
    for c in divisors:
        if c.has(n) and c.free_symbols <= {n}:
            problem = coefficient_problem(sympy.Pow(c, -1, evaluate=False), n, CHECKED_STEPS)
            if problem is not None and problem.step is not None:
                return (
                    f"the coefficient {rec_expr(c)} of the rebuilt state is 0 at step n = {problem.step}"
                    if c.subs(n, problem.step) == 0
                    else f"the inverse of the coefficient {rec_expr(c)} of the rebuilt state "
                    f"{problem.reason} at step n = {problem.step}"
                ) + ": the step cannot be run backward there"
    return None


def _zero_at_initial_values(rec: Recurrence, divisors) -> str | None:
    """A divisor that is 0 at the parameters' initial values (or at bound symbols' values)."""
    for c in divisors:
        value = substitute_param_inits(c, rec.params)
        if value.is_number and value == 0:
            return (
                f"the coefficient {rec_expr(c)} of the rebuilt state is 0 at the parameters' initial "
                "values: the step cannot be run backward there"
            )
    return None


# -- error growth when rebuilding ---------------------------------------------------------------


@dataclass
class Reconstruction:
    """How errors grow when states are rebuilt backward, and how far each format can go."""

    growth: sympy.Expr | None  # per rebuilt step: spectral radius of the backward linear part
    tolerance: float
    max_steps: dict  # format -> longest run within the tolerance (int <= MAX_RUN), for REPORTED_FORMATS
    evaluated_at: dict  # parameter or symbol -> value used (learnable parameters: initial values)
    notes: list = field(default_factory=list)
    backward_matrix: list | None = field(default=None, repr=False, compare=False)  # B as rows of floats
    _norms: list = field(default_factory=list, repr=False, compare=False)  # ||B^i||_inf, i = 0, 1, ...
    _power: object = field(default=None, repr=False, compare=False)
    period: int | None = field(default=None, repr=False, compare=False)  # B^period = I exactly

    def amplification(self, steps: int) -> float:
        """``sum_{i<steps} ||B^i||_inf``: how many unit roundoffs a run of ``steps`` rebuilt steps
        can accumulate (relative to the states' size)."""
        self._extend(steps)
        return math.fsum(self._norms[:steps])

    def error_bound(self, steps: int, dtype: str = "float32") -> float:
        """Predicted relative error of a state rebuilt ``steps`` steps back in ``dtype``."""
        return UNIT_ROUNDOFF[dtype] * self.amplification(steps)

    def max_run(self, dtype: str = "float32", tolerance: float | None = None) -> int:
        """The longest run of rebuilt steps whose predicted error stays within the tolerance
        (``MAX_RUN`` when longer)."""
        budget = (self.tolerance if tolerance is None else tolerance) / UNIT_ROUNDOFF[dtype]
        if self.period is not None:  # the norms repeat (RevNet: B = I): whole periods in one go
            self._extend(self.period)
            cycle = math.fsum(self._norms[: self.period])
            whole = min(MAX_RUN // self.period, int(budget // cycle))
            total, j = whole * cycle, whole * self.period
            while j < MAX_RUN and total + self._norms[j % self.period] <= budget:
                total += self._norms[j % self.period]
                j += 1
            return j
        total = 0.0
        for j in range(MAX_RUN):
            self._extend(j + 1)
            norm = self._norms[j]
            total += norm
            if total > budget:
                return j
            if norm < 1e-17 * total:  # the norms decay geometrically: the sum has converged
                return MAX_RUN
        return MAX_RUN

    def _extend(self, count: int) -> None:
        """Append ``||B^i||_inf`` up to ``i = count - 1`` (plain floats for small matrices, so
        that ``analyze`` need not import numpy; numpy, 256 powers per product, above)."""
        B = self.backward_matrix
        if B is None:
            raise ValueError("no backward matrix: the growth factor is not determined")
        d = len(B)
        if not self._norms:
            self._norms.append(1.0)
            self._power = [[float(i == j) for j in range(d)] for i in range(d)]
        if d > 4:
            return self._extend_numpy(count)
        P = self._power
        while len(self._norms) < count:
            P = [[sum(P[i][k] * B[k][j] for k in range(d)) for j in range(d)] for i in range(d)]
            norm = max(sum(abs(v) for v in row) for row in P)
            self._norms.append(norm if math.isfinite(norm) else math.inf)
            if not math.isfinite(norm):
                P = [[math.inf] * d for _ in range(d)]
        self._power = P

    def _extend_numpy(self, count: int) -> None:
        import numpy

        B = numpy.array(self.backward_matrix, dtype=float)
        if not isinstance(self._power, tuple):  # (B^1 .. B^256, B^256, B^(256 m))
            with numpy.errstate(over="ignore", invalid="ignore"):
                block = [B]
                for _ in range(255):
                    block.append(block[-1] @ B)
            self._power = (numpy.stack(block), block[-1], numpy.eye(len(B)))
        block, step, base = self._power
        with numpy.errstate(over="ignore", invalid="ignore"):
            while len(self._norms) < count:
                norms = numpy.abs(base @ block).sum(axis=2).max(axis=1)
                self._norms.extend(float(v) if math.isfinite(v) else math.inf for v in norms)
                base = base @ step
        self._power = (block, step, base)

    def anchor_interval(self, dtype: str = "float32") -> int:
        """Steps between kept anchor states so that no rebuilt state exceeds the tolerance
        (at least 1: an anchor at every step rebuilds nothing)."""
        return max(1, self.max_run(dtype))

    def to_json(self, convert) -> dict:
        return {
            "growth": None if self.growth is None else convert(self.growth),
            "tolerance": self.tolerance,
            "max_steps": dict(self.max_steps),
            "evaluated_at": {k: convert(v) for k, v in self.evaluated_at.items()},
            "notes": list(self.notes),
        }


def reconstruction(
    rec: Recurrence,
    values: Mapping[str, object] | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    inverse: Invertibility | None = None,
) -> Reconstruction | None:
    """Error growth of rebuilding ``rec``'s states backward; None when the step is not invertible.

    ``values`` gives learnable parameters (or free symbols) values, e.g. trained ones; a per-step
    parameter may get one value per step (a sequence): the worst step's growth is reported and the
    runs are counted for that step's matrix. Without values, parameters take their initial values.
    """
    inv = invert(rec) if inverse is None else inverse
    if not inv.invertible:
        return None
    values = dict(values or {})
    unknown = sorted(set(values) - set(rec.params) - set(rec.symbols) - set(rec.constants))
    if unknown:
        raise KeyError(f"no parameter or symbol {', '.join(unknown)} in the formula")
    sequences = {k: list(v) for k, v in values.items() if not _is_scalar(v)}
    scalars = {k: _exact(v) for k, v in values.items() if k not in sequences}
    symbol_values = {k: v for k, v in scalars.items() if k not in rec.params}
    base = rec.bind(**symbol_values) if symbol_values else rec
    if len({len(v) for v in sequences.values()}) > 1:
        raise ValueError("per-step values must all have the same number of steps")
    steps = len(next(iter(sequences.values()))) if sequences else 1
    worst = None
    for i in range(steps):
        at = {p.name: p.init for p in rec.params.values()}
        at.update({k: v for k, v in scalars.items() if k in rec.params})
        at.update({k: _exact(v[i]) for k, v in sequences.items()})
        found = _growth_at(_with_param_values(base, at))
        if isinstance(found, str):
            return Reconstruction(None, tolerance, {}, {}, [found])
        if worst is None or float(found[0]) > float(worst[0]):
            worst = (*found, at)
    growth, A, at = worst
    exact = A.inv()
    B = [[float(sympy.N(v, 30)) for v in row] for row in exact.tolist()]
    notes: list[str] = []
    result = Reconstruction(growth, tolerance, {}, {**at, **symbol_values}, notes, B)
    result.period = _period(exact) if growth == 1 else None
    result.max_steps = {fmt: result.max_run(fmt) for fmt in REPORTED_FORMATS}
    if rec.params and not values:
        shown = stream_parameters_text(rec) or ", ".join(p.declaration for p in rec.params.values())
        notes.append(
            f"growth evaluated at the parameters' initial values ({shown}); the backward step stays "
            "exact for trained values, but the growth changes with them: "
            "formulac.analysis.reconstruction(rec, values=...) re-evaluates it"
        )
    if sequences:
        notes.append("per-step values: the growth and runs are those of the worst step")
    for fmt in REPORTED_FORMATS:
        if result.max_steps[fmt] == 0:
            notes.append(
                f"{fmt}: its rounding ({UNIT_ROUNDOFF[fmt]:.2g}) alone exceeds the tolerance {tolerance:g}"
            )
        elif result.max_steps[fmt] >= MAX_RUN:
            notes.append(f"{fmt}: at least {MAX_RUN} steps can be rebuilt within the tolerance")
    return result


def _period(B: sympy.Matrix, longest: int = 12) -> int | None:
    """The smallest p <= longest with B^p = I exactly (None if there is none)."""
    power = B
    for p in range(1, longest + 1):
        if power == sympy.eye(B.shape[0]):
            return p
        power = power * B
    return None


def _growth_at(rec: Recurrence):
    """(growth, forward matrix A) of a formula whose parameters are fixed numbers, or a note."""
    from .linear import structure
    from .roots import LAMBDA, spectrum

    if rec.free_symbols:
        free = rec.free_symbols
        return (
            f"the growth factor depends on {', '.join(free)}, which {'is' if len(free) == 1 else 'are'} "
            f"not bound (--set {free[0]}=VALUE)"
        )
    st = structure(rec, "init")
    if not st.linear:
        return f"not linear ({st.reason}): the backward recurrence has no linear part to analyse"
    spec = spectrum(st)
    if spec.matrix is None or spec.roots is None:
        free = sorted(str(s) for s in getattr(spec.polynomial, "free_symbols", set()) if s != LAMBDA)
        if free:
            return f"the growth factor depends on {', '.join(free)}, which {'is' if len(free) == 1 else 'are'} not bound"
        return "the backward recurrence has no characteristic roots: " + "; ".join(spec.notes)
    moduli = []
    for r in spec.roots:
        m = r.modulus if r.modulus is not None else sympy.Abs(r.value)
        if not m.is_number:
            return "the moduli of the characteristic roots are not numbers"
        if m == 0 or abs(complex(m.evalf(30))) == 0:
            return "a characteristic root is 0: the backward step would divide by 0"
        moduli.append(m)
    smallest = min(moduli, key=lambda m: float(m.evalf(30)))
    growth = 1 / smallest
    if sympy.count_ops(growth) < 60:
        growth = growth if growth.is_Rational else sympy.simplify(growth)  # nsimplify made 1e-150 a 0
    return growth, spec.matrix


def _exact(v):
    if isinstance(v, float):
        return sympy.nsimplify(v, rational=True)
    if hasattr(v, "item") and not isinstance(v, sympy.Basic):  # numpy or torch scalars
        return sympy.nsimplify(float(v.item()), rational=True)
    return sympy.sympify(v)


def _is_scalar(v) -> bool:
    if isinstance(v, (int, float, str, sympy.Basic)):
        return True
    shape = getattr(v, "shape", None)
    return (shape is not None and len(shape) == 0) or not hasattr(v, "__len__")


def _with_param_values(rec: Recurrence, values: Mapping[str, object]) -> Recurrence:
    """``rec`` with its learnable parameters' initial values replaced by ``values``."""
    from dataclasses import replace

    from ..ir import Param

    params = {
        name: Param(p.name, values[name], p.per_step) if name in values else p
        for name, p in rec.params.items()
    }
    return replace(rec, params=params)


# -- the faces of the result (analyze --json and its text) ---------------------------------------


def backward_text(inv: Invertibility | None) -> list[str]:
    """The backward step in ``.rec`` syntax, one assignment per rebuilt reference."""
    if inv is None or inv.inverse is None:
        return []
    return [f"{rec_expr(ref)} = {rec_expr(expr)}" for ref, expr in inv.inverse.solution]


def invertibility_json(inv: Invertibility | None, rebuild: Reconstruction | None, convert) -> dict:
    """The keys ``analyze --json`` adds for memory planning (docs/cli.md)."""
    return {
        "invertible": None if inv is None else inv.invertible,
        "invertible_reason": None if inv is None else inv.reason,
        "invertible_conditions": [] if inv is None else list(inv.conditions),
        "backward_step": backward_text(inv) if inv is not None and inv.invertible else [],
        "reconstruction": None if rebuild is None else rebuild.to_json(convert),
    }


def invertibility_lines(inv: Invertibility | None, rebuild: Reconstruction | None, show) -> list[str]:
    """The ``invertible`` and ``rebuilding`` lines of ``analyze``'s text."""
    if inv is None:
        return []
    if not inv.invertible:
        return [f"invertible   no: {inv.reason}"]
    needs = f" (needs {', '.join(inv.conditions)})" if inv.conditions else ""
    steps = backward_text(inv)
    lines = [f"invertible   yes{needs}; the backward step:"]
    lines.extend(f"               {line}" for line in steps)
    if rebuild is None:
        return lines
    if rebuild.growth is None:
        lines.append(f"rebuilding   error growth not determined: {'; '.join(rebuild.notes)}")
        return lines
    growth = show(rebuild.growth)
    if not growth.startswith("≈") and not rebuild.growth.is_Integer:
        growth += f" (≈{float(rebuild.growth):.4g})"
    runs = ", ".join(f"{fmt} {k}{'+' if k >= MAX_RUN else ''} steps" for fmt, k in rebuild.max_steps.items())
    lines.append(f"rebuilding   an error grows by {growth} per rebuilt step (spectral radius of the")
    lines.append(f"             backward linear part); runs within {rebuild.tolerance:g}: {runs}")
    lines.extend(f"             - {note}" for note in rebuild.notes)
    return lines
