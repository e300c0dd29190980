"""Every mixing example compiles on mlp, cifar-resnet and vit and trains a step there: the loss
is finite and every learned mixing coefficient receives a gradient."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import formulac

EXAMPLES = formulac.__file__.rsplit("/", 2)[0] + "/examples"
MIXING = [
    name
    for name in Path(EXAMPLES, "learned_mixing.txt").read_text(encoding="utf-8").split("\n")
    if name and not name.startswith("#")
]
INPUTS = {"mlp": (1, 28, 28), "cifar-resnet": (3, 32, 32), "vit": (3, 32, 32)}
DEPTHS = {"mlp": 3, "cifar-resnet": 8, "vit": 2}


@pytest.mark.parametrize("backbone", list(INPUTS))
@pytest.mark.parametrize("example", MIXING)
def test_mixing_example_trains_a_step(example, backbone):
    torch.manual_seed(0)
    rec = formulac.load(f"{EXAMPLES}/{example}.rec")
    net = rec.compile(backbone=backbone, depth=DEPTHS[backbone])
    mixing = {name: p for name, p in net.named_parameters() if name.rsplit(".", 1)[-1] in _coefficients(rec)}
    assert mixing, "the compiled network holds the formula's coefficients"
    x, labels = torch.randn(4, *INPUTS[backbone]), torch.randint(0, 10, (4,))
    loss = torch.nn.functional.cross_entropy(net(x), labels)
    loss.backward()
    assert torch.isfinite(loss)
    without_gradient = [
        name for name, p in mixing.items() if p.grad is None or not torch.isfinite(p.grad).all()
    ]
    assert not without_gradient


def _coefficients(rec) -> set[str]:
    """The parameters the network holds: a stream formula's are its compact form's (res_n[4,4])."""
    held = rec.rec.compact if rec.rec.compact is not None else rec.rec
    return set(held.params)


@pytest.mark.parametrize("example", ["hyper_connections_k4", "mhc_k4"])
def test_stream_example_trains_a_step_on_gpt(example):
    torch.manual_seed(0)
    rec = formulac.load(f"{EXAMPLES}/{example}.rec")
    net = rec.compile(backbone="gpt", depth=2, vocab_size=32, context=8, dim=32, heads=2)
    tokens = torch.randint(0, 32, (3, 8))
    logits = net(tokens)
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 32), tokens[:, 1:].reshape(-1))
    loss.backward()
    assert torch.isfinite(loss)
    mixing = [p for name, p in net.named_parameters() if name.rsplit(".", 1)[-1] in _coefficients(rec)]
    assert len(mixing) == 2 * 3  # res, pre and post at each of the 2 steps
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in mixing)


@pytest.mark.parametrize("example", MIXING)
def test_analysis_counts_the_learned_coefficients_the_network_holds(example):
    rec = formulac.load(f"{EXAMPLES}/{example}.rec")
    depth = 7
    (note,) = [
        n for n in rec.analyze(depth=depth, params="init").notes if n.startswith("learned coefficients")
    ]
    net = rec.compile(backbone="mlp", depth=depth)
    held = sum(
        p.numel() for name, p in net.named_parameters() if name.rsplit(".", 1)[-1] in _coefficients(rec)
    )
    assert note.endswith(f"; {held} in all")
