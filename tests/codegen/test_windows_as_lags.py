"""A window (a sum whose limits both follow n) is lags, as the compiled step keeps it
(docs/language.md): ``sum(j=n-2..n, x_j)`` reads ``x_<n-2>, x_<n-1>, x_n`` and nothing older.

Before the fix every ``sum`` counted as one over the whole history: ``check`` and ``analyze``
said "order history (reads every past state)" with no characteristic polynomial, roots or
stability, ``invert`` said "sums over the whole history: nothing to rebuild", and
memory="checkpoint" and "reversible" refused windows (``examples/denseformer_window.rec``, whose
point is memory O(1) in depth). References: an exact ``Fraction`` iteration of the formula, the
characteristic polynomial written out by hand, and the standard network's gradient on the same
weights and batch, in float64.
"""

from __future__ import annotations

from fractions import Fraction

import pytest
import sympy
import torch
from fixtures_path import REPO

import formulac
from formulac import UsageError

WINDOWS = {
    "plain": "x_<n+1> = x_n + 0.1*sum(j=n-2..n, x_j) + F(x_n)",
    "older": "x_<n+1> = x_n + 0.1*sum(j=n-3..n-1, x_<j-1>) + F(x_n)",
    "pair": "param w_<n,i> = [i == n]\nx_<n+1> = sum(i=n-2..n, w_<n,i>*x_i) + F(x_n)",
    "denseformer_window": (REPO / "examples" / "denseformer_window.rec").read_text(),
}
# the rebuilt state has coefficient 0 at the initial weights; F reads the state to rebuild
NOT_INVERTIBLE = {"pair", "denseformer_window"}
#: docs/cli.md's float64 tolerance of a reversible gradient; checkpointing recomputes exactly
TOLERANCE = {"checkpoint": 1e-12, "reversible": 1e-10}
OPTIONS = {"backbone": "mlp", "depth": 7, "width": 6, "input_size": 4, "stages": [6, 8]}


def _gradient(model, x, y) -> torch.Tensor:
    x = x.clone().requires_grad_()
    model.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    grads = [x.grad] + [p.grad for p in model.parameters() if p.grad is not None]
    return torch.cat([g.flatten() for g in grads])


# windows whose oldest state can be rebuilt from the newest (as can "plain" and "older")
INVERTIBLE = {
    "oldest": "x_<n+1> = x_<n-2> + 0.1*sum(j=n-1..n, x_j) + F(x_n)",
    "mean": "x_<n+1> = x_n + sum(j=n-2..n, x_j)/3 + F(x_n)",
}


def test_a_window_has_an_order_roots_and_the_iterated_weights():
    """x_<n+1> = x_n + (x_<n-2> + x_<n-1> + x_n)/3 + F(x_n), states before x_0 equal to x_0."""
    depth = 6
    analysis = formulac.analyze(INVERTIBLE["mean"], depth=depth)
    assert analysis.order == 3
    third = sympy.Rational(1, 3)
    assert analysis.characteristic_coefficients == [1, -4 * third, -third, -third]
    assert analysis.stability == "expanding"  # lambda^3 - 4/3 lambda^2 - ... has a root 1.656
    # weights of (x_0, F_0, ..., F_5) in every state, by exact iteration
    states = {k: [Fraction(int(j == 0)) for j in range(depth + 1)] for k in (-2, -1, 0)}
    for k in range(depth):
        step = [
            states[k][j] + (states[k - 2][j] + states[k - 1][j] + states[k][j]) / 3 for j in range(depth + 1)
        ]
        step[k + 1] += 1
        states[k + 1] = step
    got = [analysis.initial_weights["x_0"], *analysis.block_weights["F"]]
    assert [Fraction(int(v.p), int(v.q)) for v in got] == states[depth]
    assert formulac.parse(WINDOWS["denseformer_window"]).order == 3


def test_denseformer_window_at_its_initial_weights_is_resnet():
    """w_<n,i> = [i == n+1]: the window's older entries ([n-2 == n+1], ...) are 0 at every step."""
    analysis = formulac.analyze(WINDOWS["denseformer_window"], depth=5, params="init")
    assert analysis.block_weights == {"F": [1] * 5}
    assert analysis.characteristic_coefficients == [1, -1]
    assert analysis.stability == "neutral"


@pytest.mark.parametrize("memory", ["checkpoint", "reversible"])
@pytest.mark.parametrize("transition", ["reset", "project"])
@pytest.mark.parametrize("name", sorted(WINDOWS) + sorted(INVERTIBLE))
def test_memory_modes_run_a_window_with_the_standard_gradient(name, transition, memory):
    text = {**WINDOWS, **INVERTIBLE}[name]
    formula = formulac.parse(text)
    if memory == "reversible" and name in NOT_INVERTIBLE:
        with pytest.raises(UsageError, match="needs a formula whose steps can run backward"):
            formula.compile(**OPTIONS, memory=memory)
        return
    torch.manual_seed(0)
    standard = formula.compile(**OPTIONS, transition=transition).double().train()
    checkpointed = formula.compile(**OPTIONS, transition=transition, memory=memory).double()
    with torch.no_grad():  # learned weights away from their initial values
        for p in standard.parameters():
            p.add_(0.1 * torch.randn_like(p))
    checkpointed.load_state_dict(standard.state_dict())
    checkpointed.train()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 1, 4, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 10, (3,), generator=g)
    reference = _gradient(standard, x, y)
    assert float((_gradient(checkpointed, x, y) - reference).norm() / reference.norm()) <= TOLERANCE[memory]


def test_a_sum_over_the_whole_history_is_still_refused():
    formula = formulac.parse("x_<n+1> = 1/(n+1)*sum(i=0..n, x_i) + F(x_n)")
    with pytest.raises(UsageError, match="sums over the whole history"):
        formula.compile(**OPTIONS, memory="checkpoint")


@pytest.mark.parametrize(
    ("text", "order"),
    [
        ("x_<n+1> = x_n + x_<n-3> - x_<n-3> + F(x_n)", 1),  # written, cancelled: not read
        ("x_<n+1> = sum(j=n-2..n, x_j) - x_<n-2> + F(x_n)", 2),  # the window's oldest term cancels
    ],
)
def test_terms_that_cancel_leave_no_order_behind(text, order):
    assert formulac.parse(text).order == order
    assert len(formulac.analyze(text, depth=4).characteristic_coefficients) == order + 1
