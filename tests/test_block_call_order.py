"""``ir.block_calls_innermost_first``: the order in which the exact and reversible code compute
block calls, checked against ``ir.block_calls`` (every call, outer before inner)."""

from __future__ import annotations

from pathlib import Path

import pytest

from formulac.ir import block_calls, block_calls_innermost_first
from formulac.parse import load, parse

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.rec"))


def _check_order(expr):
    order = block_calls_innermost_first(expr)
    assert len(order) == len(set(order))  # each distinct call once
    assert set(order) == set(block_calls(expr))
    for position, call in enumerate(order):
        nested = set(block_calls(call.argument))
        assert nested <= set(order[:position]), f"{call} comes before a call in its argument"


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_call_comes_after_the_calls_in_its_argument(path):
    for equation in load(path).equations:
        _check_order(equation.rhs)


def test_a_chain_of_nested_calls_runs_from_the_inside():
    (equation,) = parse("x_<n+1> = x_n + F(G(H(x_n))) + G(H(x_n))").equations
    _check_order(equation.rhs)
    assert [call.block for call in block_calls_innermost_first(equation.rhs)] == ["H", "G", "F"]
