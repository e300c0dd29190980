"""memory="reversible" and memory="checkpoint" (issue 10): the same gradients as the standard
network on the same weights and batch, running statistics updated once, dropout replayed, the
analyzer's growth factor against a measured one, and what the emitted file contains.

References: the standard network (autograd keeps every activation) in float64; for float32, the
float64 gradients, against which reversible must be as accurate as standard up to the analyzer's
predicted error of the rebuilt states.
"""

from __future__ import annotations

import math

import numpy
import pytest
import torch
from fixtures_path import REPO
from process_runs import backward_in_fresh_python
from saved_memory import saved_bytes

import formulac
from formulac import UsageError
from formulac.analysis.invertibility import reconstruction
from formulac.cli import main
from formulac.codegen import memory_runtime
from formulac.codegen.reversible import ANCHOR_TOLERANCE

EXAMPLES = REPO / "examples"
FORMULAS = ["two_step.rec", "lm_resnet.rec", "momentum.rec", "revnet.rec"]
EXACT = {"two_step.rec", "momentum.rec"}  # rebuilt exactly: their inverse divides by a constant
# tiny networks: (backbone options, input shape); cifar stages of 3 steps, mlp stages of 5
BACKBONES = {
    "cifar-resnet": ({"backbone": "cifar-resnet", "depth": 20}, (4, 3, 8, 8)),
    "mlp": ({"backbone": "mlp", "depth": 5, "width": 12, "stages": [12, 16], "input_size": 6}, (4, 1, 6, 6)),
}


def _pair(spec, options, mode="reversible", dtype=torch.float64, **extra):
    formula = formulac.load(EXAMPLES / spec)
    torch.manual_seed(0)
    standard = formula.compile(**options, **extra).to(dtype).train()
    other = formula.compile(**options, memory=mode, **extra).to(dtype).train()
    other.load_state_dict(standard.state_dict())
    return standard, other


def _step(model, x, y, seed=0):
    """One training forward and backward: output, gradients of input and parameters, buffers."""
    torch.manual_seed(seed)
    x = x.clone().requires_grad_()
    model.zero_grad()
    out = model(x)
    torch.nn.functional.cross_entropy(out, y).backward()
    grads = {"input": x.grad.clone()}
    grads.update({k: p.grad.clone() for k, p in model.named_parameters()})
    return out.detach(), grads, {k: b.clone() for k, b in model.named_buffers()}


def _batch(shape, dtype):
    g = torch.Generator().manual_seed(1)
    return torch.randn(*shape, generator=g, dtype=dtype), torch.randint(0, 10, (shape[0],), generator=g)


