"""DenseFormer with dilation k and period p chosen apart (the paper's k x p DenseFormer, written
with conditions [a == b] on the step and the sum's variable) against an independent reference
with the semantics of epfml/DenseFormer's ``DWAModules(n_blocks, dilation, period)``: same
weights, float64, rel <= 1e-6; the weights a step holds and the outputs a stage keeps."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import formulac
from formulac.cli import main
from formulac.ir import learned_coefficient_counts

EXAMPLES = formulac.__file__.rsplit("/", 2)[0] + "/examples"


def dilated_formula(dilation: int, period: int) -> str:
    return (
        "param w_<n,i> = [i == n+1]\n"
        "b_0 = x_0\n"
        "b_<n+1> = x_n + F(x_n)\n"
        f"x_<n+1> = [(n+1) % {period} == 0]*sum(i=0..n+1, [i % {dilation} == (n+1) % {dilation}]*w_<n,i>*b_i)"
        f" + (1 - [(n+1) % {period} == 0])*b_<n+1>\n"
    )


class DWAModulesReference:
    """DWAModules' forward, rewritten: one accumulator per residue class of the output index
    (out_0 the embedding); after block i, out_{i+1} joins accumulator (i+1) % dilation, and if
    (i+1) % period == 0 the next input is the tensordot of that block's weights with the
    accumulator's outputs so far (oldest first); otherwise it is out_{i+1}."""

    def __init__(self, alphas: dict, dilation: int, period: int):
        self.alphas, self.dilation, self.period = alphas, dilation, period

    @staticmethod
    def sizes(n_blocks: int, dilation: int, period: int) -> list[int]:
        """DWAModules' weight count after each block (0 where it holds no ``nn.Linear``)."""
        return [(i + 1 + dilation) // dilation if (i + 1) % period == 0 else 0 for i in range(n_blocks)]

    def run(self, embedding, blocks):
        accumulators = [[] for _ in range(self.dilation)]
        accumulators[0].append(embedding)
        x = embedding
        for i, block in enumerate(blocks):
            out = x + block(x)  # DWAModules' blocks carry their own residual
            accumulators[(i + 1) % self.dilation].append(out)
            if (i + 1) % self.period == 0:
                x = torch.tensordot(
                    self.alphas[i], torch.stack(accumulators[(i + 1) % self.dilation]), dims=1
                )
            else:
                x = out
        return x


def _size(step) -> int:
    return 0 if step.w is None else step.w.numel()


def _network(text: str, depth: int, backbone: str = "mlp"):
    torch.manual_seed(0)
    net = formulac.parse(text).compile(backbone=backbone, depth=depth).double()
    alphas = {}
    with torch.no_grad():
        for i, step in enumerate(net.layer1):
            if step.w is not None:  # a step whose conditions select nothing holds no weights
                step.w.copy_(torch.randn_like(step.w))
                alphas[i] = step.w.detach().clone()
    return net, alphas


@settings(max_examples=12, deadline=None)
@given(dilation=st.integers(1, 5), period=st.integers(1, 6), depth=st.integers(1, 13))
def test_dilated_periodic_denseformer_is_dwa_modules(dilation, period, depth):
    net, alphas = _network(dilated_formula(dilation, period), depth)
    assert [_size(step) for step in net.layer1] == DWAModulesReference.sizes(depth, dilation, period)
    x = torch.randn(4, 1, 28, 28, dtype=torch.float64)
    blocks = [step.F for step in net.layer1]
    want = net.head(DWAModulesReference(alphas, dilation, period).run(net.stem(x), blocks))
    got = net(x)
    assert (got - want).abs().max() <= 1e-6 * want.abs().max()


def test_the_4x5_example_holds_dwa_modules_weights_and_starts_as_the_plain_network():
    formula = formulac.load(f"{EXAMPLES}/denseformer_4x5.rec")
    dense = formula.compile(backbone="mlp", depth=12).double()
    assert [_size(step) for step in dense.layer1] == DWAModulesReference.sizes(12, 4, 5)
    assert learned_coefficient_counts(formula.rec, 12) == {"w_<n,i>": 2 + 3}
    plain = formulac.load(f"{EXAMPLES}/resnet.rec").compile(backbone="mlp", depth=12).double()
    plain.load_state_dict({k: v for k, v in dense.state_dict().items() if not k.endswith(".w")})
    x = torch.randn(3, 1, 28, 28, dtype=torch.float64)
    assert torch.equal(dense(x), plain(x))


def _kept(net) -> set[int]:
    """The output indices the stage keeps: those that some step's average reads."""
    return {j for step in net.layer1 for j in step.w_reads}


@pytest.mark.parametrize(
    "dilation, period, depth, kept",
    [
        (4, 5, 12, {1, 5, 2, 6, 10}),  # averages after blocks 5 and 10
        (4, 2, 12, {0, 2, 4, 6, 8, 10, 12}),  # only even outputs are ever read
        (3, 2, 8, {2, 1, 4, 0, 3, 6, 5, 8}),  # averages after blocks 2, 4, 6, 8: output 7 unread
    ],
)
def test_a_stage_keeps_only_the_outputs_its_averages_read(dilation, period, depth, kept):
    net, _ = _network(dilated_formula(dilation, period), depth)
    assert _kept(net) == kept
    source = formulac.parse(dilated_formula(dilation, period)).source(backbone="mlp", depth=depth)
    assert "b_history.append(b_n if len(b_history) in b_kept else None)" in source
    step = source.split("def forward(self, x_n, b_history")[1].split("return")[0]
    assert step.count("torch.tensordot(") == 1


BACKBONES = {
    "vit": ({}, lambda: torch.randn(2, 3, 32, 32)),
    "gpt": ({"vocab_size": 32, "context": 8, "dim": 32, "heads": 2}, lambda: torch.randint(0, 32, (2, 8))),
    "cifar-resnet": ({}, lambda: torch.randn(2, 3, 32, 32)),
}


@pytest.mark.parametrize("backbone", list(BACKBONES))
def test_the_4x5_example_compiles_runs_and_trains_a_step_on(backbone):
    options, example = BACKBONES[backbone]
    depth = 11 if backbone != "cifar-resnet" else 32  # cifar-resnet: 3 stages of 5 steps
    net = formulac.load(f"{EXAMPLES}/denseformer_4x5.rec").compile(backbone=backbone, depth=depth, **options)
    steps = [module for module in net.modules() if hasattr(module, "w_reads")]
    averaging = [step for step in steps if step.w is not None]
    assert all(not step.w_reads for step in steps if step.w is None)
    assert averaging and all(step.w.numel() == (step.n + 1) // 4 + 1 for step in averaging)
    assert all((step.n + 1) % 5 == 0 for step in averaging)
    torch.manual_seed(0)
    out = net(example())
    assert torch.isfinite(out).all()
    out.float().square().mean().backward()
    assert all(step.w.grad is not None and step.w.grad.abs().sum() > 0 for step in averaging)


def _dwa_effective_weights(alphas: dict, depth: int, dilation: int, period: int):
    """Weight of block i's output F_i in the input of block t+1, by unrolling DWAModules' rule on
    coefficient vectors (numpy, no formulac code)."""
    outputs = [np.zeros(depth)]  # out_0, the embedding: no block
    x, rows = np.zeros(depth), []
    for i in range(depth):
        out = x.copy()
        out[i] += 1
        outputs.append(out)
        if (i + 1) % period == 0:
            group = [outputs[j] for j in range(i + 2) if j % dilation == (i + 1) % dilation]
            x = sum(a * o for a, o in zip(alphas[i], group))
        else:
            x = out
        rows.append(x)
    return np.array(rows)


def test_learned_reads_the_selected_weights_of_a_trained_run(capsys, tmp_path):
    formula = tmp_path / "denseformer_4x2.rec"
    formula.write_text(dilated_formula(4, 2))
    run_dir = tmp_path / "run"
    tiny = ["--data", "synthetic:1x8x8:4", "--limit-train", "96", "--limit-test", "48", "--epochs", "1"]
    tiny += ["--batch-size", "32", "--lr", "0.05", "--backbone", "mlp", "--depth", "6", "-q"]
    assert main(["train", str(formula), *tiny, "--out", str(run_dir)]) == 0
    capsys.readouterr()
    assert main(["learned", str(run_dir), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)["mixing"]["layer1"]
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)["model"]
    alphas = {t: state[f"layer1.{t}.w"].double().numpy() for t in range(6) if f"layer1.{t}.w" in state}
    assert sorted(alphas) == [1, 3, 5] and [len(a) for a in alphas.values()] == [1, 2, 2]
    np.testing.assert_allclose(
        report["effective_weights"]["F"], _dwa_effective_weights(alphas, 6, 4, 2), rtol=1e-9, atol=1e-12
    )
    assert report["unmoved"] == []
