"""The analyzer on formulas whose answers are known in closed form."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest
import sympy

from formulac.analysis import LAMBDA, analyze, diff, unroll
from formulac.errors import UsageError
from formulac.parse import parse

a, g, k = sympy.symbols("a g k")
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

RESNET = "x_<n+1> = x_n + F(x_n)"
TWO_STEP = "symbol a\nx_<n+1> = x_n + a*x_<n-1> + F(x_n)"
LM = "param k_n = 1.05\nx_<n+1> = k_n*x_n + (1 - k_n)*x_<n-1> + F(x_n)"
MOMENTUM = "symbol g\nv_<n+1> = g*v_n + (1 - g)*F(x_n)\nx_<n+1> = x_n + v_<n+1>"

#: The results only a formula linear in its states has (None otherwise).
LINEAR_RESULTS = (
    "block_weights",
    "initial_weights",
    "characteristic_polynomial",
    "roots",
    "stability",
    "rate",
    "consistent",
)


# -- weights -------------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [0, 1, 5, 40])
def test_resnet_weights_are_all_one(depth):
    an = analyze(parse(RESNET), depth)
    assert an.block_weights == {"F": [1] * depth}
    assert an.initial_weights == {"x_0": 1}
    assert an.offset == 0


def test_resnet_unroll_text_and_latex():
    u = unroll(parse(RESNET), 3)
    assert u.text == "x_0 + F_0(x_0) + F_1(x_1) + F_2(x_2)"
    assert str(u) == "x_3 = x_0 + F_0(x_0) + F_1(x_1) + F_2(x_2)"
    assert "F_{2}" in u.latex and r"x_{2}" in u.latex
    assert u._repr_latex_().startswith("$x_{3} = ")


def _fib_poly(m):
    """c_0 = c_1 = 1, c_{m+1} = c_m + a c_{m-1}: weight of the block m steps before the end."""
    c = [sympy.Integer(1), sympy.Integer(1)]
    while len(c) <= m:
        c.append(sympy.expand(c[-1] + a * c[-2]))
    return c[m]


@pytest.mark.parametrize("depth", [1, 2, 6, 12])
def test_two_step_weights_are_fibonacci_polynomials(depth):
    an = analyze(parse(TWO_STEP), depth)
    w = an.block_weights["F"]
    for i in range(depth):
        assert sympy.expand(w[i] - _fib_poly(depth - 1 - i)) == 0
    known = {1: 1, 2: 1, 6: 1 + 4 * a + 3 * a**2}
    if depth in known:
        assert sympy.expand(w[0] - known[depth]) == 0


def test_two_step_at_a_equals_one_gives_fibonacci_numbers():
    an = analyze(parse(TWO_STEP).bind(a=1), 10)
    fib = [1, 1]
    while len(fib) < 10:
        fib.append(fib[-1] + fib[-2])
    assert an.block_weights["F"] == list(reversed(fib))


def test_momentum_closed_form():
    depth = 7
    an = analyze(parse(MOMENTUM), depth)
    for i, w in enumerate(an.block_weights["F"]):
        assert sympy.expand(w - (1 - g ** (depth - i))) == 0
    assert an.initial_weights == {"x_0": 1}


def test_momentum_example_is_numeric_and_consistent():
    an = analyze(
        parse((EXAMPLES / "momentum.rec").read_text())
        if (EXAMPLES / "momentum.rec").exists()
        else parse("gamma = 0.9\nv_<n+1> = gamma*v_n + (1 - gamma)*F(x_n)\nx_<n+1> = x_n + v_<n+1>"),
        3,
    )
    assert an.block_weights["F"] == [
        sympy.Rational(271, 1000),
        sympy.Rational(19, 100),
        sympy.Rational(1, 10),
    ]
    assert an.consistent is True and an.stability == "neutral"


def test_lm_resnet_symbolic_small_depth():
    an = analyze(parse(LM), 3)
    kk = sympy.IndexedBase("k")
    w = an.block_weights["F"]
    assert w[2] == 1
    assert sympy.expand(w[1] - kk[2]) == 0
    # x_1 = x_0 + F_0 (since x_<-1> = x_0); x_2 = k_1 x_1 + (1-k_1) x_0 + F_1; x_3 = k_2 x_2 + (1-k_2) x_1 + F_2
    assert sympy.expand(w[0] - (kk[2] * kk[1] + 1 - kk[2])) == 0
    assert an.initial_weights == {"x_0": 1}
    assert an.consistent is True
    assert an.stability == "neutral"  # roots 1 and k - 1 = 1/20 at the initial value
    assert any("initial values" in note for note in an.notes)


def test_lm_resnet_deep_falls_back_to_initial_values_with_a_note():
    t0 = time.perf_counter()
    an = analyze(parse(LM), 200)
    assert time.perf_counter() - t0 < 20
    assert an.params_mode == "init"
    assert any("size budget" in note and "initial values" in note for note in an.notes)
    assert all(w.is_Rational for w in an.block_weights["F"])
    direct = analyze(parse(LM), 200, params="init")
    assert direct.block_weights == an.block_weights


def test_nested_block_keys_heun_and_polynet():
    heun = analyze(parse("x_<n+1> = x_n + 1/2*F(x_n) + 1/2*F(x_n + F(x_n))"), 3)
    assert list(heun.block_weights) == ["F(x_n)", "F(x_n + F(x_n))"]
    assert heun.block_weights["F(x_n)"] == [sympy.Rational(1, 2)] * 3
    poly = analyze(parse("x_<n+1> = x_n + F(x_n) + F(F(x_n))"), 2)
    assert set(poly.block_weights) == {"F(x_n)", "F(F(x_n))"}
    mpoly = analyze(parse("x_<n+1> = x_n + G(F(x_n))"), 2)
    # F is only nested inside G's argument: its outputs never reach a state directly
    assert mpoly.block_weights == {"G": [1, 1], "F": [0, 0]}


def test_constant_term_goes_to_offset():
    an = analyze(parse("x_<n+1> = x_n + F(x_n) + 2"), 4)
    assert an.offset == 8


# -- characteristic polynomial, roots, stability ----------------------------------------------------


def _roots(an):
    return sorted((complex(r.value).real, complex(r.value).imag, r.multiplicity) for r in an.roots)


def test_double_root_one_half_is_contracting():
    an = analyze(parse("a = -1/4\nx_<n+1> = x_n + a*x_<n-1> + F(x_n)"), 10)
    assert sympy.expand(an.characteristic_polynomial - (LAMBDA**2 - LAMBDA + sympy.Rational(1, 4))) == 0
    assert [(r.value, r.multiplicity, r.exact) for r in an.roots] == [(sympy.Rational(1, 2), 2, True)]
    assert an.stability == "contracting" and an.rate == sympy.Rational(1, 2) and an.rate_multiplicity == 2
    assert an.consistent is False


def test_repeated_unit_root_is_expanding_with_polynomial_growth():
    an = analyze(parse("x_<n+1> = 2*x_n - x_<n-1> + F(x_n)"), 6)
    assert an.stability == "expanding" and an.rate == 1 and an.rate_multiplicity == 2
    assert an.block_weights["F"] == [6, 5, 4, 3, 2, 1]  # linear growth, (N - i)
    assert an.consistent is True


def test_midpoint_roots_plus_minus_one_neutral():
    an = analyze(parse("x_<n+1> = x_<n-1> + 2*F(x_n)"), 4)
    assert _roots(an) == [(-1.0, 0.0, 1), (1.0, 0.0, 1)]
    assert an.stability == "neutral" and an.consistent is True


def test_expanding_rate_two():
    an = analyze(parse("x_<n+1> = 2*x_n + F(x_n)"), 5)
    assert an.stability == "expanding" and an.rate == 2
    assert an.block_weights["F"] == [16, 8, 4, 2, 1]


def test_unit_circle_roots_of_high_degree_are_neutral():
    an = analyze(parse("x_<n+1> = x_<n-4> + F(x_n)"), 6)  # lambda^5 - 1
    assert sum(r.multiplicity for r in an.roots) == 5
    assert all(abs(float(r.modulus) - 1) < 1e-12 for r in an.roots)
    assert an.stability == "neutral"


def test_numeric_roots_match_an_independent_solver():
    an = analyze(parse("x_<n+1> = x_n + 1/2*x_<n-1> - 1/3*x_<n-2> + 1/5*x_<n-3> + F(x_n)"), 10)
    import numpy as np

    ref = np.roots([1, -1, -0.5, 1 / 3, -0.2])

    def key(z):
        return (round(z.real, 9), z.imag)

    got = sorted((complex(r.value) for r in an.roots), key=key)
    for x, y in zip(got, sorted(ref, key=key)):
        assert abs(x - y) < 1e-9
    assert an.stability == "expanding"
    assert abs(float(an.rate) - max(abs(ref))) < 1e-12


def test_system_with_semisimple_double_root_is_neutral():
    an = analyze(parse("output x\ny_0 = x_0\ny_<n+1> = y_n + F(x_n)\nx_<n+1> = x_n + G(y_<n+1>)"), 4)
    assert _roots(an) == [(1.0, 0.0, 2)]
    assert an.stability == "neutral" and an.rate_multiplicity == 1  # A = I: no Jordan block
    assert an.block_weights == {"F": [0, 0, 0, 0], "G": [1, 1, 1, 1]}


def test_free_symbol_stability_is_none_with_condition_then_bind():
    rec = parse(TWO_STEP)
    an = analyze(rec, 5)
    assert an.stability is None and an.rate is None and an.consistent is None
    assert any(
        "contracting for -1 < a < 0; neutral for a = -1 or a = 0; expanding for a < -1 or a > 0" in note
        for note in an.notes
    )
    assert {r.multiplicity for r in an.roots} == {1} and len(an.roots) == 2
    bound = analyze(rec.bind(a=sympy.Rational(-1, 4)), 5)
    assert bound.stability == "contracting"
    assert analyze(rec.bind(a=sympy.Rational(1, 2)), 5).stability == "expanding"


def test_momentum_symbolic_neutral_condition():
    an = analyze(parse(MOMENTUM), 3)
    assert an.consistent is True and an.stability is None
    # roots 1 and g: neutral up to g = -1 (roots 1 and -1, distinct), not at g = 1 (a Jordan block)
    assert any("neutral for -1 <= g < 1; expanding for g < -1 or g >= 1" in note for note in an.notes)


def test_step_dependent_and_history_have_no_polynomial():
    hist = analyze(parse("x_<n+1> = 1/(n+1)*sum(i=0..n, x_i) + F(x_n)"), 5)
    assert hist.order is None and hist.characteristic_polynomial is None and hist.roots is None
    assert hist.consistent is True
    assert hist.block_weights["F"] == [
        sympy.Rational(1, 2),
        sympy.Rational(1, 3),
        sympy.Rational(1, 4),
        sympy.Rational(1, 5),
        1,
    ]
    step = analyze(parse("x_<n+1> = x_n/(n+1) + F(x_n)"), 3)
    assert step.characteristic_polynomial is None and step.consistent is False


# -- non-linear formulas ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, word",
    [
        ("x_<n+1> = relu(x_n + F(x_n))", "relu"),
        ("x_<n+1> = x_n + T(x_n)*x_n", "gate"),
        ("x_<n+1> = sigmoid(T(x_n))*H(x_n) + (1 - sigmoid(T(x_n)))*x_n", "not linear"),
        ("x_<n+1> = cat(x_n, F(x_n))", "cat"),
        ("x_<n+1> = x_n*x_<n-1> + F(x_n)", "product"),
    ],
)
def test_nonlinear_gives_none_and_a_note(text, word):
    an = analyze(parse(text), 4)
    assert an.linear is False
    for name in LINEAR_RESULTS:
        assert getattr(an, name) is None, name
    assert any(word in note for note in an.notes)
    data = an.to_json()
    assert data["block_weights"] is None and data["roots"] is None and data["linear"] is False


def test_nonlinear_unrolls_symbolically():
    u = unroll(parse("x_<n+1> = relu(x_n + F(x_n))"), 2)
    assert u.text == "relu(F_1(x_1) + relu(F_0(x_0) + x_0))"


def test_exploding_nonlinear_unroll_is_refused_fast():
    t0 = time.perf_counter()
    with pytest.raises(UsageError, match="fewer steps"):
        unroll(parse("x_<n+1> = x_n*x_<n-1> + F(x_n)"), 60)
    assert time.perf_counter() - t0 < 5


def test_momentum_unroll_expands_the_other_state():
    u = unroll(parse(MOMENTUM), 2)
    assert "v" not in u.text
    assert sympy.expand(u.expr - (sympy.Symbol("x_0") * 0 + u.expr)) == 0  # a valid expression


# -- graph and paths -------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [1, 4, 10])
def test_resnet_paths_are_binomial(depth):
    an = analyze(parse(RESNET), depth)
    assert an.path_lengths == [math.comb(depth, j) for j in range(depth + 1)]
    assert an.paths == 2**depth


def test_path_counts_match_enumeration_in_networkx():
    import networkx as nx

    from formulac.analysis import dependency_graph, path_length_distribution

    for text in (
        RESNET,
        "x_<n+1> = x_n + 1/2*F(x_n) + 1/2*F(x_n + F(x_n))",
        TWO_STEP,
        MOMENTUM,
        "x_<n+1> = 1/(n+1)*sum(i=0..n, x_i) + F(x_n)",
        "x_<n+1> = cat(x_n, F(x_n))",
    ):
        rec = parse(text)
        graph = dependency_graph(rec, 4)
        counts: dict = {}
        for path in nx.all_simple_paths(graph, graph.graph["input"], graph.graph["output"]):
            blocks = sum(1 for v in path if graph.nodes[v]["kind"] == "block")
            counts[blocks] = counts.get(blocks, 0) + 1
        expected = [counts.get(j, 0) for j in range(max(counts) + 1)]
        assert path_length_distribution(rec, 4) == expected, text
        assert path_length_distribution(graph) == expected


def test_graph_nodes_and_edges_of_resnet():
    from formulac.analysis import dependency_graph

    graph = dependency_graph(parse(RESNET), 2)
    assert set(graph.nodes) == {"x_0", "x_1", "x_2", "F_0(x_0)", "F_1(x_1)"}
    assert set(graph.edges) == {
        ("x_0", "F_0(x_0)"),
        ("x_0", "x_1"),
        ("F_0(x_0)", "x_1"),
        ("x_1", "F_1(x_1)"),
        ("x_1", "x_2"),
        ("F_1(x_1)", "x_2"),
    }
    assert graph.nodes["F_1(x_1)"]["kind"] == "block" and graph.nodes["F_1(x_1)"]["step"] == 1


# -- diff ------------------------------------------------------------------------------------------


def test_diff_resnet_vs_two_step():
    d = diff(parse(RESNET), parse("a = -0.25\nx_<n+1> = x_n + a*x_<n-1> + F(x_n)"), 4)
    assert d.same is False
    assert [t for t, _, _ in d.block_weights["F"]] == [0, 1]  # the last two blocks keep weight 1
    assert d.initial_weights["x_0"][0] == 1
    assert {"order", "characteristic_polynomial", "stability"} <= set(d.properties)
    json.dumps(d.to_json())
    assert "differ" in d.to_text()
    assert str(d) == d.to_text()
    assert d._repr_html_().startswith("<pre>") and "x_&lt;n+1&gt;" in d._repr_html_()  # escaped


def test_diff_same_formula_written_differently():
    d = diff(parse(RESNET), parse("shared F\nx_<n+1> = F(x_n) + x_n"), 6)
    assert d.same is True and not d.block_weights and not d.properties


def test_diff_nonlinear_pair():
    d = diff(parse("x_<n+1> = relu(x_n + F(x_n))"), parse("x_<n+1> = relu(F(x_n) + x_n)"), 3)
    assert d.same is True
    assert diff(parse("x_<n+1> = relu(x_n + F(x_n))"), parse(RESNET), 3).same is False


# -- output forms ----------------------------------------------------------------------------------


def test_json_contract_keys_and_types():
    an = analyze(parse("a = -1/4\nx_<n+1> = x_n + a*x_<n-1> + F(x_n)"), 4)
    data = json.loads(json.dumps(an.to_json(exact=True)))
    for key in (
        "formula",
        "order",
        "linear",
        "depth",
        *LINEAR_RESULTS,
        "free_symbols",
        "params",
        "path_lengths",
        "notes",
    ):
        assert key in data
    assert data["block_weights"]["F"] == [0.5, 0.75, 1, 1]
    assert all(isinstance(w, (int, float)) for w in data["block_weights"]["F"])
    assert data["characteristic_polynomial"] == "λ**2 - λ + 1/4"
    assert data["roots"] == [
        {"value": 0.5, "real": 0.5, "imag": 0.0, "multiplicity": 2, "modulus": 0.5, "exact": True}
    ]
    assert data["exact"]["block_weights"]["F"][0] == str(an.block_weights["F"][0])
    sym = analyze(parse(TWO_STEP), 3).to_json()
    assert sym["block_weights"]["F"][0] == "a + 1" and sym["stability"] is None
    assert sym["free_symbols"] == ["a"]


def test_text_html_latex_reprs():
    an = analyze(parse("a = -1/4\nx_<n+1> = x_n + a*x_<n-1> + F(x_n)"), 4)
    text = an.to_text()
    assert "block weights in x_4" in text and "contracting" in text and "λ" in text
    html = an._repr_html_()
    assert "<table>" in html and "block weights" in html and "contracting" in html
    latex = an._repr_latex_()
    assert "F_{0}" in latex and r"\lambda" in latex


def test_order_four_depth_1000_is_fast():
    rec = parse("x_<n+1> = x_n + 1/2*x_<n-1> - 1/3*x_<n-2> + 1/5*x_<n-3> + F(x_n)")
    from formulac.analysis.linear import structure
    from formulac.analysis.weights import compute_weights

    t0 = time.perf_counter()
    w = compute_weights(structure(rec), 1000)
    assert time.perf_counter() - t0 < 2.0
    assert len(w.block["F"]) == 1000 and w.block["F"][-1] == 1


def test_bad_arguments():
    with pytest.raises(UsageError):
        analyze(parse(RESNET), -1)
    with pytest.raises(UsageError):
        analyze(parse(RESNET), 3, params="bogus")
    with pytest.raises(UsageError):
        unroll(parse(RESNET), 2, state="nope")
