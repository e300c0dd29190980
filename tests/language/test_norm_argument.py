"""``norm`` of something that holds no state (``norm(2)``, ``norm(k_n)``, a constant ``a =
norm(2)``) is refused where it is written, FILE:LINE:COL at ``norm``, saying that norm
normalises a state (it said "compile: a number of the formula is not a finite float" at 1:1,
or "the coefficient norm(2) is undefined" at the line that used the constant)."""

from __future__ import annotations

import pytest
from cli_runner import run_cli

import formulac

CASES = [
    ("x_<n+1> = x_n + norm(2)*F(x_n)\n", 1, 17, "norm(2)"),
    ("a = norm(2)\nx_<n+1> = x_n + a*F(x_n)\n", 1, 5, "norm(2)"),
    ("param k_n = 1\nx_<n+1> = x_n + norm(k_n)*F(x_n)\n", 2, 17, "norm(k_n)"),
    ("symbol s\nx_<n+1> = norm(s + 1)*x_n + F(x_n)\n", 2, 11, "norm(1 + s)"),
]


@pytest.mark.parametrize("text, line, column, shown", CASES)
def test_norm_without_a_state_is_a_located_error(text, line, column, shown, tmp_path, capsys):
    path = tmp_path / "norm.rec"
    path.write_text(text)
    for command in ("check", "compile"):
        status, _, err = run_cli(
            capsys, command, path, *(["-o", tmp_path / "m.py"] if command == "compile" else [])
        )
        assert status == 2
        first = err.splitlines()[0]
        assert first == (
            f"{path}:{line}:{column}: error: norm normalises a state over its features: its argument "
            f"must contain a state (norm(x_n), norm(x_n + F(x_n))), not {shown}"
        )
        shown_line, caret = err.splitlines()[1:3]
        assert caret.strip() == "^" and caret.index("^") == shown_line.index("norm")


@pytest.mark.parametrize(
    "text", ["x_<n+1> = norm(x_n) + F(norm(x_n))\n", "x_<n+1> = x_n + norm(F(x_n) + x_0)\n"]
)
def test_norm_of_a_state_is_accepted_and_compiles(text):
    formulac.parse(text).compile(backbone="vit", depth=1, dim=8, heads=2, input_size=8)
