"""Block weights against direct numeric iteration of random linear formulas.

Each example draws the coefficients in Python, writes them into ``.rec`` text, parses it and asks
the analyzer for the weights; independently, it iterates the same recurrence with exact
``Fraction`` arithmetic and random block outputs ``u_i`` and checks
``x_N == w_x0 * x_0 + sum_i w_i * u_i`` exactly. The reference never touches the analyzer's
representation.
"""

from __future__ import annotations

from fractions import Fraction

import sympy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from formulac.analysis import analyze
from formulac.parse import parse

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

small = st.fractions(min_value=-2, max_value=2, max_denominator=4)
nonzero = small.filter(lambda f: f != 0)


def _frac(v) -> Fraction:
    v = sympy.sympify(v)
    assert v.is_Rational, v
    return Fraction(int(v.p), int(v.q))


def _term(coef: Fraction, thing: str) -> str:
    return f"({coef.numerator}/{coef.denominator})*{thing}"


@st.composite
def scalar_formula(draw):
    """x_<n+1> = sum_j c_j x_<n-j> + b F(x_n) [+ g G(x_<n-1>)] [+ const], orders 1..4."""
    order = draw(st.integers(1, 4))
    coefs = [draw(small) for _ in range(order)]
    coefs[-1] = draw(nonzero)  # the declared order is the real one
    b = draw(nonzero)
    g = draw(st.one_of(st.none(), nonzero))
    const = draw(st.one_of(st.just(Fraction(0)), small))
    init = {j: draw(small) for j in range(-order + 1, 0) if draw(st.booleans())}  # x_<j> = c*x_0
    depth = draw(st.integers(0, 50))
    return order, coefs, b, g, const, init, depth


def _scalar_text(order, coefs, b, g, const, init) -> str:
    terms = []
    for j, c in enumerate(coefs):
        ref = "x_n" if j == 0 else f"x_<n-{j}>"
        terms.append(_term(c, ref))
    terms.append(_term(b, "F(x_n)"))
    if g is not None:
        terms.append(_term(g, "G(x_<n-1>)"))
    if const:
        terms.append(f"({const.numerator}/{const.denominator})")
    lines = [f"x_<{j}> = {_term(c, 'x_0')}" for j, c in init.items()]
    lines.append("x_<n+1> = " + " + ".join(terms))
    return "\n".join(lines)


def _iterate_scalar(order, coefs, b, g, const, init, depth, x0, u, v):
    x = {j: init.get(j, Fraction(1)) * x0 for j in range(-order + 1, 0)}
    x[0] = x0
    for t in range(depth):
        val = sum(c * x[t - j] for j, c in enumerate(coefs)) + b * u[t] + const
        if g is not None:
            val += g * v[t]
        x[t + 1] = val
    return x[depth]


@SETTINGS
@given(scalar_formula(), st.randoms(use_true_random=False))
def test_scalar_weights_match_iteration(case, rnd):
    order, coefs, b, g, const, init, depth = case
    rec = parse(_scalar_text(order, coefs, b, g, const, init))
    an = analyze(rec, depth, paths=False)
    assert an.linear and an.order == max(order, 2 if g is not None else 1)
    x0 = Fraction(rnd.randint(-9, 9), rnd.randint(1, 5))
    u = [Fraction(rnd.randint(-9, 9), rnd.randint(1, 5)) for _ in range(depth)]
    v = [Fraction(rnd.randint(-9, 9), rnd.randint(1, 5)) for _ in range(depth)]
    expected = _iterate_scalar(order, coefs, b, g, const, init, depth, x0, u, v)
    w = an.block_weights
    got = _frac(an.initial_weights["x_0"]) * x0 + _frac(an.offset)
    got += sum(_frac(w["F"][i]) * u[i] for i in range(depth))
    if g is not None:
        got += sum(_frac(w["G"][i]) * v[i] for i in range(depth))
    else:
        assert set(w) == {"F"}
    assert got == expected


@st.composite
def system_formula(draw):
    """v_<n+1> = p v_n + q x_n + r F(x_n);  x_<n+1> = s x_n + t v_<n+1> + y x_<n-1> + z v_n."""
    p, q, r = draw(small), draw(small), draw(nonzero)
    s, t, y, z = draw(small), draw(small), draw(small), draw(small)
    v0 = draw(small)  # v_0 = v0 * x_0 (0 by default)
    depth = draw(st.integers(0, 40))
    return (p, q, r, s, t, y, z, v0, depth)


