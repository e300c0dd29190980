"""Compiled networks against their references: published parameter counts, torchvision's
layout and golden logits, the hand-written LM-ResNet and Momentum ResNet, every zoo formula
on two backbones, and ``torch.compile``.
"""

from __future__ import annotations

import pytest
import reference_models as ref
import torch
from fixtures_path import REPO, TORCHVISION, assert_matches_golden, load_fixture

import formulac
from formulac import UsageError

EXAMPLES = REPO / "examples"
RESNET = "x_<n+1> = relu(x_n + F(x_n))"
LM_BRIEF = "param k_n = 1.05\nx_<n+1> = k_n*x_n + (1 - k_n)*x_<n-1> + F(x_n)"


def count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def on_meta(*args, **kwargs):
    with torch.device("meta"):
        return formulac.compile(*args, **kwargs)


# ------------------------------------------------------------------------------------------
# exactness: published counts, torchvision layout, golden logits


@pytest.mark.parametrize(
    "depth, expected", [(20, 269_722), (32, 464_154), (44, 658_586), (56, 853_018), (110, 1_727_962)]
)
def test_cifar_resnet_published_counts(depth, expected):
    model = on_meta(RESNET, backbone="cifar-resnet", depth=depth, shortcut="A", num_classes=10)
    assert count(model) == expected


def test_torchvision_fixture_lists_every_model():
    assert set(load_fixture("torchvision_resnets.json")["models"]) == set(TORCHVISION)


@pytest.mark.parametrize("model_name", sorted(TORCHVISION))
def test_imagenet_resnet_is_torchvision(model_name):
    expected = load_fixture("torchvision_resnets.json")["models"][model_name]
    depth, options = TORCHVISION[model_name]
    model = on_meta(RESNET, backbone="imagenet-resnet", depth=depth, **options)
    assert count(model) == expected["num_parameters"]
    got = [[k, list(v.shape)] for k, v in model.state_dict().items()]
    assert [k for k, _ in got] == [k for k, _ in expected["state_dict"]]  # keys, in order
    assert got == expected["state_dict"]  # and shapes


@pytest.mark.parametrize("model_name", ["resnet18", "resnet34"])
def test_imagenet_resnet_golden_logits(model_name):
    depth, options = TORCHVISION[model_name]
    model = formulac.compile(RESNET, backbone="imagenet-resnet", depth=depth, **options)
    assert_matches_golden(ref.deterministic_weights_(model), model_name)


