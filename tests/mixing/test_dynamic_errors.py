"""Bad input-dependent coefficients (``dynamic(...)``) are one located source error
(FILE:LINE:COL, a caret, exit status 2), never a traceback or a network of the wrong shape."""

from __future__ import annotations

from pathlib import Path

from case_files import each_case, expect_source_error, read_cases

from formulac import parse
from tests.cli_runner import expect_check_error

DYNAMIC_HC = """stream h[2]
param res_n[2,2] = identity + dynamic(h_n)
param pre_n[2] = onehot(0) + dynamic(h_n)
param post_n[2] = 1 + dynamic(h_n)
h_0 = x_0
h_<n+1> = res_n @ h_n + post_n*F(pre_n @ h_n)
x_<n+1> = sum(h_<n+1>)/2
"""
GATE = """param g_n = -1 + dynamic(x_n)
x_<n+1> = sigmoid(g_n)*F(x_n) + (1 - sigmoid(g_n))*x_n
"""

BAD = read_cases(Path(__file__).with_name("bad_dynamic.cases"))


@each_case(BAD)
def test_bad_dynamic_coefficients_are_one_located_source_error(case):
    expect_source_error(case.text, case.line, case.column, case.message)


def test_the_command_line_prints_file_line_column_and_exits_2(tmp_path, capsys):
    bad = GATE.replace("dynamic(x_n)", "dynamic(g_n)")
    expect_check_error(capsys, tmp_path / "bad.rec", bad, "1:26: error: dynamic(...) maps a state")


def test_a_good_dynamic_formula_parses_and_keeps_its_text():
    rec = parse(DYNAMIC_HC).rec
    assert str(rec.compact.params["pre"].dynamic) == "h[n]"
    assert "param pre_n[2] = onehot(0) + dynamic(h_n)" in rec.text


def test_a_named_map_is_kept_and_written_back():
    """dynamic(h_n, tanh) is dynamic(h_n); dynamic(h_n, linear) keeps its map in the text, which
    reads back as the same formula."""
    linear = parse(DYNAMIC_HC.replace("dynamic(h_n)", "dynamic(h_n, linear)")).rec
    assert {p.dynamic_map for p in linear.compact.params.values()} == {"linear"}
    assert "param pre_n[2] = onehot(0) + dynamic(h_n, linear)" in linear.text
    assert parse(linear.text).rec.text == linear.text
    tanh = parse(DYNAMIC_HC.replace("dynamic(h_n)", "dynamic(h_n, tanh)")).rec
    assert tanh.text == parse(DYNAMIC_HC).rec.text
