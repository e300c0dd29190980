"""Input-dependent coefficients compile on every backbone (feature dimension: a transformer's
last, a CNN's channels, one coefficient per position), train a step, and hold what the
analysis counts; the gate example computes what a hand-written highway step computes."""

from __future__ import annotations

import re

import pytest
import torch

import formulac

EXAMPLES = formulac.__file__.rsplit("/", 2)[0] + "/examples"
DYNAMIC = [
    "dynamic_hyper_connections_k2",
    "dynamic_hyper_connections_k4",
    "dynamic_gate",
    "dynamic_mhc_k2",
    "dynamic_mhc_k4",
]
BACKBONES = {
    "mlp": (dict(depth=3), lambda: torch.randn(4, 1, 28, 28)),
    "cifar-resnet": (dict(depth=8), lambda: torch.randn(2, 3, 32, 32)),
    "vit": (dict(depth=2), lambda: torch.randn(2, 3, 32, 32)),
    "gpt": (dict(depth=2, vocab_size=32, context=8, dim=32, heads=2), lambda: torch.randint(0, 32, (3, 8))),
}
MAP_SUFFIXES = ("_map", "_map_scale", "_norm_gain")


def _loss(net, backbone, x):
    logits = net(x)
    if backbone == "gpt":
        return torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 32), x[:, 1:].reshape(-1))
    return torch.nn.functional.cross_entropy(logits, torch.randint(0, 10, (x.shape[0],)))


@pytest.mark.parametrize("backbone", list(BACKBONES))
@pytest.mark.parametrize("example", DYNAMIC)
def test_dynamic_example_trains_a_step(example, backbone):
    torch.manual_seed(0)
    options, make_input = BACKBONES[backbone]
    net = formulac.load(f"{EXAMPLES}/{example}.rec").compile(backbone=backbone, **options)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    x = make_input()
    loss = _loss(net, backbone, x)
    loss.backward()
    assert torch.isfinite(loss)
    projections = {name: p for name, p in net.named_parameters() if name.endswith("_map")}
    assert projections, "every step holds the maps of its input-dependent coefficients"
    # the maps start at 0 (the network starts as the static one) and learn from the first step
    assert all(torch.count_nonzero(p) == 0 for p in projections.values())
    # mHC's H_res map is the exception: every stream starts as a copy of the input and stays one
    # at the first step, so a doubly stochastic H_res has no gradient yet (test_dynamic_mhc.py)
    learning = {name: p for name, p in projections.items() if not _mhc_res_map(example, name)}
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in learning.values())
    optimizer.step()
    assert all(torch.count_nonzero(p) > 0 for p in learning.values())
    assert torch.isfinite(_loss(net, backbone, x))


def _mhc_res_map(example: str, name: str) -> bool:
    return example.startswith("dynamic_mhc") and name.endswith(".res_map")


@pytest.mark.parametrize("example", DYNAMIC)
def test_analysis_counts_the_maps_the_network_holds(example):
    rec = formulac.load(f"{EXAMPLES}/{example}.rec")
    depth = 5
    notes = rec.analyze(depth=depth, params="init").notes
    assert any(note.startswith("input-dependent: analysed at initial values") for note in notes)
    (note,) = [note for note in notes if note.startswith("input-dependent maps")]
    per_feature, fixed = map(int, re.search(rf"; (\d+)d \+ (\d+) at depth {depth}", note).groups())
    net = rec.compile(backbone="mlp", depth=depth, width=24)
    held = sum(p.numel() for name, p in net.named_parameters() if name.endswith(MAP_SUFFIXES))
    assert held == per_feature * 24 + fixed


def test_dynamic_gate_is_a_highway_step_with_a_per_token_gate():
    """x_{n+1} = sigmoid(g)*F(x) + (1 - sigmoid(g))*x, g = g_static + s*tanh(rmsnorm(x) @ w)
    per token, written out by hand on vit's tokens (B, T, D)."""
    torch.manual_seed(3)
    net = (
        formulac.load(f"{EXAMPLES}/dynamic_gate.rec").compile(backbone="vit", depth=2, dim=32).double().eval()
    )
    with torch.no_grad():
        for step in net.layers:
            for name in ("g", "g_map", "g_map_scale", "x_norm_gain"):
                getattr(step, name).copy_(torch.randn(getattr(step, name).shape, dtype=torch.float64))
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    state = net.stem(x)
    for step in net.layers:
        normed = state / state.norm(dim=-1, keepdim=True) * state.shape[-1] ** 0.5 * (1 + step.x_norm_gain)
        gate = torch.sigmoid(step.g + step.g_map_scale * torch.tanh(normed @ step.g_map)).unsqueeze(-1)
        state = gate * step.F(state) + (1 - gate) * state
    want = net.head(state)
    assert (net(x) - want).abs().max() <= 1e-9 * want.abs().max()


