"""Exact rebuilding for formulas whose inverse divides by a constant (issue 22, item 2).

References: exact integer arithmetic (Python ints) for the bit store; the standard network in
float64 for the gradients; the live tensor memory the profiler sees when the backward starts,
at two depths, for "flat in depth"; the training run's files for the report of the checks.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from fixtures_path import REPO
from hypothesis import given, settings
from hypothesis import strategies as st
from process_runs import backward_in_fresh_python

import formulac
from formulac.analysis.invertibility import invert
from formulac.cli import main
from formulac.codegen import memory_runtime
from formulac.codegen.exact import exact_equations
from formulac.codegen.memory_modes import get_memory_mode
from formulac.codegen.plan import plan_step

EXAMPLES = REPO / "examples"
FRACTIONS = st.tuples(st.integers(-40, 40).filter(bool), st.integers(1, 40)).filter(
    lambda f: abs(f[0]) <= 4 * f[1]
)


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(st.integers(-(2**40), 2**40), min_size=1, max_size=6),
    fractions=st.lists(FRACTIONS, min_size=1, max_size=40),
)
def test_times_then_divide_in_reverse_is_the_identity(values, fractions):
    """A run of exact multiplications (with the bits they drop stored) undone in reverse gives
    back every integer, and each multiplication is within 1 of the exact product."""
    store = memory_runtime._FixedStore(torch.float64)
    u = torch.tensor(values, dtype=torch.int64)
    path = [u]
    for p, q in fractions:
        if abs(float(path[-1].abs().max())) * abs(p) / q > 2**50:
            break
        path.append(store.times(path[-1], p, q, 0))
        exact = [v * p / q for v in path[-2].tolist()]
        assert all(abs(a - b) <= abs(p) + 1 for a, b in zip(path[-1].tolist(), exact))
    back = path[-1]
    for (p, q), before in zip(reversed(fractions[: len(path) - 1]), reversed(path[:-1])):
        back = store.divide(back, p, q, 0)
        assert torch.equal(back, before)


def test_the_store_puts_words_aside_and_takes_them_back():
    """1/1000 per step drops ten bits a step: the 64-bit word is put aside every few steps."""
    store = memory_runtime._FixedStore(torch.float32)
    start = torch.arange(-50, 50, dtype=torch.int64) * 123457
    u = start
    for _ in range(40):
        u = store.times(u, 1, 1000, 3) * 1000  # back to the size it had, as a step adds it
    assert len(store.sealed) >= 5
    for _ in range(40):
        u = store.divide(u // 1000, 1, 1000, 3)
    assert torch.equal(u, start) and not store.sealed


def _pair(spec, options, dtype):
    formula = formulac.load(EXAMPLES / spec)
    torch.manual_seed(0)
    standard = formula.compile(**options).to(dtype).train()
    reversible = formula.compile(**options, memory="reversible").to(dtype).train()
    reversible.load_state_dict(standard.state_dict())
    return standard, reversible


def _step(model, x, y):
    x = x.clone().requires_grad_()
    model.zero_grad()
    out = model(x)
    torch.nn.functional.cross_entropy(out, y).backward()
    grads = [x.grad] + [p.grad for p in model.parameters()]
    return out.detach(), torch.cat([g.flatten() for g in grads])


@pytest.mark.parametrize("spec", ["momentum.rec", "two_step.rec"])
def test_exact_rebuild_gradients_equal_standard_float64(spec):
    options = {"backbone": "mlp", "depth": 60, "width": 8, "input_size": 4}
    standard, reversible = _pair(spec, options, torch.float64)
    assert hasattr(reversible.layer1[0], "advance_exact")
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(4, 1, 4, 4, generator=g, dtype=torch.float64), torch.randint(0, 10, (4,), generator=g)
    out_s, grad_s = _step(standard, x, y)
    out_r, grad_r = _step(reversible, x, y)
    # the forward runs on 40-bit fixed point: it differs from standard by its roundings only
    assert float((out_r - out_s).abs().max()) <= 1e-9 * float(out_s.abs().max())
    assert float((grad_r - grad_s).norm() / grad_s.norm()) <= 1e-10
    # rebuilt exactly (60 steps dividing by 0.9 or -1/4: float rebuilding needs an anchor every 14 or 4)
    assert reversible.rebuild_errors == {"float64": 0.0} and not reversible.recomputed_segments


def test_values_too_large_for_fixed_point_are_recomputed():
    """float32 states beyond 2^27 could wrap around in 32-bit fixed point: the stage runs the
    standard forward and its backward is recomputed, so the gradient is standard's."""
    options = {"backbone": "mlp", "depth": 6, "width": 8, "input_size": 4}
    standard, reversible = _pair("momentum.rec", options, torch.float32)
    g = torch.Generator().manual_seed(1)
    x, y = 1e9 * torch.randn(4, 1, 4, 4, generator=g), torch.randint(0, 10, (4,), generator=g)
    out_s, grad_s = _step(standard, x, y)
    out_r, grad_r = _step(reversible, x, y)
    assert torch.equal(out_s, out_r)
    assert float((grad_r - grad_s).norm() / grad_s.norm()) <= 1e-5
    assert reversible.recomputed_segments == {"float32": 1}


