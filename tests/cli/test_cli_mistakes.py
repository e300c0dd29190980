"""A user's mistake on the command line of analyze, plot and report is one ``formulac: error:``
line and exit status 2, never a traceback: one table of mistakes for the three commands."""

import pytest
from cli_runner import run_cli
from fixtures_path import REPO

EXAMPLES = REPO / "examples"

# command -> (formula file, output options added when the case gives no -o)
COMMANDS = {
    "analyze": ("two_step_free.rec", []),
    "plot": ("resnet.rec", ["-o", "{tmp}/w.png"]),
    "report": ("resnet.rec", ["-o", "{tmp}/rep"]),
}

MISTAKES = [
    ("analyze", ["--set", "b=1"], "no symbol or constant 'b'"),
    ("analyze", ["--set", "a=foo"], "is not a number"),
    ("analyze", ["--set", "a=1/0"], "division by zero"),
    ("analyze", ["--set", "a=inf"], "is not a number"),
    ("analyze", ["--set", "a"], "NAME=VALUE"),
    ("analyze", ["--depth", "-3"], "whole number"),
    ("analyze", ["--params", "maybe"], "invalid choice"),
    ("analyze", ["--exact"], "--exact goes with --json"),
    ("plot", ["--depth", "0"], "expected a positive whole number"),
    ("plot", ["--depth", "many"], "expected a positive whole number"),
    ("plot", ["-o", "{tmp}/no/such/dir/w.png"], "does not exist"),
    ("plot", ["-o", "{tmp}/w.txt"], "extension"),
    ("plot", ["-o", "{tmp}"], "is a directory"),
    ("plot", ["--kind", "graph", "--depth", "500"], "too large"),
    ("plot", ["--kind", "roots", "--log"], "--kind weights only"),
    ("plot", ["--block", "Z"], "no block Z"),
    ("plot", ["--set", "zz=1"], "no symbol or constant 'zz' in"),
    ("plot", ["--set", "a=banana"], "not a number"),
    ("plot", ["--kind", "pie"], "invalid choice"),
    ("report", ["--depth", "0"], "expected a positive whole number"),
    ("report", ["--depth", "100000"], "too large"),
    ("report", ["-o", "{file}"], "is a file, not a directory"),
    ("report", ["--set", "zz=2"], "no symbol or constant 'zz' in"),
]


@pytest.mark.parametrize("command, args, message", MISTAKES)
def test_mistake_is_one_error_line_and_exit_2(tmp_path, capsys, command, args, message):
    formula, output = COMMANDS[command]
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    if "-o" not in args:
        args = args + output
    args = [a.replace("{tmp}", str(tmp_path)).replace("{file}", str(a_file)) for a in args]
    code, out, err = run_cli(capsys, command, EXAMPLES / formula, *args)
    assert code == 2 and out == ""
    assert "formulac: error:" in err and message in err
    assert "Traceback" not in err