def _same_keys_and_shapes(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    assert [v.shape for v in sa.values()] == [v.shape for v in sb.values()]


def _compare(compiled, hand, x):
    for mode in (True, False):  # batch statistics, then running statistics
        compiled.train(mode), hand.train(mode)
        with torch.no_grad():
            torch.testing.assert_close(compiled(x), hand(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shortcut", ["A", "B"])
def test_resnet_matches_hand_written(shortcut):
    torch.manual_seed(0)
    hand = ref.deterministic_weights_(ref.HandResNetCifar(depth=20, shortcut=shortcut))
    compiled = formulac.compile(RESNET, depth=20, shortcut=shortcut)
    _same_keys_and_shapes(compiled, hand)
    compiled.load_state_dict(hand.state_dict())
    _compare(compiled, hand, torch.randn(2, 3, 32, 32))


def _random_k_(model, low=0.7, high=1.3):
    """Give every per-step ``k`` a different value, so that x_<n-1> matters."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".k"):
                p.copy_(low + (high - low) * torch.rand((), generator=g))


@pytest.mark.parametrize("post_relu", [False, True])
def test_lm_resnet_matches_hand_written(post_relu):
    """The brief's LM-ResNet formula (k_n*x_n + (1-k_n)*x_<n-1>) against HandLMResNetCifar:
    identical keys (``layerS.i.k``), identical outputs with the same weights."""
    torch.manual_seed(0)
    hand = ref.HandLMResNetCifar(depth=20, k_init=1.05, post_relu=post_relu)
    _random_k_(ref.deterministic_weights_(hand))
    text = LM_BRIEF
    if post_relu:
        text = "param k_n = 1.05\nx_<n+1> = relu(k_n*x_n + (1 - k_n)*x_<n-1> + F(x_n))"
    compiled = formulac.compile(text, depth=20)
    _same_keys_and_shapes(compiled, hand)
    assert compiled.layer2[1].k.item() == pytest.approx(1.05)  # the formula's initial value
    compiled.load_state_dict(hand.state_dict())
    x = torch.randn(2, 3, 32, 32)
    _compare(compiled, hand, x)
    # gradients reach every k the same way
    compiled.train(), hand.train()
    compiled(x).square().sum().backward()
    hand(x).square().sum().backward()
    torch.testing.assert_close(compiled.layer3[2].k.grad, hand.layer3[2].k.grad, rtol=1e-4, atol=1e-6)


def test_zoo_lm_resnet_matches_hand_written():
    """examples/lm_resnet.rec writes the scheme with k' = 1 - k: (1-k')*x_n + k'*x_<n-1>."""
    torch.manual_seed(0)
    hand = ref.HandLMResNetCifar(depth=20)
    _random_k_(ref.deterministic_weights_(hand))
    compiled = formulac.load(EXAMPLES / "lm_resnet.rec").compile(depth=20)
    state = {k: (1 - v if k.endswith(".k") else v) for k, v in hand.state_dict().items()}
    compiled.load_state_dict(state)
    _compare(compiled, hand, torch.randn(2, 3, 32, 32))


@pytest.mark.parametrize("post_relu", [False, True])
def test_momentum_matches_hand_written(post_relu):
    torch.manual_seed(0)
    hand = ref.deterministic_weights_(ref.HandMomentumResNetCifar(depth=20, gamma=0.9, post_relu=post_relu))
    formula = formulac.load(EXAMPLES / "momentum.rec")
    if post_relu:
        formula = formulac.parse(
            "gamma = 0.9\nv_<n+1> = gamma*v_n + (1 - gamma)*F(x_n)\nx_<n+1> = relu(x_n + v_<n+1>)"
        )
    compiled = formula.compile(depth=20)
    _same_keys_and_shapes(compiled, hand)
    compiled.load_state_dict(hand.state_dict())
    _compare(compiled, hand, torch.randn(2, 3, 32, 32))


def test_momentum_gamma_as_a_bound_symbol():
    """A free gamma bound at compile time gives the same network as the constant."""
    torch.manual_seed(0)
    hand = ref.deterministic_weights_(ref.HandMomentumResNetCifar(depth=8, gamma=0.5))
    compiled = formulac.compile(
        "symbol gamma\nv_<n+1> = gamma*v_n + (1 - gamma)*F(x_n)\nx_<n+1> = x_n + v_<n+1>", depth=8, gamma=0.5
    )
    compiled.load_state_dict(hand.state_dict())
    _compare(compiled, hand, torch.randn(2, 3, 16, 16))


# ------------------------------------------------------------------------------------------
# every zoo formula runs


ZOO = sorted(p.name for p in EXAMPLES.glob("*.rec"))
SMALL = {
    "cifar-resnet": ({"depth": 20}, (2, 3, 16, 16)),
    "mlp": ({"depth": 2, "width": 16, "stages": [16, 24]}, (2, 1, 28, 28)),
}


def _zoo_formula(name):
    formula = formulac.load(EXAMPLES / name)
    if formula.free_symbols:
        formula = formula.bind(**dict.fromkeys(formula.free_symbols, 0.5))
    return formula


def test_the_zoo_is_there():
    assert {"resnet.rec", "lm_resnet.rec", "momentum.rec", "densenet.rec"} <= set(ZOO)


@pytest.mark.parametrize("backbone", sorted(SMALL))
@pytest.mark.parametrize("name", ZOO)
def test_zoo_compiles_and_trains(name, backbone):
    options, shape = SMALL[backbone]
    formula = _zoo_formula(name)
    torch.manual_seed(0)
    x = torch.randn(shape)
    for transition in ("reset", "project"):
        model = formula.compile(backbone=backbone, transition=transition, **options)
        out = model(x)
        assert out.shape == (2, 10) and torch.isfinite(out).all()
        out.square().mean().backward()
        grads = [p.grad for p in model.parameters() if p.requires_grad]
        assert grads and all(g is not None for g in grads), f"{name}: a parameter gets no gradient"


def test_free_symbol_must_be_bound():
    with pytest.raises(UsageError, match=r"\ba\b"):
        formulac.load(EXAMPLES / "two_step_free.rec").compile(depth=8)
    model = formulac.compile(formulac.load(EXAMPLES / "two_step_free.rec"), depth=8, a=0.5)
    assert model(torch.randn(1, 3, 16, 16)).shape == (1, 10)


def test_project_with_states_of_different_widths_is_a_clear_error():
    """DenseNet-style concatenation reading x_<n-1>: at a boundary the states differ in
    width, so ``project`` cannot apply one projection to both."""
    text = "x_<n+1> = cat(x_n, F(x_<n-1>))"
    model = formulac.compile(text, depth=20, transition="reset")
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    with pytest.raises(UsageError, match="project"):
        formulac.compile(text, depth=20, transition="project")
    with pytest.raises(UsageError, match="transition"):
        formulac.compile(RESNET, depth=20, transition="sideways")


def test_project_transition_projects_the_history():
    """With ``project`` x_<n-1> at a stage's first step is the projected previous state, so
    it differs from ``reset`` (where it is the projected stage input) on a two-step formula."""
    torch.manual_seed(0)
    text = "x_<n+1> = x_n - 0.5*x_<n-1> + F(x_n)"
    reset = formulac.compile(text, depth=20).eval()
    project = formulac.compile(text, depth=20, transition="project").eval()
    project.load_state_dict(reset.state_dict())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(reset(x), project(x))
        # the first stage has no projection, so the stages' inputs to layer2 agree
        torch.testing.assert_close(
            reset.run_stage(reset.layer1, reset.stem(x)),
            project.run_stage(project.layer1, *[project.stem(x)] * 2)[0],
        )


# ------------------------------------------------------------------------------------------
# torch.compile


def test_torch_compile_fullgraph():
    """ResNet, LM-ResNet and Momentum compile with no graph break (fullgraph=True) and give
    eager's outputs and gradients (train mode: one graph per model, forward and backward).
    ``aot_eager`` traces forward and backward as inductor does, without inductor's C++
    build time (about a minute on two cores)."""
    torch._dynamo.reset()
    x = torch.randn(2, 3, 16, 16)
    for text in (RESNET, LM_BRIEF, (EXAMPLES / "momentum.rec").read_text()):
        torch.manual_seed(0)
        model = formulac.compile(text, depth=8)
        _random_k_(model)
        compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
        out = compiled(x)
        out.square().sum().backward()
        compiled_grads = [p.grad.clone() for p in model.parameters()]
        model.zero_grad()
        expected = model(x)
        expected.square().sum().backward()
        torch.testing.assert_close(out, expected)
        for got, want in zip(compiled_grads, (p.grad for p in model.parameters())):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "text",
    [
        "x_<n+1> = x_n + 1/2*sum(i=0..n, x_<i-1>) + F(x_n)",  # a history list that starts at x_<-1>
        "v_<n+1> = sum(i=1..n, v_i) + G(x_n)\nx_<n+1> = x_n + F(v_<n+1>)",  # empty at n = 0
        "x_<n+1> = sigmoid(n)*x_n + softplus(1 - n)*x_<n-1> + F(x_n)",  # math on the step index
        "v_0 = x_0/2\nv_<n+1> = 1/2\nx_<n+1> = x_n + v_0 + F(v_<n+1>)",  # a start value, a number
    ],
)
def test_torch_compile_fullgraph_reads_before_step_0(text):
    """The code for states before step 0 traces with no graph break."""
    torch._dynamo.reset()
    model = formulac.compile(text, backbone="mlp", depth=3, width=8)
    x = torch.randn(2, 1, 28, 28)
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    torch.testing.assert_close(compiled(x), model(x))


@pytest.mark.parametrize("name", ["resnet_post", "lm_resnet", "momentum"])
def test_compiled_network_under_channels_last_and_bf16_autocast(name):
    """The compiled formula keeps its function in channels_last and runs under CPU autocast."""
    torch.manual_seed(0)
    model = formulac.load(REPO / "examples" / f"{name}.rec").compile(backbone="cifar-resnet", depth=8).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
        last = model.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
        torch.testing.assert_close(last, expected, rtol=1e-4, atol=1e-4)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x)
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), expected, rtol=0.1, atol=0.1 * expected.abs().max().item())


