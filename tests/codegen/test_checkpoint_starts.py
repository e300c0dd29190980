"""memory="checkpoint" for formulas that read a start at every step (x0-mixing's ``x_0``, a
``v_0``): the start is kept for the whole stage and handed to every checkpointed segment as it
is, so gradients equal the standard network's in float64 (rel < 1e-8), through ``x_0`` back into
the stem included. ``memory="reversible"`` still refuses them, pointing at checkpoint.

The mixing weights are drawn away from their initial values (x0-mixing starts at b_n = 0, where
no gradient would pass through ``x_0``), and segments of one step make ``x_0`` cross every
segment boundary: a runtime that handed a segment its own first state as ``x_0`` would differ.
"""

from __future__ import annotations

import pytest
import torch
from fixtures_path import REPO
from hypothesis import given, settings
from hypothesis import strategies as st

import formulac
from formulac import UsageError

X0_MIXING = (REPO / "examples" / "transformers" / "x0_mixing.rec").read_text()
READS_V0 = "v_0 = x_0\nv_<n+1> = v_n + F(x_n)\nx_<n+1> = x_n + G(v_<n+1>) + 0.5*v_0\n"
# (formula, backbone options, input, the stem's weight)
CASES = {
    "gpt": (
        X0_MIXING,
        {"backbone": "gpt", "depth": 4, "dim": 16, "heads": 2, "context": 8, "vocab_size": 11},
        lambda g: torch.randint(0, 11, (3, 8), generator=g),
        "token_embedding.weight",
    ),
    "vit": (
        X0_MIXING,
        {"backbone": "vit", "depth": 4, "dim": 16, "heads": 2, "patch": 4, "in_channels": 1}
        | {"num_classes": 3, "input_size": 8},
        lambda g: torch.randn(3, 1, 8, 8, generator=g, dtype=torch.float64),
        "patch_embed.weight",
    ),
    # stages of 3 steps whose first step changes shape: x_0 is the projected stage input
    "cifar-resnet v_0": (
        READS_V0,
        {"backbone": "cifar-resnet", "depth": 20},
        lambda g: torch.randn(2, 3, 8, 8, generator=g, dtype=torch.float64),
        "conv1.weight",
    ),
}


def _perturbed(net: torch.nn.Module, seed: int) -> torch.nn.Module:
    """The per-step scalars (a_n, b_n) drawn from N(1, 0.5): x_0 weighs in every step."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            if p.dim() == 0:
                p.copy_(1 + 0.5 * torch.randn((), generator=g, dtype=p.dtype))
    return net


def _gradients(net, x) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    net.zero_grad()
    out = net(x)
    (out.square().mean() + out.sum()).backward()
    return out.detach(), {k: p.grad.clone() for k, p in net.named_parameters() if p.grad is not None}


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).norm().item() / max(b.norm().item(), 1e-300)


@pytest.mark.parametrize("case", sorted(CASES))
@settings(max_examples=2, deadline=None)
@given(seed=st.integers(0, 2**16), segment=st.sampled_from([None, 1, 2]))
def test_checkpoint_of_a_formula_reading_x0_gives_standard_gradients(case, seed, segment):
    text, options, make_input, stem = CASES[case]
    formula = formulac.parse(text)
    torch.manual_seed(seed)
    standard = _perturbed(formula.compile(**options), seed).double().train()
    checkpointed = formula.compile(**options, memory="checkpoint").double().train()
    checkpointed.load_state_dict(standard.state_dict())
    checkpointed.checkpoint_segment = segment
    x = make_input(torch.Generator().manual_seed(seed))
    out, grads = _gradients(standard, x)
    out_c, grads_c = _gradients(checkpointed, x)
    assert _relative(out_c, out) < 1e-8
    assert grads.keys() == grads_c.keys() == {k for k, _ in standard.named_parameters()}
    for key, g in grads.items():
        assert _relative(grads_c[key], g) < 1e-8, key
    assert grads[stem].norm() > 0  # the gradient reaches the stem


def test_the_checkpointed_stage_recomputes_its_steps():
    """Checkpoint is not the standard forward in disguise: the backward runs the steps again."""
    text, options, make_input, _ = CASES["gpt"]
    net = _perturbed(formulac.parse(text).compile(**options, memory="checkpoint"), 0).double().train()
    net.checkpoint_segment = 1
    calls = []
    for step in net.layers:
        step.A.register_forward_hook(lambda *_: calls.append(1))
    out = net(make_input(torch.Generator().manual_seed(0)))
    forward_calls = len(calls)
    out.sum().backward()
    assert forward_calls == len(net.layers) and len(calls) == 2 * len(net.layers)


def test_reversible_still_refuses_a_formula_reading_x0_and_points_at_checkpoint():
    with pytest.raises(
        UsageError, match="memory='reversible' does not support .* read x_0 .* memory='checkpoint'"
    ):
        formulac.parse(X0_MIXING).compile(**CASES["gpt"][1], memory="reversible")
