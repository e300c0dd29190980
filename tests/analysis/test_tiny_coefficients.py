"""Tiny exact coefficients: stability and consistency decided exactly, never by a tolerance.

``x_<n+1> = x_n + a*x_<n-1> + F(x_n)`` has the roots ``(1 ± sqrt(1 + 4a))/2``: for ``a > 0`` the
larger one is above 1 (expanding) however small ``a`` is, for small ``a < 0`` both are inside the
unit circle (contracting), and the polynomial at 1 is ``-a``, so the formula is consistent only
for ``a = 0``. The reference is mpmath with enough digits to see ``a`` (independent of SymPy).
"""

from __future__ import annotations

import json
from pathlib import Path

import mpmath
import pytest
import sympy
from hypothesis import given
from hypothesis import strategies as st
from repeatable import repeatable

from formulac.analysis import analyze
from formulac.cli import main
from formulac.parse import load

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "two_step_free.rec"


def _reference(a: sympy.Rational) -> tuple[str, bool]:
    """(stability, consistent) of λ^2 - λ - a from mpmath roots at high precision."""
    digits = 2 * max(len(str(a.p)), len(str(a.q))) + 50
    with mpmath.workdps(digits):
        roots = mpmath.polyroots([1, -1, -(mpmath.mpf(a.p) / a.q)], maxsteps=500, extraprec=4 * digits)
        moduli = [abs(r) for r in roots]
        if any(m > 1 for m in moduli):
            stability = "expanding"
        elif any(m == 1 for m in moduli):
            stability = "neutral"
        else:
            stability = "contracting"
    return stability, a == 0


@pytest.mark.parametrize("text", ["1e-30", "1e-100", "1e-120", "1e-300", "-1e-100", "-1e-120", "3e-200", "0"])
def test_the_issue_values(text, capsys):
    a = sympy.Rational(text)
    result = analyze(load(EXAMPLE).bind(a=a), 4)
    assert (result.stability, result.consistent) == _reference(a)
    assert main(["analyze", str(EXAMPLE), "--set", f"a={text}", "--json"]) == 0
    written = json.loads(capsys.readouterr().out)
    assert (written["stability"], written["consistent"]) == _reference(a)


def test_a_tiny_root_is_written_with_its_digits(capsys):
    """The root -1e-300 of λ^2 - λ - 1e-300 cancels in (1 - sqrt(1 + 4e-300))/2: a plain evalf
    gave 5e-166."""
    assert main(["analyze", str(EXAMPLE), "--set", "a=1e-300", "--json"]) == 0
    roots = json.loads(capsys.readouterr().out)["roots"]
    small = min(roots, key=lambda r: abs(r["real"]))
    assert small["real"] == pytest.approx(-1e-300, rel=1e-12)


@repeatable(40)
@given(st.integers(1, 9), st.integers(1, 300), st.sampled_from([1, -1]))
def test_tiny_coefficients_against_mpmath(mantissa, exponent, sign):
    a = sign * sympy.Rational(mantissa, 10**exponent)
    result = analyze(load(EXAMPLE).bind(a=a), 3)
    assert (result.stability, result.consistent) == _reference(a)
