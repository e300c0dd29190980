"""An integer coefficient beyond int64 (``--set a=1e30``, ``a = 123456789012345678901234567890``)
compiles to a float literal: torch refuses Python ints past int64, so the generated forward died
with "OverflowError: int too big to convert" (in ``train``, ``info --memory`` and a compiled
file). The reference is the same coefficient plus 1/2, which was always written as a quotient
of integers and rounds to the same double. (Past float32's range, about 3.4e38, the parser refuses
it: tests/language/test_step_coefficients.py.)"""

from __future__ import annotations

import pytest
import sympy
import torch
from cli_runner import run_cli
from fixtures_path import REPO
from hypothesis import given, settings
from hypothesis import strategies as st

import formulac

FREE = REPO / "examples" / "two_step_free.rec"


@settings(max_examples=8, deadline=None, derandomize=True, database=None)
@given(st.integers(63, 127), st.sampled_from([1, -1]))
def test_a_huge_integer_computes_as_its_double(bits, sign):
    integer = sign * sympy.Integer(2) ** bits
    options = {"backbone": "mlp", "depth": 2, "width": 4, "input_size": 2, "num_classes": 2}
    torch.manual_seed(0)
    exact = formulac.load(FREE).bind(a=integer).compile(**options).double().eval()
    nearby = formulac.load(FREE).bind(a=integer + sympy.Rational(1, 2)).compile(**options).double().eval()
    nearby.load_state_dict(exact.state_dict())
    x = torch.randn(3, 1, 2, 2, dtype=torch.float64) * 1e-300
    with torch.no_grad():
        torch.testing.assert_close(exact(x), nearby(x), rtol=0, atol=0)


def test_info_and_compile_with_a_huge_integer(tmp_path, capsys):
    status, out, err = run_cli(capsys, "info", FREE, "--set", "a=1e30", "--backbone", "mlp", "--memory")
    assert status == 0, err
    assert "reversible" in out
    status, _, err = run_cli(capsys, "compile", FREE, "--set", "a=1e30", "-o", tmp_path / "m.py")
    assert status == 0, err
    source = (tmp_path / "m.py").read_text()
    assert "x_next = x_n + 1e+30 * x_nm1 + out_F" in source
    assert "* 1" + "0" * 30 not in source and "/ 1" + "0" * 30 not in source


@pytest.mark.parametrize("value", [2**53, -(2**53)])
def test_integers_up_to_two_to_the_53_stay_integers(value, tmp_path, capsys):
    status, _, err = run_cli(capsys, "compile", FREE, "--set", f"a={value}", "-o", tmp_path / "m.py")
    assert status == 0, err
    assert f"{abs(value)} * x_nm1" in (tmp_path / "m.py").read_text()
