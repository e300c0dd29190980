"""Bad input-dependent coefficients (``dynamic(...)``) are one located source error
(FILE:LINE:COL, a caret, exit status 2), never a traceback or a network of the wrong shape."""

from __future__ import annotations

import pytest
from case_files import expect_source_error

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

# (id, text, line, column, fragment of the message)
BAD = [
    ("map-of-a-parameter", GATE.replace("dynamic(x_n)", "dynamic(g_n)"), 1, 26, "maps a state"),
    ("map-of-a-number", GATE.replace("dynamic(x_n)", "dynamic(2)"), 1, 26, "maps a state"),
    ("map-of-a-lag", GATE.replace("dynamic(x_n)", "dynamic(x_<n-1>)"), 1, 26, "maps a state"),
    ("map-of-a-block", GATE.replace("dynamic(x_n)", "dynamic(F(x_n))"), 1, 26, "maps a state"),
    (
        "map-of-two-states",
        GATE.replace("dynamic(x_n)", "dynamic(x_n, x_n)"),
        1,
        31,
        "names its map: tanh or linear",
    ),
    (
        "unknown-map",
        GATE.replace("dynamic(x_n)", "dynamic(x_n, relu)"),
        1,
        31,
        "names its map: tanh or linear",
    ),
    ("map-as-a-number", GATE.replace("dynamic(x_n)", "dynamic(x_n, 1)"), 1, 31, "names its map"),
    (
        "three-arguments",
        GATE.replace("dynamic(x_n)", "dynamic(x_n, linear, tanh)"),
        1,
        18,
        "exactly one state",
    ),
    (
        "linear-map-of-a-parameter",
        GATE.replace("dynamic(x_n)", "dynamic(g_n, linear)"),
        1,
        26,
        "maps a state",
    ),
    ("map-in-an-equation", GATE.replace("(1 - sigmoid(g_n))*x_n", "dynamic(x_n)"), 2, 33, "initial value"),
    ("scaled-map", GATE.replace("-1 + dynamic(x_n)", "2*dynamic(x_n)"), 1, 13, "static value plus one"),
    ("two-maps", GATE.replace("-1 + dynamic(x_n)", "dynamic(x_n) + dynamic(x_n)/2"), 1, 13, "plus one"),
    ("shared-parameter", GATE.replace("g_n", "g"), 1, 11, "computed at each step"),
    (
        "vector-from-one-tensor",
        DYNAMIC_HC.replace("onehot(0) + dynamic(h_n)", "onehot(0) + dynamic(x_n)"),
        3,
        18,
        "x is one tensor",
    ),
    (
        "number-from-streams",
        DYNAMIC_HC.replace("param post_n[2] = 1 + dynamic(h_n)", "param post_n = 1 + dynamic(h_n)"),
        4,
        16,
        "is a vector [2] or a matrix [2,2], not post_n",
    ),
    (
        "vector-of-the-wrong-size",
        "stream g[3]\ng_0 = x_0\ng_<n+1> = g_n\n"
        + DYNAMIC_HC.replace(
            "param pre_n[2] = onehot(0) + dynamic(h_n)", "param pre_n[2] = onehot(0) + dynamic(g_n)"
        ),
        6,
        18,
        "(3 streams)",
    ),
    (
        "sinkhorn-of-a-dynamic-vector",
        DYNAMIC_HC.replace("pre_n @ h_n", "sinkhorn(pre_n) @ h_n"),
        6,
        43,
        "pre is a vector",
    ),
    (
        "dynamic-number-times-static-vector",
        DYNAMIC_HC.replace(
            "param post_n[2] = 1 + dynamic(h_n)", "param post_n[2] = 1\nparam g_n = 0 + dynamic(x_n)"
        ).replace("post_n*F", "g_n*post_n*F"),
        7,
        11,
        "does not combine with a static vector",
    ),
    (
        "dynamic-plus-static-vector",
        DYNAMIC_HC.replace(
            "param post_n[2] = 1 + dynamic(h_n)", "param post_n[2] = 1\nparam w_n[2] = 0 + dynamic(h_n)"
        ).replace("post_n*F", "(post_n + w_n)*F"),
        7,
        11,
        "does not combine with a static vector",
    ),
]


@pytest.mark.parametrize("text, line, column, fragment", [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_dynamic_coefficients_are_one_located_source_error(text, line, column, fragment):
    expect_source_error(text, line, column, fragment)


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
