"""A stream formula shown as its file writes it: ``unroll`` (text and LaTeX), the formula's
LaTeX and ``info`` name streams ``h_1[0]`` and matrix entries ``res_0[0,1]``, not the lowered
``h0_1``/``res01_0``, and print the initial values exactly (no ``1.0*x_0``, no ``0*`` terms)."""

from __future__ import annotations

import sympy
from hypothesis import given
from hypothesis import strategies as st

import formulac
from formulac.analysis.shown import shown
from formulac.cli import main

EXAMPLES = formulac.__file__.rsplit("/", 2)[0] + "/examples"


def _cli(capsys, *args) -> str:
    assert main(list(args)) == 0
    return capsys.readouterr().out.strip()


def test_unroll_at_the_initial_values_names_streams_and_prints_exact_numbers(capsys):
    k4 = _cli(capsys, "unroll", f"{EXAMPLES}/hyper_connections_k4.rec", "--steps", "2", "--params", "init")
    assert k4 == "x_2 = x_0 + F_0(x_0) + F_1(h_1[0])"
    mhc = _cli(capsys, "unroll", f"{EXAMPLES}/mhc_k4.rec", "--steps", "2", "--params", "init")
    assert mhc == (
        "x_2 = x_0 + 2*F_0(3*x_0/2 + x_0*sigmoid(1))*sigmoid(1)"
        " + 2*F_1(h_1[1]/2 + h_1[2]/2 + h_1[3]/2 + sigmoid(1)*h_1[0])*sigmoid(1)"
    )
    latex = _cli(
        capsys,
        "unroll",
        f"{EXAMPLES}/hyper_connections_k4.rec",
        "--steps",
        "2",
        "--params",
        "init",
        "--latex",
    )
    assert latex == r"x_{2} = x_{0} + F_{0}\left(x_{0}\right) + F_{1}\left(h_{1}[0]\right)"


def test_symbolic_unroll_names_matrix_entries(capsys):
    text = _cli(capsys, "unroll", f"{EXAMPLES}/mhc_k4.rec", "--steps", "1", "--state", "h0")
    assert text.startswith("h_1[0] = x_0*(sinkhorn(res_0)[0,0] + sinkhorn(res_0)[0,1] + ")
    assert "sigmoid(pre_0[3])" in text and "sinkhornres" not in text and "h0" not in text


def test_the_formula_latex_is_the_compact_form():
    latex = formulac.load(f"{EXAMPLES}/hyper_connections_k4.rec")._repr_latex_()
    rows = latex.split("\n")
    assert rows[1] == r"h_{n+1} &= res_{n}\,h_{n} + post_{n}\,F\left(pre_{n}^{\top} h_{n}\right) \\"
    assert rows[2] == r"x_{n+1} &= \frac{\operatorname{sum}\left(h_{n+1}\right)}{4} \\"
    assert r"res_{n}\ 4\times 4\ \text{learnable matrix per step, initially}\ I" in rows[3]
    assert r"pre_{n}\ 4\ \text{learnable vector per step, initially}\ e_{0}" in rows[3]
    assert "h0" not in latex and "res00" not in latex
    mhc = formulac.load(f"{EXAMPLES}/mhc_k4.rec")._repr_latex_()
    assert r"\operatorname{sinkhorn}\left(res_{n}\right)\,h_{n}" in mhc


def test_info_lists_the_stacked_streams(capsys):
    text = _cli(capsys, "info", f"{EXAMPLES}/hyper_connections_k4.rec")
    assert "states kept    h_n (4 streams), x_n" in text.split("\n")


@given(st.fractions(min_value=-50, max_value=50, max_denominator=1000))
def test_floats_within_rounding_of_a_fraction_are_shown_as_it(value):
    exact = sympy.Rational(value.numerator, value.denominator)
    x = sympy.Symbol("x")
    assert shown(sympy.Float(exact, 30) * x + sympy.Float(0, 30)) == exact * x


def test_other_floats_stay():
    third_of_e = sympy.E.evalf(30) / 3
    assert shown(third_of_e) == third_of_e
