"""Irrational coefficients whose roots are complex (``a = -sqrt(2)/4`` in a file): the analysis
decides stability and the rebuild growth exactly (it crashed with "Cannot convert complex to
float": SymPy cannot tell that ``sqrt(1 - sqrt(2))`` is imaginary), and analyze, compile and
train agree.

``x_<n+1> = x_n + a*x_<n-1> + F(x_n)`` has the roots of ``λ^2 - λ - a``; the reference is mpmath
at 50 digits (independent of SymPy): the stability class from the largest modulus, the growth of
a rebuilt error from the smallest (the backward step's spectral radius is 1 / min |root|).
"""

from __future__ import annotations

import json

import mpmath
import pytest
import torch
from cli_runner import QUIET_CPU, run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import formulac
from formulac.analysis import analyze
from formulac.codegen.memory_modes import get_memory_mode
from formulac.codegen.reversible import ANCHOR_TOLERANCE
from formulac.errors import UsageError

TWO_STEP = "a = {a}\nx_<n+1> = x_n + a*x_<n-1> + F(x_n)\n"


def _reference(a: mpmath.mpf) -> tuple[str, float]:
    """(stability, growth of a rebuilt error per step) of λ^2 - λ - a, from mpmath."""
    with mpmath.workdps(50):
        moduli = [abs(r) for r in mpmath.polyroots([1, -1, -a], maxsteps=200, extraprec=100)]
        top = max(moduli)
        # an irrational a never puts a root on the unit circle: a class by a clear margin
        assert abs(top - 1) > mpmath.mpf("1e-30")
        return ("expanding" if top > 1 else "contracting"), float(1 / min(moduli))


# a = sign * p/q * sqrt(k) + shift, k not a square: irrational, and complex roots where a < -1/4
coefficients = st.tuples(
    st.sampled_from([1, -1]),
    st.integers(1, 9),
    st.integers(1, 40),
    st.sampled_from([2, 3, 5, 7, 10]),
    st.sampled_from([0, -1, 1]),
)


def _text_and_value(sign, p, q, k, shift):
    text = f"{'-' if sign < 0 else ''}{p}*sqrt({k})/{q}" + (f" + {shift}/8" if shift else "")
    with mpmath.workdps(50):
        value = sign * mpmath.mpf(p) * mpmath.sqrt(k) / q + mpmath.mpf(shift) / 8
    return text, value


@settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(coefficients)
def test_stability_growth_and_anchor_plan_against_mpmath(case):
    text, value = _text_and_value(*case)
    rec = formulac.parse(TWO_STEP.format(a=text)).rec
    stability, growth = _reference(value)
    result = analyze(rec, 3, paths=False)
    assert result.stability == stability, text
    rebuild = result.reconstruction
    assert float(rebuild.growth) == pytest.approx(growth, rel=1e-12), text
    # compile plans its anchors from the same analysis, or refuses the mode for the same reason
    try:
        plan = get_memory_mode("reversible").plan(rec)
    except UsageError as refusal:
        assert rebuild.max_run("float32", ANCHOR_TOLERANCE["float32"]) < 2, text
        assert "useless" in str(refusal)
    else:
        assert plan.anchor_steps["float32"] == rebuild.max_run("float32", ANCHOR_TOLERANCE["float32"])


def test_the_reported_file_through_every_command(tmp_path, capsys):
    """The reproduction (a file constant ``a = -sqrt(2)/4``): complex roots of modulus
    2^(-3/4) ≈ 0.5946, contracting; analyze, info --memory, compile and train agree."""
    path = tmp_path / "irrational.rec"
    path.write_text(TWO_STEP.format(a="-sqrt(2)/4"))
    status, out, err = run_cli(capsys, "analyze", path, "--json")
    assert status == 0, err
    written = json.loads(out)
    assert written["stability"] == "contracting"
    assert {round(r["imag"], 12) for r in written["roots"]} == {round(0.5 * (2**0.5 - 1) ** 0.5, 12)} | {
        -round(0.5 * (2**0.5 - 1) ** 0.5, 12)
    }
    assert all(r["modulus"] == pytest.approx(2**-0.75, rel=1e-14) for r in written["roots"])
    assert float(written["reconstruction"]["growth"]) == pytest.approx(2**0.75, rel=1e-14)
    status, out, err = run_cli(capsys, "info", path, "--backbone", "mlp", "--memory", "--json")
    assert status == 0, err
    modes = {e["mode"]: e for e in json.loads(out)["memory"]}
    assert "reversible" in modes and modes["reversible"].get("note") is None, modes
    status, _, err = run_cli(capsys, "compile", path, "--memory", "reversible", "-o", tmp_path / "m.py")
    assert status == 0, err
    status, _, err = run_cli(
        capsys, "train", path, "--backbone", "mlp", "--depth", "4", "--memory", "reversible",
        "--data", "synthetic:3x8x8:4", "--epochs", "1", "--limit-train", "64", "--limit-test", "32",
        "--amp", "none", "-o", tmp_path / "run", *QUIET_CPU,
    )  # fmt: skip
    assert status == 0, err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["final_train_loss"] == summary["final_train_loss"]  # not NaN


def test_reversible_gradients_equal_standard_float64():
    formula = formulac.parse(TWO_STEP.format(a="-sqrt(2)/4"))
    options = {"backbone": "mlp", "depth": 12, "width": 16, "input_size": 6, "num_classes": 3}
    torch.manual_seed(0)
    standard = formula.compile(**options).double().train()
    reversible = formula.compile(**options, memory="reversible").double().train()
    reversible.load_state_dict(standard.state_dict())
    x = torch.randn(5, 1, 6, 6, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0, 1])
    for model in (standard, reversible):
        torch.nn.functional.cross_entropy(model(x), y).backward()
    for (name, p), q in zip(standard.named_parameters(), reversible.parameters(), strict=True):
        assert torch.allclose(p.grad, q.grad, rtol=1e-9, atol=1e-12), name


@pytest.mark.parametrize("exponent", [20, 30, 38])
def test_a_tiny_growth_is_not_rounded_to_zero(exponent):
    """``a = -10^k``: complex roots of modulus 10^(k/2), so a rebuilt error shrinks by
    10^(-k/2) per step; SymPy's nsimplify turned 1e-150 into 0. (k stops at 38: a larger
    coefficient is beyond float32 and refused, tests/language/test_step_coefficients.py.)"""
    rec = formulac.parse(TWO_STEP.format(a=f"-1e{exponent}")).rec
    growth = 10.0 ** (-exponent / 2)  # a complex pair has |r|^2 = -a (the product of the roots)
    assert float(analyze(rec, 3, paths=False).reconstruction.growth) == pytest.approx(growth, rel=1e-12)
