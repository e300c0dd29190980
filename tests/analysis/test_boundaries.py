"""Boundary cases of the analysis, each against an independent computation.

- stability conditions on a free symbol hold at their boundaries (numpy's roots of the
  characteristic polynomial, written out by hand here);
- constants written with functions (``exp(1)``, ``sigmoid(1)``, ...) are numbers everywhere;
- ``analyze --json`` stays readable by ``json.loads`` at any depth;
- ``unroll`` collects the terms of one block output;
- the output state is resolved once (a one-state file not named ``x``).
"""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import sympy

from formulac.analysis import analyze, unroll
from formulac.cli import main
from formulac.ir import BlockCall, state
from formulac.limits import MAX_JSON_DIGITS
from formulac.parse import parse

a = sympy.Symbol("a")

# formula (one free symbol a) -> its characteristic polynomial's coefficients, written by hand
STABILITY = {
    "symbol a\nx_<n+1> = (1 + a)*x_n - a*x_<n-1> + F(x_n)": lambda v: [1, -(1 + v), v],
    "x_<n+1> = x_n + a*x_<n-1> + F(x_n)": lambda v: [1, -1, -v],
    "x_<n+1> = a*x_n - x_<n-1> + F(x_n)": lambda v: [1, -v, 1],
    "x_<n+1> = a^2*x_<n-1> + F(x_n)": lambda v: [1, 0, -(v**2)],
    "x_<n+1> = a*x_n + F(x_n)": lambda v: [1, -v],
    "x_<n+1> = 2*x_n - a*x_<n-1> + F(x_n)": lambda v: [1, -2, v],
}


def _numeric_class(coefficients) -> str:
    """Stability of a scalar recurrence from numpy's roots: a repeated root on the unit circle
    grows polynomially (the companion matrix has a Jordan block there)."""
    roots = np.roots([float(c) for c in coefficients])
    moduli = np.abs(roots)
    if moduli.max() > 1 + 1e-9:
        return "expanding"
    on_circle = [r for r in roots if abs(abs(r) - 1) <= 1e-9]
    for i, r in enumerate(on_circle):
        if any(abs(r - s) < 1e-6 for s in on_circle[i + 1 :]):
            return "expanding"
    return "neutral" if on_circle else "contracting"


def _stated_class(note: str, value: sympy.Expr) -> str:
    """Which class the note's condition gives ``a = value``."""
    body = note.split("not bound: ", 1)[1].rsplit(" (bind with", 1)[0]
    for part in body.split("; "):
        kind, _, ranges = part.partition(" for ")
        for text in ranges.split(" or "):
            if _in_range(text, value):
                return kind
    raise AssertionError(f"a = {value} is in no range of: {note}")


def _in_range(text: str, value) -> bool:
    ops = {
        "<": lambda x, y: x < y,
        "<=": lambda x, y: x <= y,
        ">": lambda x, y: x > y,
        ">=": lambda x, y: x >= y,
    }
    if text == "every a":
        return True
    m = re.fullmatch(r"a = (.+)", text)
    if m:
        return value == sympy.sympify(m.group(1).replace("^", "**"))
    m = re.fullmatch(r"a (<=?|>=?) (.+)", text)
    if m:
        return bool(ops[m.group(1)](value, sympy.sympify(m.group(2).replace("^", "**"))))
    m = re.fullmatch(r"(.+?) (<=?) a (<=?) (.+)", text)
    assert m, text
    low, high = (sympy.sympify(m.group(i).replace("^", "**")) for i in (1, 4))
    return bool(ops[m.group(2)](low, value) and ops[m.group(3)](value, high))


@pytest.mark.parametrize("text", sorted(STABILITY))
def test_stability_conditions_hold_at_their_boundaries(text):
    rec = parse(text)
    (note,) = [n for n in analyze(rec, 2).notes if "depend on a" in n]
    boundaries = {
        sympy.sympify(v.replace("^", "**")) for v in re.findall(r"-?\d+(?:/\d+)?", note.split(":")[1])
    }
    values = set()
    for b in boundaries | {sympy.Integer(0)}:
        values |= {b, b - sympy.Rational(1, 1000), b + sympy.Rational(1, 1000), b - 3, b + 3}
    for value in sorted(values):
        numeric = _numeric_class(STABILITY[text](value))
        assert _stated_class(note, value) == numeric, (value, note)
        assert analyze(rec.bind(a=value), 2).stability == numeric, value


