"""Random formulas with a pair parameter in a history sum, wired over random linear blocks,
against a float64 iteration of the same formula written here (no formulac code in the
reference): windows and whole-history sums, limits reaching before step 0, sums that are empty
at the first steps, reads of another state at n+1, bodies that are a single product (computed
as one contraction) and bodies that are not (computed term by term)."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import formulac

WIDTH, BATCH = 4, 3
LOWS = {"0": lambda t: 0, "1": lambda t: 1, "n-2": lambda t: t - 2, "n-1": lambda t: t - 1, "n": lambda t: t}


@st.composite
def formulas(draw):
    low = draw(st.sampled_from(sorted(LOWS)))
    reach_next = draw(st.booleans())  # the sum reads b up to b_<n+1>
    shift = draw(st.sampled_from([0, -1])) if not reach_next else 0
    plain_body = draw(st.booleans())  # w*b_i (one contraction) or w*b_i + b_i/2 (term by term)
    init = draw(st.sampled_from(["[i == n]", "1/(n+2)", "[i == n-1] + 1/2"]))
    high = "n+1" if reach_next else "n"
    read = "b_i" if shift == 0 else "b_<i-1>"
    body = f"w_<n,i>*{read}" if plain_body else f"w_<n,i>*{read} + {read}/2"
    text = (
        f"param w_<n,i> = {init}\nb_0 = x_0\nb_<n+1> = x_n + F(x_n)\n"
        f"x_<n+1> = x_n/4 + sum(i={low}..{high}, {body})\n"
    )
    return text, LOWS[low], reach_next, shift, plain_body


def _reference(x0, blocks, weights, low, reach_next, shift, plain_body):
    x = {0: x0}
    b = {0: x0}

    def value(states, j, default):
        return states.get(j, default if j <= 0 else None)

    for t, block in enumerate(blocks):
        xt = x[t]
        b[t + 1] = xt + block(xt)
        total = torch.zeros_like(x0)
        first, last = low(t), t + 1 if reach_next else t
        for position, i in enumerate(range(first, last + 1)):
            term = value(b, i + shift, torch.zeros_like(x0))
            total = total + weights[t][position] * term + (0 if plain_body else term / 2)
        x[t + 1] = xt / 4 + total
    return x[len(blocks)]


@settings(max_examples=40, deadline=None, derandomize=True)
@given(formulas(), st.integers(1, 5), st.integers(0, 2**16))
def test_wired_pair_sums_match_a_direct_iteration(formula, depth, seed_value):
    text, low, reach_next, shift, plain_body = formula
    torch.manual_seed(seed_value)
    blocks = [torch.nn.Linear(WIDTH, WIDTH, bias=False).double() for _ in range(depth)]
    net = formulac.parse(text).wire({"F": blocks}).double()
    weights = []
    with torch.no_grad():
        for step in net.steps:
            step.w.copy_(torch.randn_like(step.w))
            weights.append(step.w.clone())
    x0 = torch.randn(BATCH, WIDTH, dtype=torch.float64)
    want = _reference(x0, blocks, weights, low, reach_next, shift, plain_body)
    got = net(x0)
    assert torch.allclose(got, want, rtol=1e-9, atol=1e-12), text
