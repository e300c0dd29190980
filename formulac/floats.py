"""How a network computes the numbers of a formula: as IEEE doubles, step by step.

A coefficient (a part of an equation without states, blocks or parameters) becomes a Python
float in the generated network: a literal when it is constant, an expression in the step ``n``
otherwise, evaluated with ``math`` at every step. An exact value can be fine where the double is
not: ``exp(-700)*exp(-700)`` is ``exp(-1400)``, whose literal is 0 and whose inverse overflows;
``10^(50*n)`` leaves the double range at ``n = 7``; ``1/(tanh(n) - 1)`` divides by zero once
``tanh(n)`` rounds to 1; ``(-1)^(n/2)`` is complex at odd steps. The finished coefficient then
multiplies tensors of the network's precision (float32), where ``1e300`` is infinite.
:func:`coefficient_problem` finds the first such value (over ``n = 0 .. steps-1``, all steps at
once with NumPy), so that the parser and ``bind`` refuse it and every later stage sees only
values it can compute.

A bottom-layer module (SymPy and NumPy only): it knows the language's functions by name.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import sympy

__all__ = ["NETWORK_DTYPE", "OVERFLOW_THRESHOLD", "FloatProblem", "coefficient_problem", "literal_problem"]


@dataclass(frozen=True)
class FloatProblem:
    """Why a value is not a finite real double: ``reason`` (a phrase such as "divides by zero"),
    the sub-expression ``expr`` where it happens and the first ``step`` (None: at every step)."""

    reason: str
    expr: sympy.Expr
    step: int | None = None

    def describe(self, show=str) -> str:
        """``the coefficient 1/relu(n - 3) divides by zero at step n = 0`` (``show`` prints it)."""
        where = f" at step n = {self.step}" if self.step is not None else ""
        text = show(self.expr)
        if len(text) > 20 and self.expr.is_Rational:  # 1/1000...000: its size says enough
            text = f"{show(self.expr)[:12]}... (about {sympy.Float(self.expr, 3)})"
        return f"{text} {self.reason}{where}"


#: The range of a double (the largest finite value, and the smallest positive one).
_LARGEST = 1.7976931348623157e308
_OVERFLOW = "is beyond the range of a double (about 1.8e308)"
_UNDERFLOW = "is not 0 but rounds to 0 as a double (its size is below about 5e-324)"
_NOT_REAL = "is not a real number"
_ZERO_DIVISION = "divides by zero"
_UNDEFINED = "is undefined (division by zero, log(0) or the like)"

#: The magnitude from which a double rounds to infinity in each precision a network computes in:
#: halfway between the largest finite value and the next power of two (a tie rounds to the even
#: mantissa, which is the power of two, so the threshold itself is infinite).
OVERFLOW_THRESHOLD = {
    "float32": (2 - 2.0**-24) * 2.0**127,  # largest finite: about 3.4028235e38
    "bfloat16": (2 - 2.0**-8) * 2.0**127,  # about 3.3895e38
    "float16": (2 - 2.0**-11) * 2.0**15,  # 65504
}
#: The precision of a network's tensors (its parameters and activations); a finished coefficient
#: is rounded to it when it multiplies them.
NETWORK_DTYPE = "float32"
_LARGEST_FINITE = {"float32": "3.4e38", "bfloat16": "3.39e38", "float16": "65504"}


def _beyond(dtype: str) -> str:
    return f"exceeds the largest {dtype} (about {_LARGEST_FINITE[dtype]}; the network computes in {dtype})"


def literal_problem(value: sympy.Expr) -> FloatProblem | None:
    """A problem of a constant as the literal the network holds (its value to 30 digits, then
    rounded once to a double, as the code generator writes it), or None."""
    if value.has(sympy.zoo, sympy.nan, sympy.oo, -sympy.oo):
        return FloatProblem(_UNDEFINED, value)
    if value.is_Rational:
        if value == 0:
            return None
        magnitude = abs(value)
        if magnitude > _LARGEST:
            return FloatProblem(_OVERFLOW, value)
        return FloatProblem(_UNDERFLOW, value) if float(magnitude) == 0 else None
    try:
        number = value.evalf(30)
    except (TypeError, ValueError, ArithmeticError, RecursionError):
        return None
    if not number.is_number:
        return None
    if number.has(sympy.I) or number.is_real is False:
        return FloatProblem(_NOT_REAL, value)
    if number.has(sympy.zoo, sympy.nan, sympy.oo, -sympy.oo):
        return FloatProblem(_UNDEFINED, value)
    try:
        rounded = float(number)
    except (TypeError, ValueError, OverflowError):
        return FloatProblem(_OVERFLOW, value)
    if not math.isfinite(rounded):
        return FloatProblem(_OVERFLOW, value)
    if rounded == 0 and number != 0:
        return FloatProblem(_UNDERFLOW, value)
    return None


def coefficient_problem(
    expr: sympy.Expr,
    step: sympy.Symbol,
    steps: int,
    values: Mapping | None = None,
    dtype: str = NETWORK_DTYPE,
) -> FloatProblem | None:
    """The first value of ``expr`` that a network could not compute as a finite real double, or
    whose finished coefficient is infinite in ``dtype`` (a key of :data:`OVERFLOW_THRESHOLD`).

    Each largest part of ``expr`` whose only symbol is ``step`` is evaluated as the network
    evaluates it: a constant as one literal (:func:`literal_problem`), a part that follows the
    step at every ``step = 0 .. steps-1`` in doubles, every intermediate value checked (Python
    raises at the first division by zero or domain error; NumPy gives inf or nan there). Symbols
    in ``values`` (constants, bound symbols) stand for their exact values, as the generated code
    writes them, without rewriting ``expr`` (``(n - a)/(n - a)`` stays a division). Parts with
    other symbols (states, blocks, parameters, unbound symbols) are not coefficients and are
    skipped; so are sums over the history."""
    values = dict(values or {})
    limit = OVERFLOW_THRESHOLD[dtype], _beyond(dtype)
    parts, arguments = _coefficients(expr, step, values)
    for part in parts:
        # an argument of a block call (its step, ``F(n, x_n)``) is no factor of a tensor
        problem = _part_problem(part, step, steps, values, (math.inf, "") if part in arguments else limit)
        if problem is not None:
            return problem
    return None


#: Delicate steps re-evaluated with ``math`` one by one before all steps are (the slow path).
_MAX_DELICATE = 5_000


def _part_problem(
    part: sympy.Expr, step: sympy.Symbol, count: int, values: dict, limit: tuple[float, str]
) -> FloatProblem | None:
    """Fast with NumPy's functions at every step, exact with ``math``'s where it matters.

    NumPy's ``tanh``, ``exp``, ... differ from ``math``'s (the network's) in the last bit, which
    decides only values at a threshold: a sum that cancels to about 0, a value near the ends of
    the double range. The NumPy pass marks those steps *delicate*; they, and any failure it finds
    (with every step before it), are evaluated again with ``math``, which has the last word."""
    if not part.has(step):
        return _Evaluator(step, np.zeros(1), values, _MATH_VALUES, limit).check(part)
    fast = _Evaluator(step, _steps(count), values, _NUMPY_VALUES, limit, track=True)
    problem = fast.check(part)
    if problem is not None and problem.step is not None:
        exact = _Evaluator(step, _steps(count)[: problem.step + 1], values, _MATH_VALUES, limit).check(part)
        if exact is not None:
            return exact  # else NumPy failed where math does not: look at every step below
    elif problem is not None:
        return problem
    elif fast.delicate is None or not fast.delicate.any():
        return None
    else:
        delicate = _steps(count)[fast.delicate]
        if delicate.size <= _MAX_DELICATE:
            return _Evaluator(step, delicate, values, _MATH_VALUES, limit).check(part)
    return _Evaluator(step, _steps(count), values, _MATH_VALUES, limit).check(part)


# -- which parts are coefficients ----------------------------------------------------------------

#: The language's element-wise functions that have a double form, by SymPy class name.
_FUNCTIONS = frozenset(
    {"exp", "log", "sin", "cos", "Abs", "tanh", "relu", "sigmoid", "softplus", "gelu", "silu", "elu"}
)


def _known_number(value) -> bool:
    return value is not None and bool(sympy.sympify(value).is_number)


def _coefficients(
    expr: sympy.Expr, step: sympy.Symbol, values: Mapping
) -> tuple[list[sympy.Expr], set[sympy.Expr]]:
    """The largest sub-expressions of ``expr`` built from numbers, ``step`` and functions with a
    double form (one pass, bottom up), in order of appearance; plain numbers are included. With
    them, those that are only arguments of other functions (block calls, ``sinkhorn``)."""
    found: list[sympy.Expr] = []
    arguments: set[sympy.Expr] = set()
    factors: set[sympy.Expr] = set()  # parts that are (or multiply) values of the step

    def visit(node) -> bool:  # is node a coefficient?
        if not isinstance(node, sympy.Basic):
            return False
        if node.is_Atom:
            # a constant counts only once its value is a number (``c = 1/4 + b`` with ``b``
            # still free is checked when ``b`` is bound)
            return bool(node.is_number) or node == step or _known_number(values.get(node))
        if isinstance(node, sympy.Indexed):  # a state or a per-step parameter; its index is no value
            return False
        if isinstance(node, sympy.Sum) or not isinstance(
            node, (sympy.Add, sympy.Mul, sympy.Pow, sympy.Function)
        ):
            verdicts = [visit(a) for a in node.args]
            kept = [a for a, ok in zip(node.args, verdicts) if ok]
            found.extend(kept)
            factors.update(kept)
            return False
        verdicts = [visit(a) for a in node.args]
        supported = not isinstance(node, sympy.Function) or type(node).__name__ in _FUNCTIONS
        if supported and all(verdicts):
            return True
        kept = [a for a, ok in zip(node.args, verdicts) if ok]
        found.extend(kept)
        (factors if supported else arguments).update(kept)
        return False

    if visit(expr):
        found.append(expr)
        factors.add(expr)
    return list(dict.fromkeys(found)), arguments - factors


# -- evaluation in doubles -----------------------------------------------------------------------


class _Failure(Exception):
    def __init__(self, problem: FloatProblem):
        super().__init__(problem.reason)
        self.problem = problem


class _Evaluator:
    """Values of coefficients at every step, as arrays of doubles (a float for constants); a
    finished coefficient must also stay below ``limit``'s threshold (with its reason)."""

    def __init__(
        self,
        step: sympy.Symbol,
        steps: np.ndarray,
        values: dict,
        functions: dict,
        limit: tuple[float, str],
        track=False,
    ):
        self.step = step
        self.steps = steps  # the steps evaluated (all of them, or some)
        self.values = values
        self.functions = functions
        self.limit = limit
        self.delicate = np.zeros(steps.shape, dtype=bool) if track else None

    def _mark(self, result, terms=None) -> None:
        """Mark the steps where ``result`` is near a threshold: about 0 after a sum cancels,
        0 or tiny, or near the end of the double range."""
        if self.delicate is None or np.ndim(result) == 0:
            return
        size = np.abs(result)
        near = (size > 1e300) | (size < 1e-300)
        if terms is not None:
            near |= size <= 1e-6 * sum(np.abs(t) for t in terms)
        self.delicate |= np.broadcast_to(near, self.steps.shape)

    def literal(self, expr: sympy.Expr) -> FloatProblem | None:
        return literal_problem(expr.xreplace(self.values) if self.values else expr)

    def check(self, expr: sympy.Expr) -> FloatProblem | None:
        """The first problem of the finished coefficient ``expr``: in doubles, then its size."""
        try:
            with np.errstate(all="ignore"):
                result = self.value(expr)
        except _Failure as failure:
            # a value that leaves the double range at some step may leave the network's
            # precision earlier (10^n: the double at n = 309, float32 at n = 39)
            earlier = self.steps[self.steps < failure.problem.step] if failure.problem.step else None
            if earlier is not None and earlier.size:
                sooner = _Evaluator(self.step, earlier, self.values, self.functions, self.limit).check(expr)
                if sooner is not None:
                    return sooner
            return failure.problem
        threshold, reason = self.limit
        beyond = self._first(np.abs(result) >= threshold)
        if beyond is None:
            return None
        return FloatProblem(reason, expr, beyond if expr.has(self.step) else None)

    def value(self, expr: sympy.Expr):
        if not expr.has(self.step):
            problem = self.literal(expr)
            if problem is not None:
                raise _Failure(problem)
            exact = expr.xreplace(self.values) if self.values else expr
            return float(exact) if exact.is_Rational else float(exact.evalf(30))
        if expr == self.step:
            return self.steps
        if isinstance(expr, sympy.Mul):  # written num / den1 / den2, as the code generator does
            result = self._quotient(expr)
            self._require(expr, result)
            self._mark(result)
            return result
        args = [self.value(a) for a in expr.args]
        if isinstance(expr, sympy.Add):
            result = sum(args[1:], args[0])
            self._mark(result, args)
        elif isinstance(expr, sympy.Pow):
            base, exponent = args
            if np.ndim(exponent) == 0 and exponent < 0:  # written 1 / base ** k
                powered = np.power(base, -exponent)
                self._require(expr, powered)
                zero = self._first(powered == 0)
                if zero is not None:
                    raise _Failure(FloatProblem(_ZERO_DIVISION, expr, zero))
                result = 1 / powered
            else:
                zero = self._first((np.asarray(base) == 0) & (np.asarray(exponent) < 0))
                if zero is not None:
                    raise _Failure(FloatProblem(_ZERO_DIVISION, expr, zero))
                result = np.power(base, exponent)
        else:
            result = self.functions[type(expr).__name__](args[0])
            if type(expr).__name__ == "log":
                zero = self._first(np.asarray(args[0]) == 0)
                if zero is not None:
                    raise _Failure(FloatProblem("is undefined (log(0))", expr, zero))
        self._mark(result)
        self._require(expr, result)
        return result

    def _quotient(self, expr: sympy.Mul):
        numerator, denominators = 1.0, []
        for factor in expr.args:
            if isinstance(factor, sympy.Pow) and factor.exp.is_Number and factor.exp.is_negative:
                base = self.value(factor.base)
                power = base if factor.exp == -1 else np.power(base, float(-factor.exp))
                self._require(factor, power)
                denominators.append((factor, power))
            else:
                numerator = numerator * self.value(factor)
        for factor, denominator in denominators:
            zero = self._first(np.asarray(denominator) == 0)
            if zero is not None:
                raise _Failure(FloatProblem(_ZERO_DIVISION, factor, zero))
            numerator = numerator / denominator
        return numerator

    def _require(self, expr, result) -> None:
        """Raise at the first step where ``result`` is not a finite double."""
        bad = self._first(~np.isfinite(result))
        if bad is None:
            return
        value = np.broadcast_to(result, self.steps.shape)[np.searchsorted(self.steps, bad)]
        raise _Failure(FloatProblem(_NOT_REAL if np.isnan(value) else _OVERFLOW, expr, bad))

    def _first(self, mask) -> int | None:
        mask = np.broadcast_to(mask, self.steps.shape)
        hits = np.flatnonzero(mask)
        return int(self.steps[hits[0]]) if hits.size else None


@lru_cache(maxsize=4)
def _steps(count: int) -> np.ndarray:
    """0, 1, ..., count-1 as doubles (made once: most formulas never need them)."""
    steps = np.arange(count, dtype=np.float64)
    steps.flags.writeable = False
    return steps


def _math(function):
    """``function`` of the ``math`` module over an array (NumPy's own functions differ from it in
    the last bit, and ``tanh(19)`` is 1 in one and not in the other); inf and nan where it raises."""

    def safe(x: float) -> float:
        try:
            return function(x)
        except OverflowError:
            return math.inf
        except ValueError:
            return math.nan

    vectorized = np.frompyfunc(safe, 1, 1)
    return lambda a: np.asarray(vectorized(a), dtype=np.float64)


_exp, _log, _tanh, _erf, _log1p, _expm1 = map(
    _math, (math.exp, math.log, math.tanh, math.erf, math.log1p, math.expm1)
)

_MATH_VALUES = {  # as codegen/plan.py writes them with math, in forms that do not overflow
    "exp": _exp,
    "log": _log,
    "sin": _math(math.sin),
    "cos": _math(math.cos),
    "Abs": np.abs,
    "tanh": _tanh,
    "relu": lambda a: np.maximum(a, 0.0),
    "sigmoid": lambda a: (1 + _tanh(a / 2)) / 2,
    "softplus": lambda a: np.maximum(a, 0.0) + _log1p(_exp(-np.abs(a))),
    "gelu": lambda a: a * (1 + _erf(a / math.sqrt(2))) / 2,
    "silu": lambda a: a * (1 + _tanh(a / 2)) / 2,
    "elu": lambda a: np.where(np.asarray(a) > 0, a, _expm1(a)),
}

_NUMPY_VALUES = {  # the same with NumPy's functions: fast, and right but for the last bit
    **_MATH_VALUES,
    "exp": np.exp,
    "log": np.log,
    "sin": np.sin,
    "cos": np.cos,
    "tanh": np.tanh,
    "sigmoid": lambda a: (1 + np.tanh(a / 2)) / 2,
    "softplus": lambda a: np.maximum(a, 0.0) + np.log1p(np.exp(-np.abs(a))),
    "silu": lambda a: a * (1 + np.tanh(a / 2)) / 2,
    "elu": lambda a: np.where(np.asarray(a) > 0, a, np.expm1(np.minimum(a, 0.0))),
}