@pytest.mark.parametrize("example", ["dynamic_hyper_connections_k2", "dynamic_gate", "dynamic_mhc_k2"])
def test_checkpointed_network_computes_the_standard_one(example):
    """--memory checkpoint recomputes the step with its per-token coefficients."""
    formula = formulac.load(f"{EXAMPLES}/{example}.rec")
    torch.manual_seed(0)
    standard = formula.compile(backbone="cifar-resnet", depth=8)
    with torch.no_grad():
        for p in standard.parameters():
            p.add_(0.1 * torch.randn_like(p))  # nonzero maps
    checkpointed = formula.compile(backbone="cifar-resnet", depth=8, memory="checkpoint")
    checkpointed.load_state_dict(standard.state_dict())
    x = torch.randn(2, 3, 32, 32)
    want, got = standard(x), checkpointed(x)
    assert torch.equal(want, got)
    got.sum().backward()
    assert all(p.grad is not None for name, p in checkpointed.named_parameters() if name.endswith("_map"))


def test_wire_needs_and_uses_the_width():
    formula = formulac.load(f"{EXAMPLES}/dynamic_gate.rec")
    blocks = {"F": [torch.nn.Linear(8, 8, dtype=torch.float64) for _ in range(2)]}
    with pytest.raises(formulac.FormulacError, match="width=D"):
        formula.wire(blocks)
    net = formula.wire(blocks, width=8).double()
    torch.manual_seed(1)
    with torch.no_grad():
        for step in net.steps:
            step.g_map.copy_(torch.randn(8))
    x = torch.randn(5, 8, dtype=torch.float64)
    want = x
    for step, block in zip(net.steps, blocks["F"]):
        normed = want / want.norm(dim=-1, keepdim=True) * 8**0.5 * (1 + step.x_norm_gain)
        gate = torch.sigmoid(step.g + step.g_map_scale * torch.tanh(normed @ step.g_map)).unsqueeze(-1)
        want = gate * block(want) + (1 - gate) * want
    assert torch.allclose(net(x), want, rtol=1e-12, atol=1e-12)


def test_transform_refuses_dynamic_coefficients():
    formula = formulac.load(f"{EXAMPLES}/dynamic_gate.rec")
    model = torch.nn.Sequential(*[torch.nn.Linear(4, 4) for _ in range(2)])
    with pytest.raises(formulac.FormulacError, match="input-dependent"):
        formulac.transform(model, formula)


# stream formulas whose coefficients appear inside sums, products and functions
SHAPES_OF_USE = [
    "h_<n+1> = h_n + (post_n + 1)*F((pre_n - 1) @ h_n)/2",
    "h_<n+1> = res_n @ (post_n*h_n) + 2*sigmoid(post_n)*F(sigmoid(pre_n) @ h_n)",
    "h_<n+1> = (res_n - 1) @ h_n - post_n*F(pre_n @ h_n)",
    "h_<n+1> = sinkhorn(res_n) @ h_n + 2*sigmoid(post_n)*F(softmax(pre_n) @ h_n)",
    "h_<n+1> = softmax(res_n) @ h_n + softmax(post_n)*F(pre_n @ h_n)",
]


@pytest.mark.parametrize("equation", SHAPES_OF_USE)
@pytest.mark.parametrize("backbone", ["mlp", "vit"])
def test_per_token_code_with_zero_maps_is_the_static_code(equation, backbone):
    """With their maps at 0 (as at the start) dynamic coefficients compute what the static ones
    compute (the per-token code against the einsum code of the static form)."""
    declarations = {"res": "res_n[3,3] = identity", "pre": "pre_n[3] = onehot(1)", "post": "post_n[3] = 0.5"}
    used = "".join(f"param {text}\n" for name, text in declarations.items() if f"{name}_n" in equation)
    static = f"stream h[3]\n{used}h_0 = x_0\n{equation}\nx_<n+1> = sum(h_<n+1>)/3\n"
    dynamic = static.replace("= identity", "= identity + dynamic(h_n)")
    dynamic = dynamic.replace("= onehot(1)", "= onehot(1) + dynamic(h_n)").replace(
        "= 0.5", "= 0.5 + dynamic(h_n)"
    )
    options = {"depth": 2, "dim": 32} if backbone == "vit" else {"depth": 2}
    torch.manual_seed(0)
    want_net = formulac.parse(static).compile(backbone=backbone, **options).double()
    with torch.no_grad():
        for p in want_net.parameters():
            p.add_(0.3 * torch.randn_like(p))
    got_net = formulac.parse(dynamic).compile(backbone=backbone, **options).double()
    missing, unexpected = got_net.load_state_dict(want_net.state_dict(), strict=False)
    assert not unexpected and missing and all(key.endswith(MAP_SUFFIXES) for key in missing)
    x = torch.randn(2, *((1, 28, 28) if backbone == "mlp" else (3, 32, 32)), dtype=torch.float64)
    want, got = want_net(x), got_net(x)
    assert (got - want).abs().max() <= 1e-12 * want.abs().max()


def test_reversible_memory_refuses_dynamic_coefficients():
    """The inverse would read a coefficient computed from the state it rebuilds: refused, with
    the reason, although the static formula (a RevNet with a learned scale) is invertible."""
    revnet = "output x\nparam g_n = 1{}\ny_0 = x_0\ny_<n+1> = y_n + F(x_n)\nx_<n+1> = x_n + g_n*G(y_<n+1>)\n"
    formulac.parse(revnet.format("")).compile(backbone="cifar-resnet", depth=8, memory="reversible")
    with pytest.raises(formulac.FormulacError, match="input-dependent ones"):
        formulac.parse(revnet.format(" + dynamic(y_n)")).compile(
            backbone="cifar-resnet", depth=8, memory="reversible"
        )
