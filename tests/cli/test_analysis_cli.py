"""``formulac check | unroll | analyze | diff``: output, exit status, errors, no torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cli_runner import run_cli

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def files(tmp_path):
    def write(name, text):
        p = tmp_path / name
        p.write_text(text)
        return str(p)

    return {
        "resnet": write("resnet.rec", "# ResNet\nx_<n+1> = x_n + F(x_n)\n"),
        "two": write("two.rec", "a = -0.25\nx_<n+1> = x_n + a*x_<n-1> + F(x_n)\n"),
        "free": write("free.rec", "symbol a\nx_<n+1> = x_n + a*x_<n-1> + F(x_n)\n"),
        "post": write("post.rec", "x_<n+1> = relu(x_n + F(x_n))\n"),
        "momentum": write(
            "momentum.rec", "g = 0.9\nv_<n+1> = g*v_n + (1 - g)*F(x_n)\nx_<n+1> = x_n + v_<n+1>\n"
        ),
        "bad": write("bad.rec", "a = 1\nx_<n+1> = x_n + F(x_<n+2>)\n"),
        "syntax": write("syntax.rec", "x_<n+1> = x_n + * F(x_n)\n"),
    }


# -- check -------------------------------------------------------------------------------------


def test_check_ok_lines(capsys, files):
    code, out, err = run_cli(capsys, "check", files["resnet"], files["two"], files["post"], files["momentum"])
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0] == f"{files['resnet']}: ok (order 1, 1 block, linear)"
    assert lines[1] == f"{files['two']}: ok (order 2, 1 block, linear)"
    assert lines[2] == f"{files['post']}: ok (order 1, 1 block, non-linear)"
    assert lines[3] == f"{files['momentum']}: ok (order 1, 2 states, 1 block, linear)"


def test_check_reports_every_error_and_exits_2(capsys, files, tmp_path):
    missing = str(tmp_path / "missing.rec")
    code, out, err = run_cli(capsys, "check", files["bad"], files["resnet"], files["syntax"], missing)
    assert code == 2
    assert out.strip() == f"{files['resnet']}: ok (order 1, 1 block, linear)"
    assert f"{files['bad']}:2:" in err and "error:" in err and "future" in err
    assert f"{files['syntax']}:1:" in err and "^" in err
    assert "formulac: error: cannot read" in err
    assert "Traceback" not in err


def test_check_examples_zoo(capsys):
    paths = sorted(str(p) for p in EXAMPLES.glob("*.rec"))
    assert len(paths) >= 16, "the zoo of examples/"
    code, out, err = run_cli(capsys, "check", *paths)
    assert code == 0, err
    assert len(out.splitlines()) == len(paths)


# -- unroll ------------------------------------------------------------------------------------


def test_unroll_text_and_latex(capsys, files):
    code, out, _ = run_cli(capsys, "unroll", files["resnet"], "--steps", "3")
    assert code == 0 and out.strip() == "x_3 = x_0 + F_0(x_0) + F_1(x_1) + F_2(x_2)"
    code, out, _ = run_cli(capsys, "unroll", files["resnet"], "--steps", "2", "--latex")
    assert code == 0 and out.startswith("x_{2} = ") and r"F_{1}\left(x_{1}\right)" in out
    code, out, _ = run_cli(capsys, "unroll", files["post"], "--steps", "2")
    assert out.strip() == "x_2 = relu(F_1(x_1) + relu(F_0(x_0) + x_0))"


def test_unroll_with_set(capsys, files):
    code, out, _ = run_cli(capsys, "unroll", files["free"], "--steps", "3", "--set", "a=1/2")
    assert code == 0 and out.strip() == "x_3 = 11*x_0/4 + 3*F_0(x_0)/2 + F_1(x_1) + F_2(x_2)"


def test_unroll_needs_steps(capsys, files):
    code, _, err = run_cli(capsys, "unroll", files["resnet"])
    assert code == 2 and "formulac: error:" in err


# -- analyze -----------------------------------------------------------------------------------


def test_analyze_text(capsys, files):
    code, out, err = run_cli(capsys, "analyze", files["two"], "--depth", "4")
    assert code == 0 and err == ""
    assert "block weights in x_4" in out and "contracting" in out and "consistent   no" in out


def test_analyze_json_contract(capsys, files):
    code, out, _ = run_cli(capsys, "analyze", files["two"], "--depth", "3", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["order"] == 2 and data["linear"] is True and data["depth"] == 3
    assert data["block_weights"] == {"F": [0.75, 1, 1]}
    assert data["initial_weights"] == {"x_0": 0.3125}
    assert data["characteristic_polynomial"] == "λ**2 - λ + 1/4"
    assert data["roots"][0]["multiplicity"] == 2 and data["roots"][0]["modulus"] == 0.5
    assert data["stability"] == "contracting" and data["consistent"] is False
    assert data["path_lengths"] and data["exact"] is None
    code, out, _ = run_cli(capsys, "analyze", files["two"], "--depth", "3", "--json", "--exact")
    data = json.loads(out)
    assert data["exact"]["block_weights"]["F"] == ["3/4", "1", "1"]
    assert data["exact"]["initial_weights"]["x_0"] == "5/16"


def test_analyze_set_binds_free_symbol(capsys, files):
    _, out, _ = run_cli(capsys, "analyze", files["free"], "--depth", "3", "--json")
    data = json.loads(out)
    assert data["free_symbols"] == ["a"] and data["block_weights"]["F"][0] == "a + 1"
    assert data["stability"] is None and any("a < 0" in note for note in data["notes"])
    _code, out, _ = run_cli(capsys, "analyze", files["free"], "--depth", "3", "--json", "--set", "a=-0.25")
    data = json.loads(out)
    assert data["free_symbols"] == [] and data["block_weights"]["F"][0] == 0.75
    assert data["stability"] == "contracting"


def test_analyze_nonlinear_json_nulls(capsys, files):
    code, out, _ = run_cli(capsys, "analyze", files["post"], "--json")
    data = json.loads(out)
    assert code == 0 and data["linear"] is False and data["depth"] == 10
    assert data["block_weights"] is None and data["stability"] is None and data["consistent"] is None
    assert any("relu" in note for note in data["notes"])


def test_analyze_bad_file(capsys, files):
    code, out, err = run_cli(capsys, "analyze", files["bad"])
    assert code == 2 and out == ""
    assert err.startswith(f"{files['bad']}:2:") and ": error: " in err


# -- diff --------------------------------------------------------------------------------------


def test_diff_exit_status_and_output(capsys, files, tmp_path):
    code, out, _ = run_cli(capsys, "diff", files["resnet"], files["two"], "--depth", "4")
    assert code == 1
    assert "are different" in out and "block weights that differ" in out
    same = tmp_path / "same.rec"
    same.write_text("x_<n+1> = F(x_n) + x_n\n")
    code, out, _ = run_cli(capsys, "diff", files["resnet"], str(same))
    assert code == 0 and "are the same" in out


def test_diff_json_and_set(capsys, files):
    code, out, _ = run_cli(
        capsys, "diff", files["resnet"], files["free"], "--depth", "3", "--set", "a=0", "--json"
    )
    data = json.loads(out)
    assert code == 0 and data["same"] is True  # a = 0 gives ResNet back
    code, out, _ = run_cli(capsys, "diff", files["resnet"], files["free"], "--depth", "3", "--json")
    data = json.loads(out)
    assert code == 1 and data["same"] is False
    assert data["block_weights"]["F"][0] == {"step": 0, "a": 1, "b": "a + 1"}


# -- no torch ----------------------------------------------------------------------------------


def test_analysis_commands_do_not_import_torch(files):
    script = (
        "import sys, io, contextlib\n"
        "from formulac.cli import main\n"
        f"argvs = [['check', {files['resnet']!r}], ['unroll', {files['two']!r}, '--steps', '3'],\n"
        f"         ['analyze', {files['momentum']!r}, '--json'], ['diff', {files['resnet']!r}, {files['two']!r}]]\n"
        "for argv in argvs:\n"
        "    with contextlib.redirect_stdout(io.StringIO()):\n"
        "        main(argv)\n"
        "bad = [m for m in ('torch', 'torchvision') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
