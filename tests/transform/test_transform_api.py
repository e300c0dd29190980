"""formulac.transform: memory modes (gradients and saved bytes), coefficients and state_dict
keys, shared or copied weights, ``info()``, and the errors a user can cause."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings
from hypothesis import strategies as st
from saved_memory import saved_bytes
from transform_models import MLPBlock, gpt2, mlp_stack, resnet, vit

import formulac
from formulac.errors import FormulacError, UsageError

RESIDUAL = "x_<n+1> = x_n + F(x_n)"
MOMENTUM = "gamma = 0.9\nv_<n+1> = gamma*v_n + (1 - gamma)*F(x_n)\nx_<n+1> = x_n + v_<n+1>"
MOMENTUM_SUBLAYERS = (
    "gamma = 0.9\nv_<n+1> = gamma*v_n + (1 - gamma)*(A(x_n) + M(x_n + A(x_n)))\nx_<n+1> = x_n + v_<n+1>"
)
LM = "param k_n = -0.05\nx_<n+1> = (1 - k_n)*x_n + k_n*x_<n-1> + F(x_n)"


def _relative(a, b) -> float:
    return float((a - b).norm() / b.norm())


def _gradients(model, loss_of):
    model.zero_grad()
    loss_of(model).backward()
    return {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}


# -- memory modes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "formula", "blocks", "loss_of"),
    [
        (gpt2, MOMENTUM, "residual", lambda m: m(_ids(), labels=_ids()).loss),
        (vit, MOMENTUM_SUBLAYERS, "vit", lambda m: m(_pixels(), labels=torch.tensor([1, 3])).loss),
        # a model that calls its nn.Sequential stages; batch norm in training mode
        (resnet, MOMENTUM, "residual", lambda m: m(_pixels(batch=4)).square().mean()),
    ],
)
@pytest.mark.parametrize("memory", ["reversible", "checkpoint"])
def test_memory_modes_give_the_standard_gradients(build, formula, blocks, loss_of, memory):
    model = build().double()
    standard = formulac.transform(model, formula, blocks=blocks)
    other = formulac.transform(model, formula, blocks=blocks, memory=memory)
    expected = _gradients(standard.train(), loss_of)
    got = _gradients(other.train(), loss_of)
    assert expected.keys() == got.keys() and len(got) == len(list(model.parameters()))
    for key, g in expected.items():
        assert _relative(got[key], g) <= 1e-6, key


def _ids():
    return torch.randint(0, 61, (2, 10), generator=torch.Generator().manual_seed(3))


def _pixels(batch=2):
    return torch.randn(batch, 3, 16, 16, generator=torch.Generator().manual_seed(3), dtype=torch.float64)


def test_reversible_really_saves_less():
    model = mlp_stack(depth=16, width=32).train()
    x = torch.randn(64, 32, generator=torch.Generator().manual_seed(0))
    transformed = formulac.transform(model, MOMENTUM)
    standard = saved_bytes(transformed, lambda: transformed(x).sum())
    reversible = formulac.transform(model, MOMENTUM, memory="reversible")
    rebuilt = saved_bytes(reversible, lambda: reversible(x).sum())
    # 16 blocks each save about 3 rows of activations; reversible keeps a few states
    assert rebuilt <= 0.2 * standard
    predicted = {e.mode: e.bytes_per_image for e in reversible.info(x).memory_estimates}
    assert predicted["reversible"] < 0.5 * predicted["standard"]
    assert predicted["checkpoint"] < predicted["standard"]


# -- the formula over a plain stack, checked by iteration -----------------------------------------------


@settings(max_examples=12, deadline=None)
@given(a=st.floats(-0.6, 0.6), depth=st.integers(1, 5))
def test_a_free_coefficient_is_bound_by_keyword(a, depth):
    model = mlp_stack(depth=depth, width=8).double()
    x = torch.randn(3, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    new = formulac.transform(model, "x_<n+1> = x_n + a*x_<n-1> + F(x_n)", "layers", a=a)
    with torch.no_grad():
        current, previous = x, x
        for layer in model.layers:
            current, previous = current + a * previous + layer.branch(current), current
        assert torch.allclose(new(x), model.head(current), rtol=1e-10, atol=1e-12)


def test_a_named_branch_submodule_is_the_block_function():
    model = mlp_stack(depth=4, width=8).double()
    x = torch.randn(3, 8, dtype=torch.float64)
    by_name = formulac.transform(model, MOMENTUM, blocks="branch")
    by_difference = formulac.transform(model, MOMENTUM)
    with torch.no_grad():
        assert _relative(by_name(x), by_difference(x)) <= 1e-12


# -- coefficients, keys, weights ---------------------------------------------------------------------------


def test_learned_coefficients_are_parameters_with_documented_keys():
    model = mlp_stack(depth=4, width=8)
    new = formulac.transform(model, LM)
    original = set(model.state_dict())
    keys = set(new.state_dict())
    assert original <= keys
    assert keys - original == {f"layers.formula.k.{i}" for i in range(4)}
    info = new.info()
    assert info.parameters_added == 4
    assert info.parameters == sum(p.numel() for p in model.parameters()) + 4
    assert info.stacks[0].coefficient_keys == tuple(f"layers.formula.k.{i}" for i in range(4))
    # a state_dict of the original loads into the transformed model (only the coefficients missing)
    result = new.load_state_dict(model.state_dict(), strict=False)
    assert set(result.missing_keys) == keys - original and not result.unexpected_keys
    assert "formula" in str(info) and "4 added" in str(info)
    assert info.memory_estimates is None  # no example given: nothing profiled


def test_copied_weights_leave_the_model_alone_and_shared_weights_train_it():
    model = mlp_stack(depth=3, width=8)
    x = torch.randn(5, 8)
    before = [p.detach().clone() for p in model.parameters()]
    copied = formulac.transform(model, MOMENTUM)
    shared = formulac.transform(model, MOMENTUM, weights="share")
    assert all(a is not b for a, b in zip(copied.parameters(), model.parameters()))
    assert all(a is b for a, b in zip(shared.parameters(), model.parameters()))
    for new in (copied, shared):
        torch.optim.SGD(new.parameters(), lr=0.1).zero_grad()
        new(x).sum().backward()
        torch.optim.SGD(new.parameters(), lr=0.1).step()
        changed = [not torch.equal(a, b) for a, b in zip(before, model.parameters())]
        assert any(changed) == (new is shared)
    assert isinstance(model.layers, nn.ModuleList)  # the user's model keeps its own stack


# -- errors ------------------------------------------------------------------------------------------------


class TwoKinds(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.ModuleList(MLPBlock(4) for _ in range(2))
        self.decoder = nn.Sequential(*[nn.Sequential(nn.Linear(4, 4), nn.ReLU()) for _ in range(2)])


@pytest.mark.parametrize(
    ("model", "formula", "kwargs", "message"),
    [
        (nn.Sequential(nn.Linear(4, 4), nn.ReLU()), RESIDUAL, {}, "found no stack of blocks in Sequential"),
        (TwoKinds(), RESIDUAL, {}, "among: encoder (2 x MLPBlock), decoder (2 x Sequential)"),
        (
            gpt2(),
            RESIDUAL,
            {"stacks": "transformer.blocks"},
            "no submodule 'transformer.blocks' (stacks found: transformer.h (3 x GPT2Block))",
        ),
        (
            gpt2(),
            RESIDUAL,
            {"stacks": "transformer.wte"},
            "'transformer.wte' is a Embedding, not an nn.ModuleList",
        ),
        (gpt2(), MOMENTUM_SUBLAYERS, {}, "the formula has blocks A, M; say which part"),
        (
            gpt2(),
            MOMENTUM_SUBLAYERS,
            {"blocks": {"A": "attn", "F": "mlp"}},
            "no mapping for M; the formula has no block F",
        ),
        (
            gpt2(),
            MOMENTUM_SUBLAYERS,
            {"blocks": {"A": ("ln_1", "attention"), "M": "mlp"}},
            "has no submodule 'attention' for A",
        ),
        (
            gpt2(),
            RESIDUAL,
            {"memory": "reversible"},
            "memory='reversible' needs a formula whose steps can run backward",
        ),
        (gpt2(), "x_<n+1> = 1/(n+1)*sum(i=0..n, x_i) + F(x_n)", {}, "does not support yet"),
        (gpt2(), MOMENTUM, {"weights": "borrow"}, "weights='borrow'"),
        (gpt2(), "x_<n+1> = x_n + a*F(x_n)", {}, "free symbol a has no value"),
        (gpt2(), "x_<n+1> = cat(x_n, F(x_n))", {}, "widens the stream"),
        (gpt2(), RESIDUAL, {"stacks": 3}, "takes a dotted path or a list of them, not 3"),
    ],
)
def test_mistakes_are_one_clear_error(model, formula, kwargs, message):
    with pytest.raises(UsageError) as error:
        formulac.transform(model, formula, **kwargs)
    assert message in str(error.value)
    assert isinstance(error.value, FormulacError)


def test_a_block_that_changes_the_shape_is_refused_when_it_runs():
    class Widen(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(4, 6)

        def forward(self, x):
            return self.linear(x)

    model = nn.Sequential(nn.Sequential(Widen(), Widen()))
    new = formulac.transform(model, RESIDUAL)
    with pytest.raises(UsageError, match=r"block 0\.0 maps shape \(2, 4\) to \(2, 6\)"):
        new(torch.randn(2, 4))
