"""LaTeX of whole formulas: real subscripts, the user's term order, one row per equation."""

from pathlib import Path

import pytest

from formulac.display.latex import formula_latex
from formulac.parse import load, parse

ROOT = Path(__file__).resolve().parents[2]
ZOO = sorted((ROOT / "examples").glob("*.rec"))


def test_resnet_is_one_aligned_row():
    assert formula_latex(parse("x_<n+1> = x_n + F(x_n)")) == (
        "\\begin{aligned}\nx_{n+1} &= x_{n} + F\\left(x_{n}\\right)\n\\end{aligned}"
    )


def test_user_term_order_is_kept():
    text = formula_latex(parse("x_<n+1> = F(x_n) + x_n"))
    assert "x_{n+1} &= F\\left(x_{n}\\right) + x_{n}" in text
    text = formula_latex(parse("x_{n+1} = 2*x_n - x_{n-1} + F(x_n)"))
    assert "&= 2 x_{n} - x_{n-1} + F\\left(x_{n}\\right)" in text


def test_two_step_lists_its_constant():
    text = formula_latex(parse("a = -0.25\nx_<n+1> = x_n + a*x_<n-1> + F(x_n)"))
    rows = text.split(" \\\\\n")
    assert rows[0] == "\\begin{aligned}\nx_{n+1} &= x_{n} + a x_{n-1} + F\\left(x_{n}\\right)"
    assert "a = - \\frac{1}{4}" in rows[1]
    assert rows[1].startswith("&\\text{where } ")


def test_system_has_one_row_per_equation_in_order():
    rec = parse("gamma = 0.9\nv_<n+1> = gamma*v_n + (1 - gamma)*F(x_n)\nx_<n+1> = x_n + v_<n+1>")
    text = formula_latex(rec)
    assert text.index("v_{n+1} &= \\gamma v_{n}") < text.index("x_{n+1} &= x_{n} + v_{n+1}")
    assert "\\gamma = \\frac{9}{10}" in text
    assert text.count("&=") == 2


def test_params_free_symbols_initial_conditions_and_shared_blocks():
    rec = parse(
        "param k_n = 1.05\nparam s = 1\nsymbol b\nshared F\n"
        "x_<-1> = 0\nx_<n+1> = k_n*x_n + (1 - k_n)*x_<n-1> + b*s*F(x_n)"
    )
    text = formula_latex(rec)
    assert "k_{n} x_{n} + \\left(1 - k_{n}\\right) x_{n-1}" in text
    assert "k_{n}\\ \\text{learnable per step, initially}\\ \\frac{21}{20}" in text
    assert "s\\ \\text{learnable, initially}\\ 1" in text
    assert "b\\ \\text{free}" in text
    assert "x_{-1} = 0" in text
    assert "F\\ \\text{shared across steps}" in text


def test_bound_symbol_shows_its_value():
    rec = parse("symbol a\nx_<n+1> = x_n + a*x_<n-1> + F(x_n)").bind(a=0.5)
    assert "a = \\frac{1}{2}" in formula_latex(rec)
    assert "free" not in formula_latex(rec)


def test_activation_and_nested_blocks():
    text = formula_latex(parse("x_<n+1> = relu(x_n + G(x_n + F(x_n)))"))
    assert "\\operatorname{relu}\\left(x_{n} + G\\left(x_{n} + F\\left(x_{n}\\right)\\right)\\right)" in text


@pytest.mark.parametrize("path", ZOO, ids=[p.stem for p in ZOO])
def test_every_zoo_formula(path):
    rec = load(path)
    text = formula_latex(rec)
    rec = rec.compact or rec  # a stream formula is shown in its compact form (h_n, res_n @ h_n)
    assert text.startswith("\\begin{aligned}\n") and text.endswith("\n\\end{aligned}")
    assert text.count("&=") == len(rec.equations)
    for eq in rec.equations:
        assert f"{eq.state}_{{n+1}} &= " in text
    assert "[" not in text.replace("\\left[", "").replace("\\right]", "")  # no x[n] leaks
    assert text.count("{") == text.count("}")
    assert text.count("\\left") == text.count("\\right")


def test_formula_facade_uses_it():
    import formulac

    f = formulac.parse("x_<n+1> = x_n + F(x_n)")
    latex = f._repr_latex_()
    assert latex.startswith("$$") and latex.endswith("$$")
    assert formula_latex(f.rec) in latex
