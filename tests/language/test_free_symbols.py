"""The card's formula as written: an undeclared coefficient is a free symbol.

``x_<n+1> = x_n + a*x_<n-1> + F(x_n)`` alone in a file parses with ``a`` free (as if
``symbol a`` were written); analysis and unrolling show results in ``a``; ``--set`` and
``bind`` give it a value; building a network without a value is one error naming every free
symbol. Names that look like typos of declared ones stay errors, and say which.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sympy

import formulac
from formulac.analysis import analyze, unroll
from formulac.cli import main
from formulac.errors import SourceError, UnboundSymbolsError, UsageError
from formulac.parse import parse

CARD = "x_<n+1> = x_n + a*x_<n-1> + F(x_n)\n"
a = sympy.Symbol("a")
ROOT = Path(__file__).resolve().parents[2]


def _weights_by_iteration(coefficient, depth: int) -> list:
    """Block weights of x_<n+1> = x_n + c*x_<n-1> + F(x_n) in x_depth, by the recurrence of the
    weights themselves: w(depth-1) = 1, w(i) = w(i+1) + c*w(i+2) (a Fibonacci-like sequence)."""
    w = [sympy.Integer(0)] * (depth + 2)
    w[depth - 1] = sympy.Integer(1)
    for i in range(depth - 2, -1, -1):
        w[i] = sympy.expand(w[i + 1] + coefficient * w[i + 2])
    return w[:depth]


def test_card_formula_parses_with_a_free():
    rec = parse(CARD)
    assert rec.symbols == ("a",) and rec.free_symbols == ("a",)
    assert rec.constants == {} and rec.params == {}
    assert rec.text == "symbol a\n" + CARD, "printed with its declaration: the text re-parses the same"


def test_card_formula_is_analysed_in_a():
    an = analyze(parse(CARD), 6)
    assert an.free_symbols == ["a"]
    assert [sympy.expand(w) for w in an.block_weights["F"]] == _weights_by_iteration(a, 6)
    assert an.characteristic_polynomial == sympy.Symbol("lambda") ** 2 - sympy.Symbol("lambda") - a
    assert an.stability is None and any("depend on a" in note for note in an.notes)
    # x_1 = (1 + a) x_0 + F_0;  x_2 = (1 + 2a) x_0 + F_0 + F_1;  x_3 = x_2 + a x_1 + F_2
    assert str(unroll(parse(CARD), 3)) == "x_3 = (a^2 + 3*a + 1)*x_0 + (a + 1)*F_0(x_0) + F_1(x_1) + F_2(x_2)"


def test_set_and_bind_give_a_a_value(capsys, tmp_path):
    path = tmp_path / "card.rec"
    path.write_text(CARD)
    assert main(["analyze", str(path), "--set", "a=-0.21", "--depth", "5", "--json"]) == 0
    import json

    data = json.loads(capsys.readouterr().out)
    want = _weights_by_iteration(sympy.Rational(-21, 100), 5)
    assert data["block_weights"]["F"] == pytest.approx([float(w) for w in want])
    assert data["free_symbols"] == [] and data["stability"] == "contracting"
    bound = formulac.parse(CARD).bind(a=-0.21)
    assert bound.analyze(depth=5).block_weights["F"] == want


def test_building_a_network_names_every_free_symbol(tmp_path, capsys):
    text = "x_<n+1> = x_n + a*x_<n-1> + b*F(x_n)\n"
    with pytest.raises(UnboundSymbolsError) as info:
        formulac.compile(text, backbone="mlp")
    assert info.value.names == ("a", "b")
    message = info.value.format()
    assert message.startswith("formulac: error: ") and message.count("\n") == 0
    assert "--set a=VALUE --set b=VALUE" in message and "bind(a=..., b=...)" in message
    with pytest.raises(UnboundSymbolsError, match="the free symbol a has no value"):
        formulac.parse(CARD).wire({"F": []})
    path = tmp_path / "card.rec"
    path.write_text(text)
    for command in (["compile", str(path), "--backbone", "mlp"], ["train", str(path), "--backbone", "mlp"]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert err.count("error:") == 1 and "--set a=VALUE --set b=VALUE" in err, err
        assert "Traceback" not in err
    net = formulac.compile(text, backbone="mlp", a=-0.25, b=1, in_channels=1, num_classes=3)
    assert net is not None


def test_check_shows_the_free_symbols(tmp_path, capsys):
    path = tmp_path / "card.rec"
    path.write_text(CARD.replace("F(x_n)", "b*F(x_n)"))
    assert main(["check", str(path)]) == 0
    assert capsys.readouterr().out.strip() == f"{path}: ok (order 2, 1 block, linear, free symbols a, b)"


def test_free_symbols_in_constants_and_initial_conditions():
    rec = parse("c = 2*k\nx_<-1> = g*x_0\nx_<n+1> = c*x_n + x_<n-1> + F(x_n)")
    assert rec.free_symbols == ("k", "g")
    assert rec.resolved_rhs("x").coeff(rec.equation("x").rhs.args[0].args[-1]) is not None
    an = analyze(rec.bind(k=sympy.Rational(1, 2), g=0), 2)
    # x_1 = x_0 + x_<-1> + F_0 = x_0 + F_0;  x_2 = x_1 + x_0 + F_1 = 2*x_0 + F_0 + F_1
    assert an.initial_weights == {"x_0": 2} and an.block_weights["F"] == [1, 1]


@pytest.mark.parametrize(
    "text, line, column, fragment",
    [
        # typos of declared names stay errors and say which declaration they resemble
        (
            "alpha = 0.5\nx_<n+1> = x_n + alpah*F(x_n)",
            2,
            17,
            "did you mean 'alpha' (the constant declared on line 1)",
        ),
        ("param gamma = 1\nx_<n+1> = gama*x_n + F(x_n)", 2, 11, "did you mean 'gamma' (the parameter"),
        ("symbol beta\nx_<n+1> = x_n + betaa*F(x_n)", 2, 17, "did you mean 'beta' (the symbol"),
        ("x_<n+1> = x_n + sigmoyd*F(x_n)", 1, 17, "did you mean 'sigmoid' (a function)"),
        # names used as states or blocks must exist
        ("x_<n+1> = x_n + F(z_<n-1>)", 1, 19, "undefined state 'z'"),
        ("x_<n+1> = x_n + G", 1, 17, "block G must be applied to an argument"),
        ("x_<n+1> = x_n + foo(x_n)", 1, 17, "unknown function 'foo'"),
        # an implicit symbol still follows the rules for names
        ("x_<n+1> = x_n + lambda*F(x_n)", 1, 17, "'lambda' is a Python keyword"),
        ("x_<n+1> = x_n + len*F(x_n)", 1, 17, "'len' is a Python builtin"),
        ("x_<n+1> = x_n + " + "a" * 65 + "*F(x_n)", 1, 17, "symbol name too long"),
        # where a value must be a number, an unknown name is not a symbol
        ("param k = abc\nx_<n+1> = k*x_n", 1, 11, "undefined symbol 'abc'"),
        ("symbol w in [0, top]\nx_<n+1> = w*x_n", 1, 17, "undefined symbol 'top'"),
        # one name, one meaning: a sum's variable is not also a free symbol
        ("x_<n+1> = i*x_n + sum(i=0..n, x_i)", 1, 23, "the sum's variable 'i' is already a name"),
        ("x_<n+1> = sum(i=0..n, x_i) + i*x_n", 1, 15, "also used as a free symbol (line 1)"),
    ],
)
def test_names_that_are_not_free_symbols(text, line, column, fragment):
    with pytest.raises(SourceError) as info:
        parse(text, "bad.rec")
    assert fragment in info.value.message, info.value.format()
    assert (info.value.location.line, info.value.location.column) == (line, column), info.value.format()


@pytest.mark.parametrize(
    "text",
    [
        "x_<n+1> = beta1*x_n + beta2*x_<n-1> + F(x_n)",  # differing digits are deliberate
        "x_<n+1> = gam*x_n + gamm*x_<n-1> + F(x_n)",  # both new: neither is declared
        "ab = 1\nx_<n+1> = ab*x_n + abc*x_<n-1> + F(x_n)",  # short names are not typos
        "alpha = 1\nx_<n+1> = alpha*x_n + delta*x_<n-1> + F(x_n)",
    ],
)
def test_names_near_each_other_that_are_fine(text):
    assert parse(text).free_symbols


def test_docs_state_the_rule():
    text = (ROOT / "docs" / "language.md").read_text(encoding="utf-8")
    assert "becomes a **free symbol**" in text and "typo of a declared name" in text


def test_bind_mistakes_are_usage_errors():
    f = formulac.parse(CARD)
    with pytest.raises(UsageError, match="cannot bind b"):
        f.bind(b=1)
    with pytest.raises(KeyError):  # as before it was a FormulacError
        f.rec.bind(b=1)
    with pytest.raises(UsageError, match="finite"):
        f.bind(a=float("nan"))
    with pytest.raises(UsageError, match="depend on itself"):
        formulac.parse("c = 2*a\nx_<n+1> = c*x_n + F(x_n)").bind(a=sympy.Symbol("c"))