def _worst_relative(a: dict, b: dict) -> float:
    """Largest per-tensor relative difference; a gradient that is exactly 0 in the reference
    (LM-ResNet's k at a stage's first step, where x_<-1> = x_0) is measured against 1e-8 of
    the largest gradient instead of against 0."""
    scale = max(float(g.norm()) for g in a.values())
    return max(float((b[k] - a[k]).norm()) / max(float(a[k].norm()), 1e-8 * scale) for k in a)


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
@pytest.mark.parametrize("spec", FORMULAS)
def test_reversible_gradients_equal_standard_float64(spec, backbone):
    options, shape = BACKBONES[backbone]
    standard, reversible = _pair(spec, options)
    x, y = _batch(shape, torch.float64)
    out_s, grads_s, buffers_s = _step(standard, x, y)
    out_r, grads_r, buffers_r = _step(reversible, x, y)
    if spec in EXACT:  # the forward runs on 40-bit fixed point (test_exact_rebuild.py)
        assert float((out_r - out_s).abs().max()) <= 1e-9 * float(out_s.abs().max())
    else:
        assert torch.equal(out_s, out_r)  # the forward is the standard forward
    assert grads_s.keys() == grads_r.keys()
    assert _worst_relative(grads_s, grads_r) <= 1e-10
    # batch-norm running statistics (and num_batches_tracked) updated once, as in standard mode
    assert buffers_s.keys() == buffers_r.keys()
    for k in buffers_s:
        if spec in EXACT and buffers_s[k].is_floating_point():  # statistics of fixed-point states
            assert torch.allclose(buffers_s[k], buffers_r[k], rtol=1e-9, atol=1e-12), k
        else:
            assert torch.equal(buffers_s[k], buffers_r[k]), k
    # states were really rebuilt: each backward checked them at the anchors
    assert reversible.rebuild_errors["float64"] < 1e-10


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
@pytest.mark.parametrize("spec", FORMULAS)
def test_reversible_float32_within_the_predicted_bound(spec, backbone):
    """float32: reversible's gradient (input and all parameters, as one vector) differs from
    standard's by at most the analyzer's predicted error of the rebuilt states plus a few times
    standard float32's own error (measured against float64)."""
    options, shape = BACKBONES[backbone]
    reference, _ = _pair(spec, options)
    standard, reversible = _pair(spec, options, dtype=torch.float32)
    x, y = _batch(shape, torch.float64)
    truth = torch.cat([g.flatten() for g in _step(reference, x, y)[1].values()])
    vectors = {}
    for name, model in (("standard", standard), ("reversible", reversible)):
        grads = _step(model, x.float(), y)[1]
        vectors[name] = torch.cat([g.double().flatten() for g in grads.values()])
    noise = float((vectors["standard"] - truth).norm() / truth.norm())
    difference = float((vectors["reversible"] - vectors["standard"]).norm() / vectors["standard"].norm())
    steps = max(len(m) for m in reversible.children() if isinstance(m, torch.nn.ModuleList))
    interval = type(reversible).anchor_steps["float32"]
    predicted = reconstruction(formulac.load(EXAMPLES / spec).rec).error_bound(
        min(steps, interval), "float32"
    )
    assert difference <= predicted + 4 * noise, (difference, predicted, noise)


@pytest.mark.parametrize("spec", ["momentum.rec", "revnet.rec"])
def test_dropout_is_replayed(spec):
    options = {"backbone": "wrn", "depth": 22, "widen_factor": 1, "dropout": 0.3}
    standard, reversible = _pair(spec, options)
    x, y = _batch((4, 3, 8, 8), torch.float64)
    out_s, grads_s, _ = _step(standard, x, y, seed=5)
    out_r, grads_r, _ = _step(reversible, x, y, seed=5)
    if spec in EXACT:  # fixed-point states (test_exact_rebuild.py)
        assert torch.allclose(out_s, out_r, rtol=1e-9, atol=1e-12)
    else:
        assert torch.equal(out_s, out_r)
    assert _worst_relative(grads_s, grads_r) <= 1e-10
    # the backward leaves the random stream where the standard backward leaves it
    _step(standard, x, y, seed=5)
    after_standard = torch.rand(3)
    _step(reversible, x, y, seed=5)
    assert torch.equal(torch.rand(3), after_standard)


def test_without_dropout_active_no_random_state_is_stored():
    _, reversible = _pair("momentum.rec", {"backbone": "wrn", "depth": 22, "widen_factor": 1, "dropout": 0.3})
    assert memory_runtime.uses_randomness(reversible.layer1)
    reversible.eval()
    assert not memory_runtime.uses_randomness(reversible.layer1)
    assert memory_runtime.uses_randomness(reversible.layer1, preserve_rng_state=True)


@pytest.mark.parametrize("spec", ["momentum.rec", "resnet.rec"])
def test_checkpoint_gradients_equal_standard(spec):
    options, shape = BACKBONES["cifar-resnet"]
    standard, checkpointed = _pair(spec, options, mode="checkpoint")
    x, y = _batch(shape, torch.float64)
    out_s, grads_s, buffers_s = _step(standard, x, y)
    out_c, grads_c, buffers_c = _step(checkpointed, x, y)
    assert torch.equal(out_s, out_c)
    assert _worst_relative(grads_s, grads_c) <= 1e-10
    for k in buffers_s:  # running statistics restored after the recomputation
        assert torch.equal(buffers_s[k], buffers_c[k]), k


