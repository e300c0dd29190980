"""Bad stream formulas are one located source error (FILE:LINE:COL, a caret, exit status 2),
never a traceback or a network of the wrong shape."""

from __future__ import annotations

import pytest

from formulac import parse
from formulac.errors import SourceError
from tests.cli_runner import run_cli
from tests.hyper_connections_package import compact_hyper_connections

HC = compact_hyper_connections(4)

# (id, text, line, column, fragment of the message)
BAD = [
    ("zero-streams", HC.replace("h[4]", "h[0]"), 1, 10, "from 1 to 8"),
    ("too-many-streams", HC.replace("h[4]", "h[9]"), 1, 10, "from 1 to 8"),
    (
        "matrix-wrong-size",
        HC.replace("res_n[4,4]", "res_n[3,3]"),
        6,
        11,
        "of shape [3,3] cannot be applied to 4 streams",
    ),
    ("matrix-not-square", HC.replace("res_n[4,4]", "res_n[4,3]"), 2, 12, "[k,k], not [4,3]"),
    (
        "vector-wrong-size",
        HC.replace("pre_n[4] = onehot(0)", "pre_n[2] = onehot(0)"),
        6,
        11,
        "cannot be applied to 4",
    ),
    ("block-reads-streams", HC.replace("F(pre_n @ h_n)", "F(h_n)"), 6, 11, "reads one tensor, not 4 streams"),
    (
        "output-is-streams",
        HC.replace("sum(h_<n+1>)", "h_<n+1>"),
        7,
        11,
        "add the streams, as in sum(h_<n+1>)",
    ),
    ("stream-without-index", HC.replace("res_n @ h_n +", "res_n @ h +"), 6, 19, "needs an index"),
    ("stream-reads-a-lag", HC.replace("res_n @ h_n +", "res_n @ h_<n-1> +"), 6, 11, "is read at n"),
    ("matrix-times-stream", HC.replace("res_n @ h_n", "res_n*h_n"), 6, 11, "apply a matrix with @"),
    ("stream-plus-tensor", HC.replace("res_n @ h_n", "x_n"), 6, 11, "cannot add"),
    ("vector-init-overflows", HC.replace("post_n[4] = 1", "post_n[4] = -1e400"), 4, 19, "beyond the range"),
    ("matrix-init-underflows", HC.replace("= identity", "= 1e-400"), 2, 20, "rounds to 0"),
    ("onehot-outside", HC.replace("onehot(0)", "onehot(4)"), 3, 18, "outside pre_n[4]"),
    ("identity-of-a-vector", HC.replace("onehot(0)", "identity"), 3, 18, "initial value of a matrix"),
    (
        "sinkhorn-of-a-state",
        HC.replace("res_n @ h_n", "sinkhorn(x_n) @ h_n"),
        6,
        20,
        "constrains a vector or matrix",
    ),
    ("sinkhorn-of-a-vector", HC.replace("post_n*F", "sinkhorn(post_n)*F"), 6, 11, "is a vector"),
    ("stream-without-equation", "stream g[2]\n" + HC, 1, 8, "stream g has no equation"),
    ("at-without-streams", "x_<n+1> = x_n @ x_n + F(x_n)", 1, 15, "@ applies"),
    (
        "unused-shaped-param",
        HC.replace("param post_n[4] = 1", "param post_n[4] = 1\nparam gate_n[4] = 0"),
        5,
        13,
        "not used",
    ),
    (
        "shared-shaped-param",
        HC.replace("param post_n[4] = 1", "param post[4] = 1").replace("post_n*", "post*"),
        4,
        7,
        "one per step",
    ),
]


@pytest.mark.parametrize("text, line, column, fragment", [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_stream_formulas_are_one_located_source_error(text, line, column, fragment):
    with pytest.raises(SourceError) as info:
        parse(text)
    assert fragment in info.value.message, info.value.format()
    assert (info.value.location.line, info.value.location.column) == (line, column), info.value.format()


def test_the_command_line_prints_file_line_column_and_exits_2(tmp_path, capsys):
    path = tmp_path / "bad.rec"
    path.write_text(HC.replace("F(pre_n @ h_n)", "F(h_n)"))
    status, _out, err = run_cli(capsys, "check", path)
    assert status == 2
    assert err.startswith(f"{path}:6:11: error: block F reads one tensor, not 4 streams"), err
    assert "^" in err and "Traceback" not in err
