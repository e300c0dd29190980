"""The gpt backbone against Hugging Face's GPT2LMHeadModel (random weights from a GPT2Config,
no download), causality, and the zoo's transformer formulas compiled on it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import transformers
from hypothesis import given, settings
from hypothesis import strategies as st

import formulac
from formulac import hf
from formulac.errors import UsageError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PRE_NORM = "h_<n+1> = x_n + A(x_n)\nx_<n+1> = h_<n+1> + M(h_<n+1>)\n"
WHOLE_BLOCK = "x_<n+1> = x_n + F(x_n)\n"


def _reference(depth, dim, heads, context, vocab, seed=0):
    config = transformers.GPT2Config(
        vocab_size=vocab,
        n_positions=context,
        n_embd=dim,
        n_layer=depth,
        n_head=heads,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    torch.manual_seed(seed)
    model = transformers.GPT2LMHeadModel(config).eval()
    # random LayerNorm parameters and biases too (GPT-2 initialises them to 1 and 0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "ln" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    return model


def _small_gpt(formula=PRE_NORM, **options):
    """``formula`` on a small gpt: depth 1, 8 dimensions, 2 heads, context 6 and vocabulary 5
    unless ``options`` say otherwise."""
    return formulac.compile(
        formula,
        backbone="gpt",
        **{"depth": 1, "dim": 8, "heads": 2, "context": 6, "vocab_size": 5, **options},
    )


def _logits_before_and_after_a_change(net, vocab: int, length: int, cut: int):
    """The logits of two random sequences, and of the same sequences changed from ``cut`` on."""
    tokens = torch.randint(0, vocab, (2, length))
    changed = tokens.clone()
    changed[:, cut:] = (changed[:, cut:] + 1) % vocab
    with torch.no_grad():
        return net(tokens), net(changed)


def _relative(a, b):
    return ((a - b).norm() / b.norm()).item()


@settings(max_examples=6, deadline=None)
@given(
    depth=st.integers(1, 3),
    heads=st.sampled_from([1, 2, 4]),
    head_dim=st.sampled_from([4, 8]),
    context=st.integers(4, 24),
    vocab=st.integers(2, 70),
    formula=st.sampled_from([PRE_NORM, WHOLE_BLOCK]),
    seed=st.integers(0, 1000),
)
def test_pre_norm_formula_is_gpt2(depth, heads, head_dim, context, vocab, formula, seed):
    dim = heads * head_dim
    reference = _reference(depth, dim, heads, context, vocab, seed)
    net = formulac.compile(
        formula, backbone="gpt", depth=depth, dim=dim, heads=heads, context=context, vocab_size=vocab
    ).eval()
    hf.load(net, reference.state_dict())
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, vocab, (3, context), generator=g)
    with torch.no_grad():
        ours, theirs = net(tokens), reference(tokens).logits
    assert ours.shape == (3, context, vocab)
    assert _relative(ours, theirs) <= 1e-5
    # shorter sequences than the context, as generation feeds them
    with torch.no_grad():
        assert _relative(net(tokens[:, :3]), reference(tokens[:, :3]).logits) <= 1e-5


def test_logits_are_causal_and_the_head_is_tied():
    net = _small_gpt(depth=2, dim=16, context=10, vocab_size=13).eval()
    a, b = _logits_before_and_after_a_change(net, 13, 10, 6)
    assert torch.equal(a[:, :6], b[:, :6])  # the future does not reach the past
    assert not torch.allclose(a[:, 6:], b[:, 6:])
    assert net.token_embedding.weight.shape == (13, 16)
    assert "lm_head.weight" not in net.state_dict()
    with pytest.raises(ValueError, match="exceed the context"):
        net(torch.zeros(1, 11, dtype=torch.long))


def test_untied_head_is_refused():
    reference = _reference(1, 8, 2, 8, 11)
    state = dict(reference.state_dict())
    state["lm_head.weight"] = state["transformer.wte.weight"] + 1
    net = _small_gpt(context=8, vocab_size=11)
    with pytest.raises(UsageError, match="ties its LM head"):
        hf.load(net, state)


@pytest.mark.parametrize("path", sorted((EXAMPLES / "transformers").glob("*.rec")), ids=lambda p: p.stem)
def test_every_transformer_formula_of_the_zoo_compiles_on_gpt(path):
    net = _small_gpt(formulac.load(path), depth=2, dim=16, context=8, vocab_size=7)
    out = net(torch.randint(0, 7, (2, 8)))
    assert out.shape == (2, 8, 7) and torch.isfinite(out).all()


def test_options_positions_none_and_exact_gelu():
    net = _small_gpt(positions="none", gelu="exact").eval()
    assert not any("position" in key for key in net.state_dict())
    tokens = torch.randint(0, 5, (2, 6))
    with torch.no_grad():
        out = net(tokens)
        # without positions, the first position sees only its own token: equal tokens, equal logits
        same = torch.full((1, 1), int(tokens[0, 0]))
        torch.testing.assert_close(net(same)[0, 0], out[0, 0])
    for bad, message in (
        ({"positions": "rope"}, "positions"),
        ({"gelu": "relu"}, "gelu"),
        ({"heads": 3}, "divisible"),
        ({"mlp_ratio": float("inf")}, "mlp_ratio"),
    ):
        with pytest.raises(UsageError, match=message):
            _small_gpt(**bad)


def test_concatenating_formula_ends_wider_and_still_predicts_tokens_causally():
    # one step of DenseNet (more are refused: blocks read dim features) ends at 2*dim; the tied
    # head reads dim
    net = _small_gpt(formulac.load(EXAMPLES / "densenet.rec"), vocab_size=9).eval()
    a, b = _logits_before_and_after_a_change(net, 9, 6, 4)
    assert a.shape == (2, 6, 9) and torch.isfinite(a).all()
    assert torch.equal(a[:, :4], b[:, :4])
    assert net.final_norm.normalized_shape[0] == 16
    assert net.head_projection.weight.shape == (8, 16)