def test_eval_and_no_grad_run_the_plain_forward():
    standard, reversible = _pair("revnet.rec", BACKBONES["cifar-resnet"][0])
    x, _ = _batch(BACKBONES["cifar-resnet"][1], torch.float64)
    standard.eval()
    reversible.eval()
    with torch.no_grad():
        assert torch.equal(standard(x), reversible(x))


def test_anchors_are_shortened_when_rebuilt_states_drift():
    """Rebuilding 24 steps of a two-step formula whose errors grow 10/3 per step cannot stay
    within the tolerance in float32: the first backward sees it at the stage's first states,
    records it, recomputes that segment exactly (the gradient is standard's) and re-plans the
    interval from the drift it measured there; the next backward recomputes nothing."""
    # a learnable a: rebuilt in floating point (a constant -0.21 would be rebuilt exactly)
    formula = formulac.parse("param a = -0.21\nx_<n+1> = x_n + a*x_<n-1> + F(x_n)")
    options = {"backbone": "mlp", "depth": 24, "width": 8, "input_size": 4}
    torch.manual_seed(0)
    standard = formula.compile(**options).train()
    net = formula.compile(**options, memory="reversible").train()
    net.load_state_dict(standard.state_dict())
    planned = net.anchor_steps["float32"]
    assert planned == reconstruction(formula.rec).max_run("float32", ANCHOR_TOLERANCE["float32"]) == 3
    net.anchor_steps["float32"] = 100  # as if planned for far smaller growth
    x, y = _batch((4, 1, 4, 4), torch.float32)
    reference = _step(standard, x, y)[1]
    for backward in (1, 2):
        grads = _step(net, x, y)[1]
        assert _worst_relative(reference, grads) <= 1e-4
        assert net.recomputed_segments == {"float32": 1}, backward
        assert net.rebuild_errors["float32"] > net.anchor_tolerance["float32"]
        assert 1 <= net.anchor_steps["float32"] <= planned + 1
    # the class's plan is untouched: every network starts from the analyzer's interval
    assert type(net).anchor_steps["float32"] == planned


# -- the analyzer's growth factor against a measured one -------------------------------------------

