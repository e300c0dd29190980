"""formulac.transform on real models: Hugging Face GPT-2, ViT and BERT from tiny configs (random
weights), and a torchvision-style ResNet written out by hand.

The reference for each model is the model itself: with the formula of its own connection the
transformed model must compute what the original does (float64, relative error <= 1e-6).
Other formulas are checked against the formula iterated by hand over the model's own blocks.
"""

from __future__ import annotations

import pytest
import torch
from transform_models import bert, gpt2, resnet, vit

import formulac

RESIDUAL = "x_<n+1> = x_n + F(x_n)"
SUBLAYERS = "x_<n+1> = x_n + A(x_n) + M(x_n + A(x_n))"
MOMENTUM = "gamma = 0.9\nv_<n+1> = gamma*v_n + (1 - gamma)*F(x_n)\nx_<n+1> = x_n + v_<n+1>"
MOMENTUM_SUBLAYERS = (
    "gamma = 0.9\nv_<n+1> = gamma*v_n + (1 - gamma)*(A(x_n) + M(x_n + A(x_n)))\nx_<n+1> = x_n + v_<n+1>"
)
TWO_STEP = "param a = -0.25\nx_<n+1> = x_n + a*x_<n-1> + F(x_n)"


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def _tokens(batch=2, length=12, seed=1):
    return torch.randint(0, 61, (batch, length), generator=torch.Generator().manual_seed(seed))


def _images(batch=2, seed=1, size=16):
    return torch.randn(
        batch, 3, size, size, generator=torch.Generator().manual_seed(seed), dtype=torch.float64
    )


# -- identity: the model's own connection gives the model back -------------------------------------


@pytest.mark.parametrize(
    ("formula", "blocks"),
    [(RESIDUAL, "residual"), (SUBLAYERS, "gpt2"), (SUBLAYERS, {"A": ("ln_1", "attn"), "M": ("ln_2", "mlp")})],
)
def test_gpt2_own_connection_gives_the_same_logits(formula, blocks):
    model = gpt2().double()
    ids = _tokens()
    new = formulac.transform(model, formula, "transformer.h", blocks=blocks)
    assert isinstance(new, type(model))
    with torch.no_grad():
        expected = model(ids).logits
        got = new(ids).logits
    assert _relative(got, expected) <= 1e-6


@pytest.mark.parametrize(("formula", "blocks"), [(RESIDUAL, "residual"), (SUBLAYERS, "vit")])
def test_vit_own_connection_gives_the_same_logits(formula, blocks):
    model = vit().double()
    images = _images()
    new = formulac.transform(model, formula, blocks=blocks)  # the stack is found
    # vit.encoder.layer in transformers 4, vit.layers in 5
    assert [len(s) for s in new.formula_stacks] == [3]
    with torch.no_grad():
        assert _relative(new(images).logits, model(images).logits) <= 1e-6


def test_bert_whole_layers_as_branches_give_the_same_outputs():
    # BERT is post-norm (LayerNorm after each addition): only whole layers map, as block(x) - x
    model = bert().double()
    ids = _tokens()
    mask = torch.ones_like(ids)
    mask[0, -3:] = 0  # padding: the attention mask reaches every layer's branch
    new = formulac.transform(model, RESIDUAL, "encoder.layer")
    with torch.no_grad():
        expected = model(ids, attention_mask=mask).last_hidden_state
        got = new(ids, attention_mask=mask).last_hidden_state
    assert _relative(got, expected) <= 1e-6


def test_resnet_stages_are_found_and_the_shape_changing_block_runs_as_it_is():
    model = resnet().double()
    images = _images()
    new = formulac.transform(model, RESIDUAL)
    stacks = new.formula_stacks
    assert [(s.path, s.first, len(s.steps)) for s in stacks] == [("layer1", 0, 3), ("layer2", 1, 2)]
    with torch.no_grad():
        assert _relative(new(images), model(images)) <= 1e-6


