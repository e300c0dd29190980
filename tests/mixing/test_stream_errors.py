"""Bad stream formulas are one located source error (FILE:LINE:COL, a caret, exit status 2),
never a traceback or a network of the wrong shape."""

from __future__ import annotations

from pathlib import Path

from case_files import each_case, expect_source_error, read_cases

from tests.cli_runner import expect_check_error
from tests.hyper_connections_package import compact_hyper_connections

HC = compact_hyper_connections(4)

BAD = read_cases(Path(__file__).with_name("bad_streams.cases"))


@each_case(BAD)
def test_bad_stream_formulas_are_one_located_source_error(case):
    expect_source_error(case.text, case.line, case.column, case.message)


def test_the_command_line_prints_file_line_column_and_exits_2(tmp_path, capsys):
    bad = HC.replace("F(pre_n @ h_n)", "F(h_n)")
    expect_check_error(
        capsys, tmp_path / "bad.rec", bad, "6:11: error: block F reads one tensor, not 4 streams"
    )
