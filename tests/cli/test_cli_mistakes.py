"""A user's mistake on the command line of analyze, plot and report is one ``formulac: error:``
line and exit status 2, never a traceback: one table of mistakes for the three commands
(``cli_mistakes.cases``, read by :mod:`case_files`)."""

from pathlib import Path

from case_files import each_case, read_command_cases
from cli_runner import run_cli
from fixtures_path import REPO

MISTAKES = read_command_cases(Path(__file__).with_name("cli_mistakes.cases"))


@each_case(MISTAKES)
def test_mistake_is_one_error_line_and_exit_2(tmp_path, capsys, case):
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    code, out, err = run_cli(capsys, *case.argv(examples=REPO / "examples", tmp=tmp_path, file=a_file))
    assert code == 2 and out == ""
    assert "formulac: error:" in err and case.message in err
    assert "Traceback" not in err
