"""``formulac.wire``: the user's modules as the blocks of a formula."""

from __future__ import annotations

import ast

import pytest
import torch
from torch import nn

import formulac
from formulac import UsageError
from formulac.codegen.emit import network_source, wire_source
from formulac.parse import parse as parse_rec

N = 5
D = 6


def linears(count=N, seed=0):
    torch.manual_seed(seed)
    return [nn.Linear(D, D) for _ in range(count)]


class Counting(nn.Module):
    """A block that counts its calls."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.inner(x)


def test_resnet_by_hand():
    blocks = linears()
    net = formulac.wire("x_<n+1> = relu(x_n + F(x_n))", {"F": blocks})
    x = torch.randn(3, D)
    want = x
    for f in blocks:
        want = torch.relu(want + f(want))
    torch.testing.assert_close(net(x), want)
    assert isinstance(net, nn.Module)
    assert [m for m in net.modules() if isinstance(m, nn.Linear)] == blocks  # the user's, in order


def test_two_step_initial_condition_and_constant():
    """x_<-1> defaults to x_0, so the first step is x_1 = (1 + a)*x_0 + F_0(x_0)."""
    blocks = linears()
    net = formulac.wire("a = -0.25\nx_<n+1> = x_n + a*x_<n-1> + F(x_n)", {"F": blocks})
    x = torch.randn(3, D)
    prev, cur = x, x
    for f in blocks:
        prev, cur = cur, cur - 0.25 * prev + f(cur)
    torch.testing.assert_close(net(x), cur)


def test_explicit_initial_conditions():
    blocks = linears()
    net = formulac.wire("x_<-1> = 0\nx_<n+1> = x_n + 0.5*x_<n-1> + F(x_n)", {"F": blocks})
    x = torch.randn(3, D)
    prev, cur = torch.zeros_like(x), x
    for f in blocks:
        prev, cur = cur, cur + 0.5 * prev + f(cur)
    torch.testing.assert_close(net(x), cur)


def test_momentum_system():
    blocks = linears()
    text = "gamma = 0.9\nv_<n+1> = gamma*v_n + (1 - gamma)*F(x_n)\nx_<n+1> = x_n + v_<n+1>"
    net = formulac.wire(text, {"F": blocks})
    x = torch.randn(3, D)
    v, y = torch.zeros_like(x), x
    for f in blocks:
        v = 0.9 * v + 0.1 * f(y)
        y = y + v
    torch.testing.assert_close(net(x), y)


def test_revnet_two_blocks():
    fs, gs = linears(seed=1), linears(seed=2)
    text = "output x\ny_0 = x_0\ny_<n+1> = y_n + F(x_n)\nx_<n+1> = x_n + G(y_<n+1>)"
    net = formulac.wire(text, {"F": fs, "G": gs})
    x = torch.randn(3, D)
    y, z = x, x
    for f, g in zip(fs, gs):
        y = y + f(z)
        z = z + g(y)
    torch.testing.assert_close(net(x), z)


@pytest.mark.parametrize(
    "text, step",
    [
        ("x_<n+1> = 1/(n+1)*sum(i=0..n, x_i) + F(x_n)", lambda f, h: sum(h) / len(h) + f(h[-1])),
        # a block inside the sum: the step's block applied to every earlier state
        ("x_<n+1> = x_n + sum(i=0..n, F(x_i))/(n+1)", lambda f, h: h[-1] + sum(f(s) for s in h) / len(h)),
    ],
)
def test_history_sum_and_step_index(text, step):
    blocks = linears()
    net = formulac.wire(text, {"F": blocks})
    x = torch.randn(3, D)
    history = [x]
    for f in blocks:
        history.append(step(f, history))
    torch.testing.assert_close(net(x), history[-1])


def test_same_block_same_argument_is_called_once():
    """Highway's T(x_n) appears twice: one call per step. Heun's F is applied to two different
    arguments (x_n and x_n + F(x_n)): two calls per step, the inner F(x_n) computed once."""
    t = [Counting(b) for b in linears(seed=1)]
    h = linears(seed=2)
    net = formulac.wire("x_<n+1> = sigmoid(T(x_n))*H(x_n) + (1 - sigmoid(T(x_n)))*x_n", {"T": t, "H": h})
    x = torch.randn(3, D)
    out = net(x)
    assert [c.calls for c in t] == [1] * N
    want = x
    for ti, hi in zip(t, h):
        gate = torch.sigmoid(ti.inner(want))
        want = gate * hi(want) + (1 - gate) * want
    torch.testing.assert_close(out, want)

    f = [Counting(b) for b in linears(seed=3)]
    net = formulac.wire("x_<n+1> = x_n + 1/2*F(x_n) + 1/2*F(x_n + F(x_n))", {"F": f})
    out = net(x)
    assert [c.calls for c in f] == [2] * N
    want = x
    for fi in f:
        k = fi.inner(want)
        want = want + 0.5 * k + 0.5 * fi.inner(want + k)
    torch.testing.assert_close(out, want)


def test_parameters_with_initial_values():
    blocks = linears()
    net = formulac.wire(
        "param k_n = 1.05\nparam g = 0.5\nx_<n+1> = k_n*x_n + (1 - k_n)*x_<n-1> + g*F(x_n)", {"F": blocks}
    )
    params = dict(net.named_parameters())
    per_step = [params[f"steps.{i}.k"] for i in range(N)]
    assert all(isinstance(p, nn.Parameter) and p.shape == () for p in per_step)
    assert len({id(p) for p in per_step}) == N  # one per step
    assert all(p.item() == pytest.approx(1.05) for p in per_step)
    assert isinstance(params["g"], nn.Parameter) and params["g"].item() == pytest.approx(0.5)
    assert sum(1 for k in params if k.endswith(".k") or k == "g") == N + 1
    x = torch.randn(3, D)
    net(x).square().sum().backward()
    assert all(p.grad is not None for p in per_step) and params["g"].grad is not None
    # the computation uses them
    with torch.no_grad():
        for i, p in enumerate(per_step):
            p.fill_(0.5 + 0.1 * i)
        params["g"].fill_(2.0)
    prev, cur = x, x
    for i, f in enumerate(blocks):
        k = 0.5 + 0.1 * i
        prev, cur = cur, k * cur + (1 - k) * prev + 2.0 * f(cur)
    torch.testing.assert_close(net(x), cur)


def test_shared_block_weights():
    f = nn.Linear(D, D)
    net = formulac.wire("shared F\nx_<n+1> = x_n + F(x_n)", {"F": [f] * N})
    assert sum(p.numel() for p in net.parameters()) == D * D + D
    x = torch.randn(3, D)
    want = x
    for _ in range(N):
        want = want + f(want)
    torch.testing.assert_close(net(x), want)


def test_unbound_symbol_is_named():
    with pytest.raises(UsageError, match=r"\ba\b"):
        formulac.wire("symbol a\nx_<n+1> = x_n + a*x_<n-1> + F(x_n)", {"F": linears()})
    net = formulac.parse("symbol a\nx_<n+1> = x_n + a*x_<n-1> + F(x_n)").bind(a=0.5).wire({"F": linears()})
    assert net(torch.randn(2, D)).shape == (2, D)


def test_block_mistakes_are_usage_errors():
    with pytest.raises(UsageError, match="G"):
        formulac.wire("x_<n+1> = x_n + F(x_n) + G(x_n)", {"F": linears()})
    with pytest.raises(UsageError, match="H"):
        formulac.wire("x_<n+1> = x_n + F(x_n)", {"F": linears(), "H": linears()})
    with pytest.raises(UsageError, match="one module per step"):
        formulac.wire("x_<n+1> = x_n + F(x_n) + G(x_n)", {"F": linears(3), "G": linears(4)})


# ------------------------------------------------------------------------------------------
# only the history states the formula reads are kept


def _forward_names(source: str, class_name: str, method: str) -> set[str]:
    tree = ast.parse(source)
    (cls,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == class_name]
    (fn,) = [n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == method]
    return {n.id for n in ast.walk(fn) if isinstance(n, ast.Name)} | {a.arg for a in fn.args.args}


@pytest.mark.parametrize(
    "text, kept, dropped",
    [
        ("x_<n+1> = x_n + F(x_n)", {"x_n"}, {"x_nm1", "x_history"}),
        ("x_<n+1> = relu(x_n + F(x_n))", {"x_n"}, {"x_nm1"}),
        ("a = -0.25\nx_<n+1> = x_n + a*x_<n-1> + F(x_n)", {"x_n", "x_nm1"}, {"x_nm2"}),
        ("x_<n+1> = x_<n-1> + 2*F(x_n)", {"x_n", "x_nm1"}, {"x_nm2"}),
        ("x_<n+1> = x_n + 0.5*x_<n-2> + F(x_n)", {"x_n", "x_nm1", "x_nm2"}, {"x_nm3"}),
        (
            "gamma = 0.9\nv_<n+1> = gamma*v_n + (1 - gamma)*F(x_n)\nx_<n+1> = x_n + v_<n+1>",
            {"x_n", "v_n"},
            {"x_nm1", "v_nm1"},
        ),
        ("x_<n+1> = 1/(n+1)*sum(i=0..n, x_i) + F(x_n)", {"x_n", "x_history"}, {"x_nm1"}),
        # a window is a few lags, not the whole history
        ("x_<n+1> = sum(j=n-2..n, x_j)/3 + F(x_n)", {"x_n", "x_nm1", "x_nm2"}, {"x_nm3", "x_history"}),
        ("x_<n+1> = x_n + sum(i=0..n, x_<i-2>) + F(x_n)", {"x_n", "x_history"}, {"x_nm1", "x_nm2"}),
    ],
)
def test_only_the_states_read_are_kept(text, kept, dropped):
    rec = parse_rec(text)
    wired = _forward_names(wire_source(rec), "Recurrence", "forward")
    from formulac.codegen.backbones import get_backbone

    info = get_backbone("cifar-resnet")
    staged = _forward_names(network_source(rec, info, info.resolve(depth=20)), "FormulaNet", "run_stage")
    for names in (wired, staged):
        assert kept <= names
        assert not (dropped & names)
        # nothing else of the states' history lives across steps
        history = {n for n in names if n.startswith(("x_nm", "v_nm")) or n.endswith("_history")}
        assert history == {n for n in kept if n.startswith(("x_nm", "v_nm")) or n.endswith("_history")}


def test_resnet_forward_holds_no_earlier_state():
    """At run time: the states of earlier steps are freed as soon as the next step is done
    (checked with weak references on the outputs of the blocks' inputs)."""
    import weakref

    seen = []

    class Spy(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(D, D)

        def forward(self, x):
            seen.append(weakref.ref(x))
            return self.lin(x)

    net = formulac.wire("x_<n+1> = x_n + F(x_n)", {"F": [Spy() for _ in range(N)]})
    with torch.no_grad():
        out = net(torch.randn(3, D))
    alive = [r() is not None for r in seen]
    assert alive == [False] * N  # x_0 .. x_{N-1} are gone once x_N is returned
    assert out.shape == (3, D)


def test_terms_that_cancel_are_still_defined():
    """The generated code prints the formula as written (x_<n-1> - x_<n-1> stays), so the
    states it reads must be carried even when SymPy's simplified form drops them."""
    text = "x_<n+1> = x_n + x_<n-1> - x_<n-1> + F(x_n)"
    blocks = linears()
    net = formulac.wire(text, {"F": blocks})
    x = torch.randn(3, D)
    want = x
    for f in blocks:
        want = want + f(want)
    torch.testing.assert_close(net(x), want)
    model = formulac.compile(text, backbone="mlp", depth=2)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


# ------------------------------------------------------------------------------------------
# constants written with functions; the project transition


def test_numbers_written_with_functions():
    import math

    text = "x_<n+1> = sigmoid(1)*x_n + softplus(n - 2)*gelu(1)*x_<n-1> + silu(-n)*elu(1 - n)*F(x_n)"
    blocks = linears()
    net = formulac.wire(text, {"F": blocks})
    x = torch.randn(3, D)

    def sigmoid(v):
        return 1 / (1 + math.exp(-v))

    def elu(v):
        return v if v > 0 else math.exp(v) - 1

    gelu1 = 0.5 * (1 + math.erf(1 / math.sqrt(2)))
    prev, cur = x, x
    for i, f in enumerate(blocks):
        softplus = math.log(1 + math.exp(i - 2))
        coefficient = -i * sigmoid(-i) * elu(1 - i)
        prev, cur = cur, sigmoid(1) * cur + softplus * gelu1 * prev + coefficient * f(cur)
    torch.testing.assert_close(net(x), cur)


def test_project_transition_continues_the_history_and_n():
    """With ``project`` and stages of one width (no projection), a two-stage network is one
    run of the formula over all its steps: n and the history go on across the boundary;
    with ``reset`` the second stage starts again from its input."""
    text = "x_<-1> = 0\nx_<n+1> = x_n + 1/(n+1)*sum(i=0..n, x_<i-1>) - 1/2*x_<n-2> + F(x_n)"
    steps = 3
    project = formulac.compile(
        text, backbone="mlp", depth=steps, width=D, stages=[D, D], transition="project"
    )
    reset = formulac.compile(text, backbone="mlp", depth=steps, width=D, stages=[D, D])
    reset.load_state_dict(project.state_dict())
    blocks = [step.F for stage in (project.layer1, project.layer2) for step in stage]
    assert [step.n for stage in (project.layer1, project.layer2) for step in stage] == list(range(2 * steps))
    assert [step.n for stage in (reset.layer1, reset.layer2) for step in stage] == [0, 1, 2] * 2
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        x0 = project.stem(x)
        whole = formulac.wire(text, {"F": blocks})(x0)
        torch.testing.assert_close(project.head(whole), project(x))
        half = formulac.wire(text, {"F": blocks[:steps]})
        second = formulac.wire(text, {"F": blocks[steps:]})
        torch.testing.assert_close(reset.head(second(half(x0))), reset(x))