@SETTINGS
@given(system_formula(), st.randoms(use_true_random=False))
def test_system_weights_match_iteration(case, rnd):
    p, q, r, s, t, y, z, v0, depth = case
    lines = []
    if v0:
        lines.append(f"v_0 = {_term(v0, 'x_0')}")
    lines.append(f"v_<n+1> = {_term(p, 'v_n')} + {_term(q, 'x_n')} + {_term(r, 'F(x_n)')}")
    lines.append(
        f"x_<n+1> = {_term(s, 'x_n')} + {_term(t, 'v_<n+1>')} + {_term(y, 'x_<n-1>')} + {_term(z, 'v_n')}"
    )
    rec = parse("\n".join(lines))
    an = analyze(rec, depth, paths=False)
    x0 = Fraction(rnd.randint(-9, 9), rnd.randint(1, 5))
    u = [Fraction(rnd.randint(-9, 9), rnd.randint(1, 5)) for _ in range(depth)]
    xs = {-1: x0, 0: x0}
    vs = {0: v0 * x0}
    for n in range(depth):
        vs[n + 1] = p * vs[n] + q * xs[n] + r * u[n]
        xs[n + 1] = s * xs[n] + t * vs[n + 1] + y * xs[n - 1] + z * vs[n]
    got = _frac(an.initial_weights["x_0"]) * x0 + sum(
        _frac(an.block_weights["F"][i]) * u[i] for i in range(depth)
    )
    assert got == xs[depth]


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 6), st.randoms(use_true_random=False))
def test_per_step_parameters_match_iteration(depth, rnd):
    """LM-ResNet with symbolic k_n: substitute random k_t and compare with iteration."""
    rec = parse("param k_n = 1.05\nx_<n+1> = k_n*x_n + (1 - k_n)*x_<n-1> + F(x_n)")
    an = analyze(rec, depth, paths=False)
    ks = [Fraction(rnd.randint(-9, 9), rnd.randint(1, 4)) for _ in range(depth)]
    k = sympy.IndexedBase("k")
    subs = {k[i]: sympy.Rational(ks[i].numerator, ks[i].denominator) for i in range(depth)}
    x0 = Fraction(rnd.randint(-9, 9), 7)
    u = [Fraction(rnd.randint(-9, 9), rnd.randint(1, 5)) for _ in range(depth)]
    xs = {-1: x0, 0: x0}
    for n in range(depth):
        xs[n + 1] = ks[n] * xs[n] + (1 - ks[n]) * xs[n - 1] + u[n]
    got = _frac(an.initial_weights["x_0"].xreplace(subs)) * x0
    got += sum(_frac(an.block_weights["F"][i].xreplace(subs)) * u[i] for i in range(depth))
    assert got == xs[depth]


@settings(max_examples=25, deadline=None)
@given(small, st.integers(0, 12))
def test_free_symbol_then_bind(a, depth):
    """Weights in a free symbol, evaluated at a, equal the weights of the bound formula."""
    rec = parse("symbol a\nx_<n+1> = x_n + a*x_<n-1> + F(x_n)")
    sym = analyze(rec, depth, paths=False)
    value = sympy.Rational(a.numerator, a.denominator)
    bound = analyze(rec.bind(a=value), depth, paths=False)
    asym = sympy.Symbol("a")
    for ws, wb in zip(sym.block_weights["F"], bound.block_weights["F"]):
        assert sympy.expand(ws.xreplace({asym: value})) == wb
        assert wb.is_Rational
    assert sympy.expand(sym.initial_weights["x_0"].xreplace({asym: value})) == bound.initial_weights["x_0"]


def test_history_sum_matches_iteration():
    rec = parse("x_<n+1> = 1/(n+1)*sum(i=0..n, x_i) + F(x_n)")
    depth = 30
    an = analyze(rec, depth, paths=False)
    import random

    rnd = random.Random(1)
    x0 = Fraction(3, 7)
    u = [Fraction(rnd.randint(-9, 9), rnd.randint(1, 5)) for _ in range(depth)]
    xs = [x0]
    for n in range(depth):
        xs.append(sum(xs[: n + 1]) / (n + 1) + u[n])
    got = _frac(an.initial_weights["x_0"]) * x0 + sum(
        _frac(an.block_weights["F"][i]) * u[i] for i in range(depth)
    )
    assert got == xs[depth]


def test_step_dependent_coefficient_matches_iteration():
    rec = parse("x_<n+1> = x_n + 1/(n+2)*x_<n-1> + n*F(x_n)")
    depth = 25
    an = analyze(rec, depth, paths=False)
    x0 = Fraction(5, 3)
    u = [Fraction(i * i - 7, i + 1) for i in range(depth)]
    xs = {-1: x0, 0: x0}
    for n in range(depth):
        xs[n + 1] = xs[n] + Fraction(1, n + 2) * xs[n - 1] + n * u[n]
    got = _frac(an.initial_weights["x_0"]) * x0 + sum(
        _frac(an.block_weights["F"][i]) * u[i] for i in range(depth)
    )
    assert got == xs[depth]
    assert an.characteristic_polynomial is None
    assert any("depend on the step" in note for note in an.notes)


@settings(max_examples=40, deadline=None)
@given(st.lists(small, min_size=1, max_size=4).filter(lambda c: c[-1] != 0))
def test_roots_and_stability_against_numpy(coefs):
    """Characteristic roots against numpy.roots; the class against the spectral radius."""
    import numpy as np

    terms = [_term(c, "x_n" if j == 0 else f"x_<n-{j}>") for j, c in enumerate(coefs)]
    an = analyze(parse("x_<n+1> = " + " + ".join(terms) + " + F(x_n)"), 3, paths=False)
    ref = np.roots([1.0] + [-float(c) for c in coefs])
    got = [complex(r.value) for r in an.roots for _ in range(r.multiplicity)]
    assert len(got) == len(ref)
    for z in ref:  # every reference root has a computed root nearby (multiple roots: looser)
        assert min(abs(z - w) for w in got) < 1e-5
    radius = max(abs(ref))
    if radius < 1 - 1e-6:
        assert an.stability == "contracting"
    elif radius > 1 + 1e-6:
        assert an.stability == "expanding"
    else:
        assert an.stability in ("neutral", "expanding")
    assert abs(float(an.rate) - radius) < 1e-5
    assert an.consistent == (sum(coefs) == 1)
