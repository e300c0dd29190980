"""Invertibility and reconstruction (issue 10): which steps run backward, the exact backward step,
and how fast rounding errors grow when states are rebuilt.

References: the issue's examples (two-step a = -0.21: forward roots 0.7 and 0.3, errors grow
10/3 per rebuilt step; Momentum g = 0.9: 10/9), and the backward step checked by substituting it
into the forward step with the blocks as opaque symbols.
"""

from __future__ import annotations

import json
import math

import pytest
import sympy
from fixtures_path import REPO

import formulac
from formulac.analysis import analyze
from formulac.analysis.invertibility import (
    MAX_RUN,
    UNIT_ROUNDOFF,
    invert,
    reconstruction,
)
from formulac.ir import BlockCall, n, state

EXAMPLES = REPO / "examples"


def _rec(text_or_file: str):
    if text_or_file.endswith(".rec"):
        return formulac.load(EXAMPLES / text_or_file).rec
    return formulac.parse(text_or_file).rec


INVERTIBLE = {
    "two_step.rec": "x_<n-1> = -4*(x_<n+1> - F(x_n) - x_n)",
    "lm_resnet.rec": "x_<n-1> = (x_<n+1> - (1 - k_n)*x_n - F(x_n))/k_n",
    "momentum.rec": "x_n = x_<n+1> - v_<n+1>; v_n = 10*(v_<n+1> - F(x_n)/10)/9",
    "revnet.rec": "x_n = x_<n+1> - G(y_<n+1>); y_n = y_<n+1> - F(x_n)",
    "midpoint.rec": "x_<n-1> = x_<n+1> - 2*F(x_n)",
}

NOT_INVERTIBLE = {
    "resnet.rec": "F(x_n) reads x_n, the state the backward step must rebuild",
    "resnet_post.rec": "relu(...) is applied to x_n: it maps every negative value to 0",
    "x_<n+1> = x_n - 0.2*x_<n-1> + F(x_<n-1>)": "F(x_<n-1>) reads x_<n-1>",
    "highway.rec": "T(x_n) reads x_n",
    "densenet.rec": "concatenates x_n into a wider state",
    "history_sum.rec": "sums over the whole history",
    "heun.rec": "reads x_n, the state the backward step must rebuild",
    "x_<n+1> = tanh(x_<n-1>) + F(x_n)": "the inverse of tanh, which formulac does not generate",
    "x_<n+1> = x_n + 0.3*x_<n-1>^2 + F(x_n)": "appears in the power",
    "y_<n+1> = F(x_n)\nx_<n+1> = x_n + 0.5*x_<n-1> + y_n": "mixes y_n and x_<n-1>",
    "param k_n = 0\nx_<n+1> = x_n + k_n*x_<n-1> + F(x_n)": "is 0 at the parameters' initial values",
}


@pytest.mark.parametrize("spec", sorted(INVERTIBLE))
def test_invertible_formulas_give_their_backward_step(spec):
    inv = invert(_rec(spec))
    assert inv.invertible and inv.reason is None
    from formulac.analysis.invertibility import backward_text

    assert "; ".join(backward_text(inv)) == INVERTIBLE[spec]


@pytest.mark.parametrize("spec", sorted(NOT_INVERTIBLE))
def test_not_invertible_formulas_say_why_in_one_line(spec):
    inv = invert(_rec(spec))
    assert not inv.invertible
    assert NOT_INVERTIBLE[spec] in inv.reason
    assert "\n" not in inv.reason


def test_the_brief_lm_convention_needs_k_not_1():
    inv = invert(_rec("param k_n = 1.05\nx_<n+1> = k_n*x_n + (1 - k_n)*x_<n-1> + F(x_n)"))
    assert inv.invertible and inv.conditions == ["1 - k_n != 0"]
    # at k = 1 the scheme is ResNet again: not invertible
    inv = invert(_rec("param k_n = 1\nx_<n+1> = k_n*x_n + (1 - k_n)*x_<n-1> + F(x_n)"))
    assert not inv.invertible and "is 0 at the parameters' initial values" in inv.reason


def test_two_step_with_a_bound_to_zero_is_resnet():
    rec = _rec("two_step_free.rec")
    assert invert(rec).conditions == ["a != 0"]
    assert not invert(rec.bind(a=0)).invertible


# -- the backward step is the forward step solved: substitute it back -----------------------------

