"""Pair parameters (``param w_<n,i> = [i == n]``): parsing, bad input, canonical text, exact
weights at the initial values and symbolically, checked against a direct unrolling."""

from __future__ import annotations

from pathlib import Path

import pytest
import sympy
from case_files import each_case, expect_source_error, read_cases
from hypothesis import given, settings
from hypothesis import strategies as st

import formulac
from formulac.analysis import analyze
from formulac.ir import pair_reference
from formulac.parse import parse

EXAMPLES = formulac.__file__.rsplit("/", 2)[0] + "/examples"
DENSEFORMER = (
    "param w_<n,i> = [i == n+1]\nb_0 = x_0\nb_<n+1> = x_n + F(x_n)\nx_<n+1> = sum(i=0..n+1, w_<n,i>*b_i)\n"
)


@pytest.mark.parametrize("name", ["denseformer.rec", "denseformer_window.rec"])
def test_examples_print_and_reparse_to_a_fixed_point(name):
    rec = formulac.load(f"{EXAMPLES}/{name}").rec
    (param,) = rec.params.values()
    assert param.pair == "i" and param.declared == "w_<n,i>"
    text = rec.text
    again = parse(text).text
    assert again == text
    assert "[i == 1 + n]" in text and "w_<n,i>*b_i" in text


def test_pair_initial_value_depends_on_both_indices():
    rec = parse("param w_<n,j> = 1/(n+2) + [j == n]\nx_<n+1> = sum(i=0..n, w_<n,i>*x_i) + F(x_n)")
    p = rec.params["w"]
    assert p.init_at(3, 3) == sympy.Rational(6, 5) and p.init_at(3, 1) == sympy.Rational(1, 5)


def _unrolled_weight(depth: int, values: dict) -> dict:
    """DenseFormer unrolled by hand over numbers: the coefficient of F at each step and of x_0
    in x_depth, given w values ``values[(n, i)]`` (an independent reference for the analysis)."""
    # each value is a dict: "y0" -> coefficient, step k -> coefficient of F_k
    y = {"y0": 1}
    b = [{"y0": 1}]
    for t in range(depth):
        new_b = dict(y)
        new_b[t] = new_b.get(t, 0) + 1
        b.append(new_b)
        y = {}
        for i, bi in enumerate(b):
            for key, c in bi.items():
                y[key] = y.get(key, 0) + values[(t, i)] * c
    return y


@settings(max_examples=15, deadline=None)
@given(st.integers(1, 4), st.randoms(use_true_random=False))
def test_symbolic_block_weights_match_direct_unrolling(depth, rnd):
    rec = parse(DENSEFORMER)
    analysis = analyze(rec, depth)
    values = {
        (t, i): sympy.Rational(rnd.randint(-5, 5), rnd.randint(1, 4))
        for t in range(depth)
        for i in range(t + 2)
    }
    at = {pair_reference("w", t, i): v for (t, i), v in values.items()}
    expected = _unrolled_weight(depth, values)
    weights = analysis.weights.block["F"]
    for k in range(depth):
        assert sympy.sympify(weights[k]).xreplace(at) == expected.get(k, 0)
    assert sympy.sympify(analysis.weights.initial["x_0"]).xreplace(at) == expected["y0"]


def test_initial_values_give_the_plain_residual_stream():
    for depth in (1, 5):
        dense = analyze(parse(DENSEFORMER), depth, params="init")
        resnet = analyze(parse("x_<n+1> = x_n + F(x_n)"), depth)
        assert dense.weights.block["F"] == resnet.weights.block["F"] == [1] * depth


BAD = read_cases(Path(__file__).with_name("bad_pair_parameters.cases"))


@each_case(BAD)
def test_bad_pair_parameters_are_one_clear_source_error(case):
    expect_source_error(case.text, case.line, case.column, case.message)


def test_sum_reaching_another_state_at_n_plus_1_orders_the_equations():
    rec = parse("b_0 = x_0\nx_<n+1> = sum(i=0..n+1, b_i)\nb_<n+1> = x_n + F(x_n)")
    assert rec.states == ("b", "x")  # b is computed first in the step


def test_latex_of_a_pair_parameter():
    from formulac.printing import latex_expr

    n, i = sympy.symbols("n i", integer=True)
    assert latex_expr(pair_reference("w", n, i)) == "w_{n,i}"
    assert latex_expr(pair_reference("w", 2, 3)) == "w_{2,3}"
