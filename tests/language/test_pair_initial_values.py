"""A pair parameter's initial value is a finite real double at the pairs (n, i) the sums read.

DenseFormer's sum runs to ``i = n+1``; the initial value was checked only at ``i = n`` and
``i = 0``, so ``1/(n+1-i)`` (1/0 at i = n+1) and ``sqrt(n-i)`` (imaginary at i = n+1) passed
``check``; ``analyze --params init`` printed ``zoo``, ``nan`` and ``I`` as block weights and
``formulac.compile`` failed with a ZeroDivisionError traceback. Reference: the values written
out by hand at the first steps.
"""

from __future__ import annotations

import pytest

import formulac
from formulac import SourceError

DENSE = "b_0 = x_0\nb_<n+1> = x_n + F(x_n)\nx_<n+1> = sum(i=0..n+1, w_<n,i>*b_i)\n"
WINDOW = "b_0 = x_0\nb_<n+1> = x_n + F(x_n)\nx_<n+1> = sum(i=n-2..n+1, w_<n,i>*b_i)\n"


@pytest.mark.parametrize(
    ("init", "body", "problem"),
    [
        ("1/(n+1-i)", DENSE, "undefined"),  # i = n+1: 1/0
        ("sqrt(n-i)", DENSE, "not a real number"),  # i = n+1
        ("log(i+2-n)", WINDOW, "undefined"),  # i = n-2: log(0)
        ("1/(n-1-i)", WINDOW, "divides by zero"),  # i = n-1, inside the window
    ],
)
def test_an_initial_value_undefined_at_a_pair_the_sum_reads(init, body, problem):
    with pytest.raises(SourceError, match=problem) as caught:
        formulac.parse(f"param w_<n,i> = {init}\n{body}")
    assert caught.value.location.line == 1


@pytest.mark.parametrize("init", ["1/(n+2-i)", "sqrt(n+1-i)", "[i == n+1]", "1/(n+1)"])
def test_initial_values_defined_at_every_pair_compile(init):
    formula = formulac.parse(f"param w_<n,i> = {init}\n{DENSE}")
    analysis = formula.analyze(depth=3, params="init")
    for value in analysis.block_weights["F"]:
        assert value.is_real and value.is_finite
    formula.compile(backbone="mlp", depth=3)
