"""The compiled DenseFormer against depth-weighted averaging written from the paper's equations
(Pagliardini et al. 2024, eq. 1-2; the semantics of epfml/DenseFormer's ``DWAModules`` with
dilation = period = 1: after block k, the tensordot of k+2 weights with the stacked
[embedding, out_1, ..., out_{k+1}]). Same weights, float64, rel <= 1e-6."""

from __future__ import annotations

import pytest
import torch

import formulac

EXAMPLES = formulac.__file__.rsplit("/", 2)[0] + "/examples"


class DepthWeightedAverage:
    """Independent reference: y_{k+1} = sum_{i<=k+1} alpha_k[i] * out_i, out_0 the embedding;
    with ``window``, only the last ``window`` outputs (zeros before the start)."""

    def __init__(self, alphas, window=None):
        self.alphas, self.window = alphas, window

    def run(self, embedding, blocks):
        outputs = [embedding]
        y = embedding
        for k, block in enumerate(blocks):
            outputs.append(y + block(y))  # the block with its own residual
            if self.window is None:
                stacked = torch.stack(outputs)
            else:
                padded = [torch.zeros_like(embedding)] * self.window + outputs
                stacked = torch.stack(padded[-self.window :])
            y = torch.tensordot(self.alphas[k], stacked, dims=1)
        return y


def _network(name, depth):
    torch.manual_seed(0)
    net = formulac.load(f"{EXAMPLES}/{name}").compile(backbone="mlp", depth=depth).double()
    alphas = []
    with torch.no_grad():
        for step in net.layer1:
            step.w.copy_(torch.randn_like(step.w))
            alphas.append(step.w.detach().clone())
    return net, alphas


def _reference(net, alphas, x, window=None):
    blocks = [step.F for step in net.layer1]
    return net.head(DepthWeightedAverage(alphas, window).run(net.stem(x), blocks))


@pytest.mark.parametrize("name, window", [("denseformer.rec", None), ("denseformer_window.rec", 4)])
@pytest.mark.parametrize("depth", [1, 3, 6])
def test_compiled_denseformer_computes_depth_weighted_averages(name, window, depth):
    net, alphas = _network(name, depth)
    if window is None:
        assert [a.numel() for a in alphas] == [k + 2 for k in range(depth)]  # (d+1)(d+2)/2 - 1 in all
    else:
        assert [a.numel() for a in alphas] == [window] * depth
    x = torch.randn(5, 1, 28, 28, dtype=torch.float64)
    got, want = net(x), _reference(net, alphas, x, window)
    assert torch.allclose(got, want, rtol=1e-6, atol=1e-12)
    assert (got - want).abs().max() <= 1e-6 * want.abs().max()


def test_initial_denseformer_is_the_plain_residual_network():
    dense = formulac.load(f"{EXAMPLES}/denseformer.rec").compile(backbone="mlp", depth=4).double()
    plain = formulac.load(f"{EXAMPLES}/resnet.rec").compile(backbone="mlp", depth=4).double()
    state = {k: v for k, v in dense.state_dict().items() if not k.endswith(".w")}
    plain.load_state_dict(state)
    x = torch.randn(3, 1, 28, 28, dtype=torch.float64)
    assert torch.equal(dense(x), plain(x))
    for k, step in enumerate(dense.layer1):
        assert step.w.tolist() == [0.0] * (k + 1) + [1.0]


def test_a_training_step_moves_every_mixing_weight():
    net = formulac.load(f"{EXAMPLES}/denseformer.rec").compile(backbone="mlp", depth=3)
    before = [step.w.detach().clone() for step in net.layer1]
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    x, labels = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
    torch.nn.functional.cross_entropy(net(x), labels).backward()
    assert all(step.w.grad is not None and step.w.grad.abs().sum() > 0 for step in net.layer1)
    optimizer.step()
    assert all(not torch.equal(b, step.w) for b, step in zip(before, net.layer1))


def test_the_mixing_is_one_contraction_per_step():
    source = formulac.load(f"{EXAMPLES}/denseformer.rec").source(backbone="mlp", depth=3)
    assert (
        source.count(
            "torch.tensordot(self.w, torch.stack(b_upto_next[0:2 + self.n]).to(self.w.dtype), dims=1)"
        )
        == 1
    )
    window = formulac.load(f"{EXAMPLES}/denseformer_window.rec").source(backbone="mlp", depth=3)
    assert "b_history" not in window  # the window keeps four outputs, not the history


@pytest.mark.parametrize("backbone", ["cifar-resnet"])
def test_denseformer_compiles_and_runs_on_a_cnn(backbone):
    net = formulac.load(f"{EXAMPLES}/denseformer.rec").compile(backbone=backbone, depth=8)
    out = net(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10) and torch.isfinite(out).all()


class DilatedDepthWeightedAverage:
    """Independent reference with the semantics of epfml/DenseFormer's ``DWAModules(n_blocks,
    dilation, period)``: output j is out_j (out_0 the embedding); after block i, if
    (i+1) % period == 0, the next input is the tensordot of that block's weights with the outputs
    j <= i+1 with j = i+1 (mod dilation), oldest first; otherwise it is out_{i+1} itself."""

    def __init__(self, alphas, dilation, period):
        self.alphas, self.dilation, self.period = alphas, dilation, period

    def run(self, embedding, blocks):
        outputs = [embedding]
        y = embedding
        for i, block in enumerate(blocks):
            outputs.append(y + block(y))
            if (i + 1) % self.period == 0:
                group = [outputs[j] for j in range(i + 2) if j % self.dilation == (i + 1) % self.dilation]
                y = torch.tensordot(self.alphas[i], torch.stack(group), dims=1)
            else:
                y = outputs[-1]
        return y


@pytest.mark.parametrize("depth", [1, 2, 5])
def test_dilated_denseformer_is_dwa_with_dilation_2_and_period_2(depth):
    net, alphas = _network("denseformer_dilated.rec", depth)
    blocks = [b for step in net.layer1 for b in (step.F, step.G)]  # step n: blocks 2n and 2n+1
    by_block = {2 * n + 1: a for n, a in enumerate(alphas)}  # an average after every second block
    assert [a.numel() for a in alphas] == [(i + 1) // 2 + 1 for i in sorted(by_block)]  # DWAModules' sizes
    x = torch.randn(5, 1, 28, 28, dtype=torch.float64)
    want = net.head(DilatedDepthWeightedAverage(by_block, 2, 2).run(net.stem(x), blocks))
    got = net(x)
    assert (got - want).abs().max() <= 1e-6 * want.abs().max()


def test_dilated_denseformer_keeps_only_the_outputs_it_averages():
    source = formulac.load(f"{EXAMPLES}/denseformer_dilated.rec").source(backbone="mlp", depth=4)
    assert "b_history.append(" in source and "c_history" not in source
    step = source.split("def forward(self, x_n, b_history")[1].split("return")[0]
    assert "torch.tensordot(" in step and " for " not in step.split("torch.tensordot(")[1]
