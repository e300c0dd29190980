"""A reversible backward whose rebuilt states are not numbers is recomputed, never used.

A learned coefficient that the inverse step divides by can reach 0 in training (Momentum's ``g``,
the two-step formula's ``a``): the rebuilt states are then infinite or NaN. The run-time check
must count that as a drift past the tolerance; before the fix the relative error of a NaN state
was taken as 0 (``max(0.0, nan)`` is 0.0), the segment passed, and the gradient came back NaN
while ``rebuild_errors`` said 0. Reference: the standard network on the same weights and batch.
"""

from __future__ import annotations

import math

import pytest
import torch

import formulac

MOMENTUM = "param g = 0.9\nv_<n+1> = g*v_n + (1-g)*F(x_n)\nx_<n+1> = x_n + v_<n+1>\n"
TWO_STEP = "param a = -0.25\nx_<n+1> = x_n + a*x_<n-1> + F(x_n)\n"
OPTIONS = {"backbone": "mlp", "depth": 30, "width": 6, "input_size": 4}


def _gradient(model, x, y) -> torch.Tensor:
    x = x.clone().requires_grad_()
    model.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    grads = [x.grad] + [p.grad for p in model.parameters() if p.grad is not None]
    return torch.cat([g.double().flatten() for g in grads])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("text", "name", "value"), [(MOMENTUM, "g", 0.0), (TWO_STEP, "a", 0.0)])
def test_a_coefficient_the_inverse_divides_by_reaching_zero(text, name, value, dtype):
    formula = formulac.parse(text)
    torch.manual_seed(0)
    standard = formula.compile(**OPTIONS).to(dtype).train()
    reversible = formula.compile(**OPTIONS, memory="reversible").to(dtype).train()
    with torch.no_grad():  # as training could leave it: every step's copy, or the shared one
        for key, p in standard.named_parameters():
            if key.rsplit(".", 1)[-1] == name:
                p.fill_(value)
    reversible.load_state_dict(standard.state_dict())
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(2, 1, 4, 4, generator=g, dtype=dtype), torch.randint(0, 10, (2,), generator=g)
    reference = _gradient(standard, x, y)
    assert torch.isfinite(reference).all()
    got = _gradient(reversible, x, y)
    assert torch.isfinite(got).all()
    assert float((got - reference).norm() / reference.norm()) <= (1e-4 if dtype == torch.float32 else 1e-10)
    key = str(dtype).replace("torch.", "")
    assert reversible.rebuild_errors[key] == math.inf  # reported, not hidden as 0
    assert reversible.recomputed_segments[key] >= 1