_FORWARD_CHECKED = [
    "two_step.rec",
    "lm_resnet.rec",
    "momentum.rec",
    "revnet.rec",
    "midpoint.rec",
    "h_<n+1> = F(x_n)\nx_<n+1> = x_n - 0.3*x_<n-1> + h_<n+1>",
    "param c = 2\ny_<n+1> = c*y_n - F(x_n)\nx_<n+1> = 0.5*x_<n-1> + x_n + G(y_<n+1>) - y_<n+1>",
]


@pytest.mark.parametrize("spec", _FORWARD_CHECKED)
def test_backward_step_inverts_the_forward_step(spec):
    """Run the forward step on symbols (blocks as opaque functions of their arguments), then the
    backward step on its result: every state before the step comes back exactly."""
    rec = _rec(spec)
    inv = invert(rec)
    assert inv.invertible
    lags = rec.carried_lags
    before = {state(s, n - k): sympy.Symbol(f"{s}{k}") for s, d in lags.items() for k in range(d)}
    values = dict(before)
    for eq in rec.equations:
        values[state(eq.state, n + 1)] = _evaluate(rec.resolved_rhs(eq.state), values)
    known = {ref: values[ref] for ref in values if ref.indices[0] - n >= 2 - lags.get(ref.base.label.name, 0)}
    known.update({state(s, n + 1): values[state(s, n + 1)] for s in lags})
    for ref, expr in inv.inverse.solution:
        known[ref] = _evaluate(expr, known)
    for ref, symbol in before.items():
        assert sympy.simplify(known[ref] - symbol) == 0, (ref, known[ref])


def _evaluate(expr, values):
    """``expr`` with state references replaced by their values, blocks kept as opaque calls."""
    expr = expr.xreplace({ref: v for ref, v in values.items() if expr.has(ref)})
    return expr.replace(
        lambda e: isinstance(e, BlockCall), lambda e: sympy.Function(e.block)(_evaluate(e.argument, values))
    )


# -- reconstruction: growth per rebuilt step ---------------------------------------------------------


def test_growth_two_step_a_minus_021_is_ten_thirds():
    r = reconstruction(_rec("a = -0.21\nx_<n+1> = x_n + a*x_<n-1> + F(x_n)"))
    assert r.growth == sympy.Rational(10, 3)  # forward roots 7/10 and 3/10
    assert r.max_steps["float32"] == _reference_run(
        [[0, 1], [sympy.Rational(100, -21), sympy.Rational(100, 21)]]
    )


def test_growth_momentum_is_one_over_gamma():
    r = reconstruction(_rec("momentum.rec"))
    assert r.growth == sympy.Rational(10, 9)
    r = reconstruction(_rec("momentum.rec").bind(gamma=sympy.Rational(1, 2)))
    assert r.growth == 2


def test_growth_lm_resnet_at_initial_value_and_at_trained_values():
    rec = _rec("lm_resnet.rec")
    r = reconstruction(rec)
    assert r.growth == 20 and r.evaluated_at == {"k": sympy.Rational(-1, 20)}
    assert any("initial values" in note for note in r.notes)
    # re-evaluated for trained values: one k per step, the worst step counts
    r = reconstruction(rec, values={"k": [-0.5, -0.25, -0.1]})
    assert r.growth == 10
    assert reconstruction(rec, values={"k": -0.5}).growth == 2


def test_growth_revnet_and_midpoint_is_one():
    for spec in ("revnet.rec", "midpoint.rec"):
        r = reconstruction(_rec(spec))
        assert r.growth == 1
        # neutral: a float32 run is bounded by the tolerance over the unit roundoff alone
        assert r.max_steps["float32"] == pytest.approx(r.tolerance / UNIT_ROUNDOFF["float32"], rel=0.01)
        # B^p = I (p = 1 for RevNet, 2 for the midpoint rule): the shortcut counts as the loop does
        assert r.period in (1, 2)
        looped = reconstruction(_rec(spec))
        looped.period = None
        for fmt in ("float32", "float16", "bfloat16"):
            assert looped.max_run(fmt) == r.max_run(fmt)


def test_double_root_counts_its_polynomial_growth():
    r = reconstruction(_rec("two_step.rec"))  # a = -1/4: forward root 1/2 twice
    assert r.growth == 2
    assert r.max_steps["float32"] == _reference_run([[0, 1], [-4, 4]])


def test_free_symbol_leaves_the_growth_undetermined():
    r = reconstruction(_rec("two_step_free.rec"))
    assert r.growth is None and "depends on a" in r.notes[0]


def test_not_invertible_has_no_reconstruction():
    assert reconstruction(_rec("resnet.rec")) is None


