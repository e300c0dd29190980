"""Long and deep inputs: no RecursionError anywhere, time linear in the size, limits refused at once.

Chains of 1,000 constants (in either order) and 1,000 same-step states each reading the next go
through ``check``, ``analyze`` and ``compile``; a 20,000-line file parses in seconds; a file
beyond a documented limit is refused with the limit and its position.
"""

from __future__ import annotations

import time

import pytest
import sympy

from formulac.analysis import analyze
from formulac.cli import main
from formulac.errors import SourceError
from formulac.ir import BlockCall, n, state
from formulac.limits import MAX_STATEMENTS, MAX_VALUE_NODES
from formulac.parse import parse

N = 1000


def forward_chain(n: int) -> str:
    return "".join(f"c{i} = c{i + 1} + 1\n" for i in range(n)) + f"c{n} = 0\nx_<n+1> = x_n + c0*F(x_n)\n"


def backward_chain(n: int) -> str:
    return "c0 = 0\n" + "".join(f"c{i + 1} = c{i} + 1\n" for i in range(n)) + f"x_<n+1> = x_n + c{n}*F(x_n)\n"


def same_step_states(n: int) -> str:
    lines = [f"x{i}_<n+1> = x{i + 1}_<n+1> + F(x{i}_n)" for i in range(n)]
    return "output x0\n" + "\n".join(lines) + f"\nx{n}_<n+1> = x{n}_n + G(x{n}_n)\n"


@pytest.mark.parametrize("text", [forward_chain(N), backward_chain(N)], ids=["forward", "backward"])
def test_constant_chains(text, tmp_path, capsys):
    rec = parse(text)
    x_n = state("x", n)
    assert rec.resolved_rhs("x") == x_n + N * BlockCall(sympy.Symbol("F"), n, x_n)
    path = tmp_path / "chain.rec"
    path.write_text(text)
    for command in (["check", str(path)], ["analyze", str(path), "--depth", "3", "--json"]):
        assert main(command) == 0, capsys.readouterr().err
    assert analyze(rec, 3).block_weights["F"] == [N, N, N]


def test_same_step_states_each_reading_the_next(tmp_path, capsys):
    text = same_step_states(N)
    rec = parse(text)
    assert rec.states[0] == f"x{N}" and rec.states[-1] == "x0", "evaluated in dependency order"
    an = analyze(rec, 2)
    # x0 at t+1 is x_N at t+1 plus every F(x_i at t): the F of the last step weigh 1, those of
    # the step before reach x0_2 only inside block arguments (weight 0); x_N advances by G
    assert an.block_weights.pop("G") == [1, 1]
    assert len(an.block_weights) == N and all(w == [0, 1] for w in an.block_weights.values())
    path = tmp_path / "states.rec"
    path.write_text(text)
    assert main(["check", str(path)]) == 0
    assert main(["analyze", str(path), "--depth", "2"]) == 0
    assert main(["unroll", str(path), "--steps", "1"]) == 0
    assert "Traceback" not in capsys.readouterr().err


def test_same_step_states_compile():
    import torch

    import formulac

    net = formulac.compile(same_step_states(200), backbone="mlp", depth=2, in_channels=1, num_classes=2)
    assert net(torch.zeros(1, 1, 28, 28)).shape == (1, 2)


def test_twenty_thousand_lines_in_seconds():
    """Quadratic work would take minutes here (it did: 400 lines took 20-37 s)."""
    start = time.process_time()
    rec = parse(forward_chain(20_000))
    assert rec.substitutions()[sympy.Symbol("c0")] == 20_000
    assert time.process_time() - start < 60  # a few seconds on an idle machine; the bench measures it


def test_too_many_statements_is_refused_at_once():
    text = "x_<n+1> = x_n + F(x_n)\n" + "a = 1;" * (MAX_STATEMENTS + 5)
    text = text.replace(";", "\n", MAX_STATEMENTS - 1)  # the limit falls on the last line
    start = time.process_time()
    with pytest.raises(SourceError) as info:
        parse(text, "big.rec")
    assert time.process_time() - start < 5
    assert "too many statements" in info.value.message and str(MAX_STATEMENTS) in info.value.message
    assert info.value.location.line == MAX_STATEMENTS + 1


def test_values_that_double_with_each_constant_are_refused():
    lines = [f"c{i} = c{i + 1} + b*c{i + 1}" for i in range(30)]
    text = "\n".join(lines) + "\nc30 = b\nx_<n+1> = c0*x_n + F(x_n)"
    with pytest.raises(SourceError) as info:
        parse(text, "big.rec")
    assert f"more than {MAX_VALUE_NODES} terms" in info.value.message
    line = info.value.location.line
    assert 10 < line < 30 and info.value.message.startswith(f"constant c{line - 1} is too large")


def test_deep_non_linear_unrolling_is_refused_not_a_crash(tmp_path, capsys):
    path = tmp_path / "post.rec"
    path.write_text("x_<n+1> = relu(x_n + F(x_n))\n")
    assert main(["unroll", str(path), "--steps", "100"]) == 0
    assert main(["unroll", str(path), "--steps", "5000"]) == 2
    err = capsys.readouterr().err
    assert "nest more than" in err and "use fewer steps" in err and "Traceback" not in err


def test_nested_tanh_is_fine():
    """docs/language.md once limited tanh to 4 levels; the language's tanh is opaque to SymPy's
    simplification, so nesting costs linear time, and a nested constant is a number."""
    k = 40
    start = time.process_time()
    rec = parse("x_<n+1> = x_n + " + "tanh(" * k + "x_n" + ")" * k + " + F(x_n)")
    assert analyze(rec, 3).linear is False
    rec = parse("c = " + "tanh(" * k + "1" + ")" * k + "\nx_<n+1> = c*x_n + F(x_n)")
    data = analyze(rec, 3).to_json()
    assert isinstance(data["rate"], float) and 0 < data["rate"] < 1 and data["stability"] == "contracting"
    assert time.process_time() - start < 60