def test_only_constant_rational_divisors_are_rebuilt_exactly():
    for spec, exact in [
        ("momentum.rec", True),
        ("two_step.rec", True),
        ("revnet.rec", False),
        ("lm_resnet.rec", False),
    ]:
        plan = get_memory_mode("reversible").plan(formulac.load(EXAMPLES / spec).rec)
        assert bool(plan.exact) == exact, spec
    irrational = formulac.parse("a = -sqrt(2)/4\nx_<n+1> = x_n + a*x_<n-1> + F(x_n)").rec
    equations, why = exact_equations(invert(irrational), plan_step(irrational))
    assert equations is None and "-sqrt(2)/4" in why and "not a rational constant" in why


def _kept_by_forward(model, x) -> int:
    """Live tensor bytes at the end of a training forward (what it keeps for the backward, and
    the output), from the profiler's allocation events."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        out = model(x)
    del out
    return sum(event.self_cpu_memory_usage for event in prof.events())


@pytest.mark.slow
def test_momentum_activation_memory_is_flat_from_depth_110_to_1202():
    """A stage of 18 steps (cifar depth 110) and of 200 (depth 1202), mlp at width 16: the
    exact rebuild keeps at most 1.25x as much (float rebuilding within 1e-5 needs an anchor
    every 14 steps, 15 of them at 200 steps)."""
    kept = {}
    for steps in (18, 200):
        torch.manual_seed(0)
        net = formulac.load(EXAMPLES / "momentum.rec").compile(
            backbone="mlp", depth=steps, width=16, input_size=4, memory="reversible"
        )
        x = torch.randn(64, 1, 4, 4, generator=torch.Generator().manual_seed(1))
        kept[steps] = _kept_by_forward(net.train(), x)
    assert kept[200] <= 1.25 * kept[18], kept


def test_training_reports_the_rebuild_checks(tmp_path, capsys):
    """The log's epoch line, metrics.jsonl and summary.json say what the checks saw (midpoint's
    blocks make 40 rebuilt steps drift: segments are recomputed)."""
    out = tmp_path / "run"
    argv = [
        "train", str(EXAMPLES / "midpoint.rec"), "--backbone", "mlp", "--depth", "40",
        "--memory", "reversible", "--lr", "0.001", "--data", "synthetic:1x4x4:4", "--limit-train", "64",
        "--limit-test", "32", "--batch-size", "32", "--epochs", "2", "--device", "cpu",
        "--threads", "1", "--no-progress", "--out", str(out), "--amp", "none",
    ]  # fmt: skip
    assert main(argv) == 0
    assert "rebuilt float32 err" in capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    rebuild = summary["rebuild"]
    assert set(rebuild) == {"largest_error", "recomputed_segments", "anchor_steps", "tolerance"}
    assert rebuild["largest_error"]["float32"] >= 0 and math.isfinite(rebuild["largest_error"]["float32"])
    assert rebuild["tolerance"]["float32"] == 1e-5
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(r["rebuild"]["errors"]["float32"] >= 0 for r in records)
    assert max(r["rebuild"]["errors"]["float32"] for r in records) == rebuild["largest_error"]["float32"]
    assert rebuild["recomputed_segments"]["float32"] == sum(
        r["rebuild"]["recomputed_segments"].get("float32", 0) for r in records
    )


def test_the_emitted_file_rebuilds_exactly_on_its_own(tmp_path):
    source = formulac.load(EXAMPLES / "momentum.rec").source(
        backbone="mlp", depth=5, width=8, input_size=4, memory="reversible"
    )
    assert "def advance_exact(self, call, store, v_n_fixed, x_n_fixed):" in source
    assert "v_n_fixed = store.divide(v_next_fixed - store.fixed(0.1 * out_F), 9, 10, 0)" in source
    assert backward_in_fresh_python(source, tmp_path, "net.rebuild_errors") == "{'float64': 0.0}"