def test_shared_block_is_one_module_per_stage():
    """``shared F``: the steps of a stage use one F (a stage's first step, which changes width
    and stride, has its own), so a stage has one set of branch weights, not one per step."""
    shared = formulac.load(EXAMPLES / "shared_resnet.rec").compile(depth=20)
    stages = (shared.layer1, shared.layer2, shared.layer3)
    for stage in stages:
        assert len({id(step.F) for step in stage[1:]}) == 1
    assert shared.layer1[0].F is shared.layer1[1].F  # no width change: the first step shares too
    assert shared.layer2[0].F is not shared.layer2[1].F
    plain = formulac.compile(RESNET, depth=20)
    later = [count(stage[1]) for stage in (plain.layer1, plain.layer2, plain.layer3)]
    # layer1 keeps 1 of its 3 branches, layer2 and layer3 2 of 3 (the first, and the shared one)
    assert count(plain) - count(shared) == 2 * later[0] + later[1] + later[2]
    x = torch.randn(2, 3, 16, 16)
    shared(x).square().sum().backward()
    assert shared.layer3[1].F.conv1.weight.grad is shared.layer3[2].F.conv1.weight.grad


def test_shared_block_whose_inputs_grow_is_refused(tmp_path):
    text = "shared F\nx_<n+1> = cat(x_n, F(x_n))\n"
    with pytest.raises(UsageError, match="shared block F gets inputs of widths"):
        formulac.compile(text, backbone="mlp", depth=3)
    from formulac.cli import main

    path = tmp_path / "dense.rec"
    path.write_text(text)
    assert main(["check", str(path)]) == 2
