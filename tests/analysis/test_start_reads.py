"""Formulas that read a start value (``x_0``, ``v_0``) at every step: unrolled, weighed,
graphed and classified like any other (they used to crash on the step template)."""

from __future__ import annotations

import sympy

import formulac


def test_reading_the_input_at_every_step():
    f = formulac.parse("x_<n+1> = x_n + 1/2*x_0 + F(x_n)")
    analysis = f.analyze(depth=3)
    # x_3 = x_0 + 3 * x_0/2 + F_0 + F_1 + F_2
    assert analysis.initial_weights == {"x_0": sympy.Rational(5, 2)}
    assert analysis.block_weights == {"F": [1, 1, 1]}
    assert str(f.unroll(3)) == "x_3 = 5*x_0/2 + F_0(x_0) + F_1(x_1) + F_2(x_2)"
    # the homogeneous part is ResNet's; the constant input makes the scheme inconsistent
    assert analysis.stability == "neutral"
    assert analysis.consistent is False
    # paths from x_0 to x_3 without a block: x_0 -> x_3, x_0 -> x_1 -> ..., x_0 -> x_2 -> x_3
    assert analysis.path_lengths[0] == 3
    assert f.graph(3).number_of_nodes() > 0


def test_reading_another_state_s_start_value():
    f = formulac.parse("v_0 = 2*x_0\nv_<n+1> = v_n + G(x_n)\nx_<n+1> = x_n + v_0 + F(x_n)")
    analysis = f.analyze(depth=3, params="init")
    assert analysis.initial_weights == {"x_0": 7}
    assert analysis.block_weights["F"] == [1, 1, 1]
    assert all(w == 0 for w in analysis.block_weights.get("G", [0]))