def test_runs_follow_the_tolerance_and_the_format():
    r = reconstruction(_rec("a = -0.21\nx_<n+1> = x_n + a*x_<n-1> + F(x_n)"))
    assert r.max_run("float32", 1e-2) > r.max_run("float32", 1e-3) > r.max_run("float32", 1e-5)
    assert r.max_run("float64") > r.max_run("float32") > r.max_run("float16") >= r.max_run("bfloat16")
    assert r.max_steps["bfloat16"] == 0  # one bfloat16 rounding is 2^-8 > 1e-3
    run = r.max_run("float32")
    assert r.error_bound(run, "float32") <= 1e-3 < r.error_bound(run + 1, "float32")


def test_expanding_forward_rebuilds_without_limit():
    # forward roots 2 and 1.5 (> 1): rebuilding shrinks errors
    r = reconstruction(_rec("x_<n+1> = 3.5*x_n - 3*x_<n-1> + F(x_n)"))
    assert r.growth == sympy.Rational(2, 3)
    assert r.max_steps["float32"] == MAX_RUN


def _reference_run(B, tolerance=1e-3, dtype="float32"):
    """Longest j with u * sum_{i<j} ||B^i||_inf <= tolerance, in exact rationals."""
    B = sympy.Matrix(B)
    power = sympy.eye(B.shape[0])
    total, j = 0, 0
    budget = sympy.Rational(tolerance) / sympy.Rational(UNIT_ROUNDOFF[dtype])
    while True:
        total += max(sum(abs(v) for v in power.row(i)) for i in range(B.shape[0]))
        if total > budget:
            return j
        j += 1
        power = power * B


# -- analyze: text and JSON ----------------------------------------------------------------------


def test_analyze_json_has_the_memory_fields():
    data = analyze(_rec("lm_resnet.rec"), depth=3).to_json()
    assert data["invertible"] is True and data["invertible_reason"] is None
    assert data["invertible_conditions"] == ["k_n != 0"]
    assert data["backward_step"] == ["x_<n-1> = (x_<n+1> - (1 - k_n)*x_n - F(x_n))/k_n"]
    rec = data["reconstruction"]
    assert rec["growth"] == 20 and rec["tolerance"] == 1e-3
    assert set(rec["max_steps"]) == {"float32", "bfloat16"}
    assert rec["evaluated_at"] == {"k": -0.05}
    json.dumps(data)
    data = analyze(_rec("resnet_post.rec"), depth=3).to_json()
    assert data["invertible"] is False and "relu" in data["invertible_reason"]
    assert data["reconstruction"] is None and data["backward_step"] == []


def test_analyze_text_shows_invertibility_and_growth():
    text = analyze(_rec("a = -0.21\nx_<n+1> = x_n + a*x_<n-1> + F(x_n)"), depth=3).to_text()
    assert "invertible   yes; the backward step:" in text
    assert "an error grows by 10/3 (≈3.333) per rebuilt step" in text
    assert "float32 7 steps" in text
    text = analyze(_rec("resnet.rec"), depth=3).to_text()
    assert "invertible   no: F(x_n) reads x_n" in text


def test_growth_is_exact_when_the_roots_are():
    r = reconstruction(_rec("h_<n+1> = F(x_n)\nx_<n+1> = x_n - 0.3*x_<n-1> + h_<n+1>"))
    # roots of l^2 - l + 3/10 are complex with modulus sqrt(3/10)
    assert sympy.simplify(r.growth - 1 / sympy.sqrt(sympy.Rational(3, 10))) == 0
    assert math.isclose(float(r.growth), 1.8257418583505538)


@pytest.mark.parametrize(
    "coefficient, step",
    [("(n-2)", 2), ("(n^2-9)", 3), ("(n-40000)", 40000), ("(n+2)", None), ("(n^2+1)", None)],
)
def test_a_coefficient_in_n_that_vanishes_at_a_step_is_not_invertible(coefficient, step):
    """x_<n-1> is rebuilt by dividing by its coefficient: where it is 0 there is no backward step
    (the reference: the integer roots of the polynomial at n >= 0)."""
    rec = _rec(f"x_<n+1> = x_n + {coefficient}*x_<n-1> + F(x_n)\n")
    inv = invert(rec)
    polynomial = sympy.sympify(coefficient.replace("^", "**"), locals={"n": n})
    roots = sorted(int(r) for r in sympy.roots(sympy.Poly(polynomial, n)) if r.is_integer and r >= 0)
    assert (roots[0] if roots else None) == step
    if step is None:
        assert inv.invertible and inv.conditions == []
    else:
        assert not inv.invertible and f"is 0 at step n = {step}" in inv.reason