def test_the_reported_case():
    """(1 + a)*x_n - a*x_<n-1>: roots 1 and a; at a = -1 the roots 1 and -1 are distinct, neutral."""
    rec = parse("symbol a\nx_<n+1> = (1 + a)*x_n - a*x_<n-1> + F(x_n)")
    assert any("neutral for -1 <= a < 1; expanding for a < -1 or a >= 1" in n for n in analyze(rec, 2).notes)
    assert analyze(rec.bind(a=-1), 2).stability == "neutral"
    assert analyze(rec.bind(a=1), 2).stability == "expanding"


FUNCTIONS = {
    "exp(1)": math.e,
    "log(2)": math.log(2),
    "tanh(1)": math.tanh(1),
    "sigmoid(1)": 1 / (1 + math.exp(-1)),
    "relu(2)": 2.0,
    "softplus(0)": math.log(2),
}


@pytest.mark.parametrize("written", sorted(FUNCTIONS))
def test_constants_written_with_functions_are_numbers(written):
    c = FUNCTIONS[written]
    rec = parse(f"x_<n+1> = {written}*x_n + (1 - {written})*x_<n-1> + F(x_n)")
    data = analyze(rec, 4).to_json()
    # weights by iterating w_i = c*w_(i+1) + (1 - c)*w_(i+2) backwards from w_3 = 1
    w = [0.0] * 6
    w[3] = 1.0
    for i in (2, 1, 0):
        w[i] = c * w[i + 1] + (1 - c) * w[i + 2]
    assert data["block_weights"]["F"] == pytest.approx(w[:4])
    assert all(isinstance(v, (int, float)) for v in data["block_weights"]["F"])
    assert data["consistent"] is True and data["stability"] is not None
    assert sorted(r["value"] for r in data["roots"]) == pytest.approx(sorted({1.0, c - 1}), abs=1e-12)
    assert all(isinstance(v, (int, float)) for v in data["characteristic_coefficients"])


def test_json_at_any_depth_reads_with_json_loads(tmp_path, capsys):
    path = tmp_path / "ten.rec"
    path.write_text("x_<n+1> = 10*x_n + F(x_n)\n")
    assert main(["analyze", str(path), "--depth", "5000", "--json", "--exact"]) == 0
    data = json.loads(capsys.readouterr().out)  # Python refuses integers beyond 4,300 digits
    weights = data["block_weights"]["F"]
    assert weights[0] == "1" + "0" * 4999  # 10^4999, exact, as a string beyond the limit
    cut = 5000 - MAX_JSON_DIGITS  # the first weight short enough for a number: 10^(MAX_JSON_DIGITS - 1)
    assert isinstance(weights[cut], int) and weights[cut] == 10 ** (MAX_JSON_DIGITS - 1)
    assert isinstance(weights[cut - 1], str)
    assert data["exact"]["block_weights"]["F"][0] == weights[0]
    assert data["initial_weights"]["x_0"] == "1" + "0" * 5000


def test_unroll_collects_one_block_output():
    rec = parse("x_<n+1> = x_n + F(x_n) - 1/2*F(x_<n-1>)")
    got = unroll(rec, 3).expr
    # iterate by hand, with x_<-1> = x_0 and F_t(.) a distinct symbol per step and argument
    x = {-1: state("x", 0), 0: state("x", 0)}

    def F(t, j):
        return BlockCall(sympy.Symbol("F"), t, state("x", max(j, 0)))

    for t in range(3):
        x[t + 1] = x[t] + F(t, t) - F(t, t - 1) / 2
    assert sympy.expand(got - x[3]) == 0
    assert str(unroll(rec, 3)) == "x_3 = x_0 + F_0(x_0)/2 + F_1(x_1) - F_1(x_0)/2 + F_2(x_2) - F_2(x_1)/2"


def test_output_state_resolved_once():
    rec = parse("y_<n+1> = y_n + y_<n-1> + F(y_n)\ny_<-1> = 2*y_0")
    assert rec.output == "y"
    # y_1 = y_0 + 2 y_0 + F_0 = 3 y_0 + F_0;  y_2 = y_1 + y_0 + F_1 = 4 y_0 + F_0 + F_1
    an = analyze(rec, 2)
    assert an.initial_weights == {"y_0": 4} and an.block_weights["F"] == [1, 1]
    assert str(unroll(rec, 2)) == "y_2 = 4*y_0 + F_0(y_0) + F_1(y_1)"
