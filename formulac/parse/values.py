"""Checks on the values a formula computes: real, finite, of a sane size, no division by zero.

They run on canonical (evaluated) SymPy expressions while the file is read, so that every later
stage (analysis, printing, code generation) sees only values it can handle fast and exactly.
"""

from __future__ import annotations

import math

import sympy

from ..floats import coefficient_problem
from ..ir import n, rec_expr, walk
from ..limits import CHECKED_STEPS, MAX_EXP_ARGUMENT, MAX_NUMBER_BITS, MAX_POWER, MAX_VALUE_NODES
from .syntax import Source

__all__ = [
    "check_result",
    "check_size",
    "check_value",
    "check_divisor",
    "check_argument",
    "check_power",
    "check_number",
    "check_coefficients",
]


def check_result(source: Source, expr: sympy.Expr, where) -> None:
    """A finished value: finite, real, with numbers of at most :data:`MAX_NUMBER_BITS` bits."""
    check_value(source, expr, where)


def check_size(source: Source, expr: sympy.Expr, where, what: str) -> None:
    """A value with the constants it uses substituted: as :func:`check_result`, and at most
    :data:`MAX_VALUE_NODES` nodes and powers up to :data:`MAX_POWER` (``c0 = c1*c1``,
    ``c1 = c2*c2``, ... doubles each line)."""
    check_value(source, expr, where, what)


def check_value(source: Source, expr: sympy.Expr, where, what: str | None = None) -> None:
    """One pass over ``expr`` for :func:`check_result` (and, with ``what``, :func:`check_size`)."""
    for count, node in enumerate(walk(expr)):
        if node.is_Atom:
            if node in _UNDEFINED:
                raise source.error("division by zero (or another undefined value, such as log(0))", where)
            if node is sympy.I:
                raise source.error(
                    "the value is not a real number (a root or log of a negative number?)", where
                )
            if node.is_Rational:
                check_number(source, node, where)
        elif what is None:
            continue
        elif count > MAX_VALUE_NODES:
            raise source.error(
                f"{what} is too large once the constants it uses are written out "
                f"(more than {MAX_VALUE_NODES} terms)",
                where,
            )
        elif isinstance(node, sympy.Pow) and node.exp.is_Number and abs(node.exp) > MAX_POWER:
            raise source.error(
                f"{what} has a power beyond {MAX_POWER} once the constants it uses are written out", where
            )


def check_coefficients(source: Source, expr: sympy.Expr, where, values=None) -> None:
    """Every coefficient of ``expr`` (with the constants' ``values``) a finite real double, as the
    network computes it, at every step n = 0 .. :data:`CHECKED_STEPS` - 1 (:mod:`formulac.floats`)."""
    problem = coefficient_problem(expr, n, CHECKED_STEPS, values)
    if problem is not None:
        checked = f" (coefficients are checked at every step up to n = {CHECKED_STEPS - 1})"
        raise source.error(
            f"the coefficient {problem.describe(rec_expr)}{checked if (problem.step or 0) >= 100 else ''}",
            where,
        )


_UNDEFINED = frozenset({sympy.zoo, sympy.nan, sympy.oo, -sympy.oo})


def check_number(source: Source, value: sympy.Expr, where) -> sympy.Expr:
    """``value`` if it is a number of at most :data:`MAX_NUMBER_BITS` bits (numerator and denominator)."""
    if value.is_Rational and max(abs(value.p).bit_length(), value.q.bit_length()) > MAX_NUMBER_BITS:
        raise source.error(f"number out of range (more than {MAX_NUMBER_BITS} bits)", where)
    return value


def check_divisor(source: Source, value: sympy.Expr, where) -> None:
    if value == 0:
        raise source.error("division by zero", where)
    step = _first_zero_step(value)
    if step is not None:
        raise source.error(f"division by zero at step n = {step}", where)


def check_power(source: Source, base: sympy.Expr, exponent: sympy.Expr, node, exponent_node) -> None:
    """``base^exponent`` (canonical forms): a real number of a sane size."""
    if exponent.is_number and abs(exponent) > MAX_POWER:
        raise source.error(f"exponent too large (the limit is {MAX_POWER})", exponent_node)
    if exponent.is_number and exponent.is_negative:
        check_divisor(source, base, node)
    if base.is_Rational and exponent.is_Rational and abs(base) != 1:
        bits = max(abs(base.p).bit_length(), base.q.bit_length()) * abs(exponent)
        if bits > MAX_NUMBER_BITS:
            raise source.error(f"number out of range (more than {MAX_NUMBER_BITS} bits)", node)
    if base.is_number and base.is_negative and exponent.is_number and not exponent.is_integer:
        raise source.error("a negative number to a fractional power is not a real number", node)


def check_argument(source: Source, name: str, value: sympy.Expr, where) -> None:
    """A function of a plain number: its value must exist and stay in range (no exp(exp(100)))."""
    if not value.is_number:
        return
    try:
        x = float(value)
    except (TypeError, ValueError, OverflowError):
        x = math.nan
    if math.isnan(x) and (value.has(sympy.I) or value.is_real is False):
        raise source.error(f"the argument of {name} is not a real number", where)
    if not math.isfinite(x) or abs(x) > 1e300:
        raise source.error(f"number out of range in {name}(...)", where)
    if name == "exp" and abs(x) > MAX_EXP_ARGUMENT:
        raise source.error(f"number out of range: exp of a number beyond +-{MAX_EXP_ARGUMENT}", where)
    if name in ("log", "sqrt") and x < 0:
        raise source.error(f"{name} of a negative number is not a real number", where)
    if name == "log" and value == 0:
        raise source.error("log(0) is undefined", where)


def _first_zero_step(expr: sympy.Expr) -> int | None:
    """The first step n >= 0 at which ``expr`` is zero for sure: a factor of it that is a
    polynomial in n alone has a root there (None if none or unknown)."""
    steps = [
        _polynomial_zero(f.base if f.is_Pow and f.exp.is_positive else f) for f in sympy.Mul.make_args(expr)
    ]
    return min((s for s in steps if s is not None), default=None)


def _polynomial_zero(expr: sympy.Expr) -> int | None:
    if expr.free_symbols != {n}:
        return None
    try:
        poly = sympy.Poly(expr, n)
        if poly.degree() > 8 or not (poly.domain.is_ZZ or poly.domain.is_QQ):
            return None
        steps = [int(r) for r in poly.ground_roots() if r.is_integer and r >= 0]
    except (sympy.PolynomialError, sympy.polys.polyerrors.DomainError):
        return None
    return min(steps, default=None)