GROWTH_CASES = {
    "two_step a=-0.21": ("a = -0.21\nx_<n+1> = x_n + a*x_<n-1> + F(x_n)", 18),
    "lm_resnet": ((EXAMPLES / "lm_resnet.rec").read_text(), 8),
    "momentum": ((EXAMPLES / "momentum.rec").read_text(), 60),
    "revnet": ((EXAMPLES / "revnet.rec").read_text(), 60),
}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("case", sorted(GROWTH_CASES))
def test_predicted_growth_matches_measured(case, dtype):
    """Run a random mlp network forward in float64, rebuild its states backward in ``dtype``
    from the last ones, and fit the growth of the error per rebuilt step (the later two thirds
    of the run, above the first roundings): within 10 % of the analyzer's. The blocks' last layer
    is scaled by 0.1: the analyzer predicts the linear part, and blocks whose Jacobian is
    comparable to the formula's coefficients add to it (docs/cli.md)."""
    text, steps = GROWTH_CASES[case]
    formula = formulac.parse(text)
    torch.manual_seed(0)
    net = formula.compile(backbone="mlp", depth=steps, width=32, input_size=6, memory="reversible").double()
    with torch.no_grad():
        for name, p in net.layer1.named_parameters():
            if "fc2" in name:
                p.mul_(0.1)
        h = net.stem(torch.randn(16, 1, 6, 6, dtype=torch.float64))
        states = (h, h) if case != "momentum" else (torch.zeros_like(h), h)
        path = [states]
        for step in net.layer1:
            path.append(step.advance(memory_runtime._plain_call, *path[-1]))
        low = net.to(dtype)
        rebuilt = tuple(t.to(dtype) for t in path[-1])
        errors = []
        for i in reversed(range(steps)):
            rebuilt = low.layer1[i].retreat(memory_runtime._plain_call, *rebuilt)
            errors.append(
                math.sqrt(sum(float(((r.double() - e) ** 2).sum()) for r, e in zip(rebuilt, path[i])))
            )
    k = numpy.arange(1, steps + 1)[steps // 3 :]
    slope = numpy.polyfit(k, numpy.log(errors[steps // 3 :]), 1)[0]
    predicted = float(reconstruction(formula.rec).growth)
    assert math.exp(slope) == pytest.approx(predicted, rel=0.10)


# -- errors, the emitted file, the command line ---------------------------------------------------


@pytest.mark.parametrize("spec", ["resnet.rec", "resnet_post.rec", "densenet.rec"])
def test_not_invertible_is_a_clear_error(spec):
    with pytest.raises(UsageError, match=r"memory='reversible' needs .* use memory='checkpoint' instead"):
        formulac.load(EXAMPLES / spec).compile(backbone="mlp", depth=2, memory="reversible")


# each: a formula, what the refusal names, and the modes that refuse it with the mode they
# suggest instead (checkpoint keeps a start such as x_0 for the whole stage:
# tests/codegen/test_checkpoint_starts.py checks its gradients)
UNSUPPORTED = {
    "history sum": (
        "x_<n+1> = x_n + 1/2*sum(i=0..n, x_i) + F(x_n)",
        "sums over the whole history",
        {"checkpoint": "standard", "reversible": "standard"},
    ),
    "reads x_0": (
        "x_<n+1> = x_n - 0.5*x_<n-1> + 0.1*x_0 + F(x_<n-1>)",
        "read x_0 at every step",
        {"reversible": "checkpoint"},
    ),
    "reads v_0": (
        "v_0 = x_0\nv_<n+1> = v_n + F(x_n)\nx_<n+1> = x_n + G(v_<n+1>) + v_0",
        "read v_0 at every step",
        {"reversible": "checkpoint"},
    ),
}


@pytest.mark.parametrize("case", list(UNSUPPORTED))
def test_what_a_mode_cannot_run_is_refused_by_it_and_by_info(case, tmp_path, capsys):
    text, phrase, refusing = UNSUPPORTED[case]
    formula = formulac.parse(text)
    for mode, instead in refusing.items():
        with pytest.raises(UsageError, match=f"memory='{mode}'.*{phrase}.*use memory='{instead}'"):
            formula.compile(backbone="mlp", depth=3, memory=mode)
    path = tmp_path / "f.rec"
    path.write_text(text + "\n")
    assert main(["info", str(path), "--backbone", "mlp", "--depth", "3", "--memory", "--json"]) == 0
    import json

    modes = {e["mode"]: e for e in json.loads(capsys.readouterr().out)["memory"]}
    assert modes["standard"]["bytes_per_image"] > 0
    for mode in ("checkpoint", "reversible"):
        if mode in refusing:
            assert modes[mode]["bytes_per_image"] is None and phrase in modes[mode]["note"]
            assert f"memory='{mode}'" in modes[mode]["note"]
            assert f"use memory='{refusing[mode]}'" in modes[mode]["note"]
        else:  # predicted, below standard's
            assert 0 < modes[mode]["bytes_per_image"] <= modes["standard"]["bytes_per_image"]


def test_useless_rebuilding_is_a_clear_error():
    formula = formulac.parse("a = -0.0001\nx_<n+1> = x_n + a*x_<n-1> + F(x_n)")
    with pytest.raises(UsageError, match="useless.*cannot rebuild even two steps"):
        formula.compile(backbone="mlp", depth=4, memory="reversible")


def test_unknown_memory_mode():
    with pytest.raises(UsageError, match="unknown memory mode 'fast'"):
        formulac.load(EXAMPLES / "revnet.rec").compile(backbone="mlp", memory="fast")


def test_cli_reversible_on_resnet_exits_2(capsys, tmp_path):
    code = main(
        ["compile", str(EXAMPLES / "resnet.rec"), "--memory", "reversible", "-o", str(tmp_path / "m.py")]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("formulac: error: memory='reversible' needs a formula")
    assert "F(x_n) reads x_n" in err and "checkpoint" in err
    assert not (tmp_path / "m.py").exists()


def test_emitted_reversible_file_is_standalone_and_deterministic(tmp_path):
    formula = formulac.load(EXAMPLES / "lm_resnet.rec")
    options = {"backbone": "mlp", "depth": 3, "width": 8, "input_size": 4}
    source = formula.source(memory="reversible", **options)
    assert source == formula.source(memory="reversible", **options)
    assert "class ReversibleSteps(torch.autograd.Function):" in source
    assert "def retreat(self, call, x_next, x_n):" in source
    assert "x_nm1 = (x_next - (1 - self.k) * x_n - out_F) / self.k" in source
    assert "formulac" not in source.replace("Generated by formulac", "").replace(
        "copied from formulac.codegen.backbones", ""
    )
    imported = "sorted(m for m in sys.modules if m.split('.')[0] == 'formulac')"
    assert backward_in_fresh_python(source, tmp_path, imported) == "[]"


@pytest.mark.parametrize("mode", ["reversible", "checkpoint"])
def test_emitted_file_imports_torch_and_math_only(mode):
    import ast

    source = formulac.load(EXAMPLES / "revnet.rec").source(backbone="cifar-resnet", depth=8, memory=mode)
    modules = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            modules.add(node.module)
    assert modules <= {"math", "torch", "torch.nn", "torch.nn.functional"}, modules


def test_cli_compile_and_info_memory(capsys, tmp_path):
    out = tmp_path / "m.py"
    assert main(["compile", str(EXAMPLES / "momentum.rec"), "--memory", "checkpoint", "-o", str(out)]) == 0
    assert "def run_checkpointed(" in out.read_text()
    capsys.readouterr()
    assert main(["info", str(EXAMPLES / "momentum.rec"), "--depth", "20", "--memory", "--json"]) == 0
    import json

    data = json.loads(capsys.readouterr().out)
    modes = {e["mode"]: e for e in data["memory"]}
    assert set(modes) == {"standard", "checkpoint", "reversible"}
    # rebuilt exactly (gamma = 9/10): at 3 steps a stage its int64 states cost more than
    # checkpoint's segments, never more than standard
    assert modes["reversible"]["bytes_per_image"] < modes["standard"]["bytes_per_image"]
    assert modes["checkpoint"]["bytes_per_image"] < modes["standard"]["bytes_per_image"]
    assert "exact rebuild" in modes["reversible"]["detail"]
    assert main(["info", str(EXAMPLES / "resnet.rec"), "--depth", "20", "--memory"]) == 0
    text = capsys.readouterr().out
    assert "reversible  -  (not invertible: F(x_n) reads x_n" in text


def test_reversible_memory_does_not_grow_with_depth():
    """Bytes autograd keeps for backward: reversible RevNet keeps the same at 4 and 16 steps
    per stage; standard keeps about four times as much."""
    from formulac.codegen.memory_info import activation_profile

    kept = {}
    for mode in ("standard", "reversible"):
        for depth in (4, 16):
            torch.manual_seed(0)
            net = formulac.load(EXAMPLES / "revnet.rec").compile(
                backbone="mlp", depth=depth, width=16, input_size=4, memory=mode
            )
            x = torch.randn(8, 1, 4, 4)
            saved = saved_bytes(net, lambda net=net, x=x: net.train()(x))
            kept[(mode, depth)] = saved
    assert kept[("reversible", 16)] == kept[("reversible", 4)]
    assert kept[("standard", 16)] > 3 * kept[("standard", 4)] * 0.9
    assert activation_profile  # the same accounting backs `formulac info --memory`