def test_resnet_post_activation_formula_with_the_branch_as_a_function():
    # torchvision's block is relu(x + f(x)): with f given as a function of the block, the
    # formula of the original ResNet, relu(x + F(x)), is the model itself
    def branch(b, x):
        return b.bn2(b.conv2(b.relu(b.bn1(b.conv1(x)))))

    model = resnet().double()
    images = _images()
    new = formulac.transform(model, "x_<n+1> = relu(x_n + F(x_n))", ["layer1", "layer2"], blocks=branch)
    with torch.no_grad():
        assert _relative(new(images), model(images)) <= 1e-6


# -- other formulas: the formula iterated by hand over the model's blocks ------------------------------


def _first_block_call(model, stack, *inputs):
    """The arguments with which ``model`` calls the first block of ``stack``."""
    seen = []
    handle = stack[0].register_forward_pre_hook(lambda m, a, k: seen.append((a, k)), with_kwargs=True)
    with torch.no_grad():
        model(*inputs)
    handle.remove()
    return seen[0]


def test_gpt2_momentum_follows_the_formula_over_the_blocks():
    model = gpt2().double()
    ids = _tokens()
    new = formulac.transform(model, MOMENTUM, "transformer.h")
    (x, *args), kwargs = _first_block_call(model, model.transformer.h, ids)
    with torch.no_grad():
        v = torch.zeros_like(x)
        for block in model.transformer.h:
            out = block(x, *args, **kwargs)
            branch = (out[0] if isinstance(out, tuple) else out) - x
            v = 0.9 * v + 0.1 * branch
            x = x + v
        expected = model.lm_head(model.transformer.ln_f(x))
        assert _relative(new(ids).logits, expected) <= 1e-6


def test_resnet_two_step_follows_the_formula_over_the_blocks():
    model = resnet().double()
    images = _images()
    new = formulac.transform(model, TWO_STEP, "layer1")
    with torch.no_grad():
        x = model.relu(model.bn1(model.conv1(images)))
        previous = x
        for block in model.layer1:
            x, previous = x + (-0.25) * previous + (block(x) - x), x
        expected = model.fc(torch.flatten(model.avgpool(model.layer2(x)), 1))
        assert _relative(new(images), expected) <= 1e-6


# -- training a few steps -----------------------------------------------------------------------------


def _train(model, batch, loss_of, steps=8, lr=3e-3):
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        loss = loss_of(model, batch)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses


def _lm_loss(model, ids):
    return model(ids, labels=ids).loss


def _vit_loss(model, batch):
    images, labels = batch
    return model(images, labels=labels).loss


@pytest.mark.parametrize(
    ("formula", "blocks", "memory"),
    [
        (MOMENTUM, "residual", "reversible"),
        (TWO_STEP, "residual", "standard"),
        (MOMENTUM_SUBLAYERS, "gpt2", "checkpoint"),
    ],
)
def test_gpt2_transforms_train(formula, blocks, memory):
    model = gpt2()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    new = formulac.transform(model, formula, "transformer.h", blocks=blocks, memory=memory)
    losses = _train(new, _tokens(batch=4, length=16), _lm_loss)
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < 0.9 * losses[0]
    # the user's model is untouched (weights copied)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    if formula == TWO_STEP:  # the learned coefficient moved
        assert float(new.transformer.h.formula.a.detach()) != -0.25


@pytest.mark.parametrize(
    ("formula", "blocks", "memory"),
    [(MOMENTUM_SUBLAYERS, "vit", "reversible"), (TWO_STEP, "residual", "checkpoint")],
)
def test_vit_transforms_train(formula, blocks, memory):
    model = vit()
    images = _images(batch=6).float()
    labels = torch.arange(6) % 5
    new = formulac.transform(model, formula, blocks=blocks, memory=memory)
    losses = _train(new, (images, labels), _vit_loss)
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < 0.9 * losses[0]
