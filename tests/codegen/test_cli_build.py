"""``formulac compile`` and ``formulac info`` on the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from cli_runner import run_cli
from fixtures_path import REPO
from hypothesis import given
from hypothesis import strategies as st
from repeatable import repeatable

import formulac
from formulac import FormulacError, SourceError
from formulac.codegen import PlanError, check_buildable
from formulac.parse import parse as parse_rec

EXAMPLES = REPO / "examples"


def test_compile_to_stdout_and_file(capsys, tmp_path):
    status, out, err = run_cli(capsys, "compile", EXAMPLES / "resnet_post.rec", "--depth", "20")
    assert status == 0 and "class FormulaNet(CifarResNet):" in out
    target = tmp_path / "model.py"
    status, out, err = run_cli(
        capsys,
        "compile",
        EXAMPLES / "lm_resnet.rec",
        "--backbone",
        "mlp",
        "--depth",
        "3",
        "-O",
        "width=32",
        "-O",
        "stages=32,48",
        "--num-classes",
        "4",
        "-o",
        target,
    )
    assert status == 0 and out == ""
    assert "model.py" in err
    text = target.read_text()
    assert "def __init__(self, num_classes=4, in_channels=1):" in text
    assert "MLPBranch(32, 48" in text or "FormulaStep(32, 48" in text


def test_compile_set_and_shortcut(capsys, tmp_path):
    status, out, _ = run_cli(
        capsys,
        "compile",
        EXAMPLES / "two_step_free.rec",
        "--depth",
        "8",
        "--set",
        "a=-1/4",
        "--shortcut",
        "B",
        "--transition",
        "project",
    )
    assert status == 0
    assert "x_n - 0.25 * x_nm1 + out_F" in out
    assert 'shortcut="B"' in out and "transition project" in " ".join(out.split())  # the docstring may wrap


def test_info_text_and_json(capsys):
    status, out, _ = run_cli(capsys, "info", EXAMPLES / "resnet_post.rec", "--depth", "20")
    assert status == 0
    assert "269,722" in out and "multiply-adds" in out and "layer3" in out
    status, out, _ = run_cli(capsys, "info", EXAMPLES / "momentum.rec", "--depth", "56", "--json")
    assert status == 0
    data = json.loads(out)
    assert data["parameters"] == 853_018 - 0  # momentum adds no parameter to ResNet-56
    assert data["states_kept"] == ["v_n", "x_n"]
    assert [s["steps"] for s in data["stages"]] == [9, 9, 9]
    assert [s["width"] for s in data["stages"]] == [16, 32, 64]
    assert data["multiply_adds"] > 100_000_000  # ResNet-56: about 125M per 32x32 image
    status, out, _ = run_cli(capsys, "info", EXAMPLES / "two_step.rec", "--backbone", "mlp", "--json")
    assert status == 0 and json.loads(out)["states_kept"] == ["x_n", "x_nm1"]


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["compile", "resnet.rec", "--depth", "21"], "6n+2"),
        (["info", "resnet.rec", "--depth", "21"], "6n+2"),
        (["compile", "resnet.rec", "--backbone", "vgg"], "unknown backbone"),
        (["info", "resnet.rec", "--backbone", "vgg"], "unknown backbone"),
        (["compile", "resnet.rec", "-O", "widen_factor=4"], "widen_factor"),
        (["compile", "resnet.rec", "-O", "novalue"], "KEY=VALUE"),
        (["compile", "resnet.rec", "--depth", "0"], "positive"),
        (["compile", "resnet.rec", "--transition", "sideways"], "transition"),
        (["compile", "two_step_free.rec"], "a"),
        (["compile", "resnet.rec", "--set", "zz=1"], "zz"),
        (["compile", "resnet.rec", "--backbone", "imagenet-resnet", "--depth", "20"], "18, 34, 50"),
        (["compile", "missing.rec"], "missing.rec"),
    ],
)
def test_mistakes_exit_2_without_traceback(capsys, argv, fragment):
    argv = [str(EXAMPLES / a) if a.endswith(".rec") else a for a in argv]
    status, out, err = run_cli(capsys, *argv)
    assert status == 2
    assert "Traceback" not in err and "Traceback" not in out
    assert fragment in err
    assert "error" in err


def test_output_into_a_missing_directory(capsys, tmp_path):
    target = tmp_path / "no" / "such" / "dir" / "model.py"
    status, _out, err = run_cli(capsys, "compile", EXAMPLES / "resnet.rec", "--depth", "8", "-o", target)
    assert status == 2 and "Traceback" not in err
    assert "no directory" in err or "cannot write" in err
    assert not target.exists()
    status, _, err = run_cli(capsys, "compile", EXAMPLES / "resnet.rec", "--depth", "8", "-o", tmp_path)
    assert status == 2 and "directory" in err


def test_real_process_exit_status_and_message():
    """Through ``python -m formulac``: exit status 2, the message starts with
    ``formulac: error:`` and no traceback is printed."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-m", "formulac", "compile", str(EXAMPLES / "resnet.rec"), "--depth", "21"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("formulac: error:")
    assert "6n+2" in result.stderr and "Traceback" not in result.stderr


# ------------------------------------------------------------------------------------------
# check accepts exactly what compile builds


# (formula file, line, column, fragment): parsed, but no network can be built from it
UNBUILDABLE = [
    ("a = 1\nx_<n+1> = x_n + a*x_<n-1>\n", 2, 1, "no block"),
    ("# cat\n\nx_<n+1> = cat(x_n, F(x_n)) + x_n\n", 3, 1, "cannot add tensors of widths"),
    ("v_<n+1> = v_n + G(x_n)\nx_<n+1> = x_n + sum(i=0..n, cat(v_i, x_i)) + F(x_n)\n", 2, 1, "widths"),
    ("x_<n+1> = x_n + F(x_n) + F(cat(x_n, x_n))\n", 1, 1, "applied to inputs of widths"),
]

# numbers a double cannot hold: refused as the file is read (issue 22), by every command alike
UNREADABLE_NUMBERS = [
    ("x_<n+1> = 1e309*x_n + F(x_n)\n", 1, 11, "beyond the range of a double"),
    ("x_<-1> = 1e309*x_0\nx_<n+1> = x_n + x_<n-1> + F(x_n)\n", 1, 10, "beyond the range of a double"),
    ("param k = 1e300*1e300\nx_<n+1> = x_n + k*F(x_n)\n", 1, 11, "beyond the range of a double"),
    ("x_<n+1> = x_n + 1e-400*F(x_n)\n", 1, 11, "rounds to 0 as a double"),
]


@pytest.mark.parametrize(
    "heading, text, line, column, fragment",
    [("compile: ", *case) for case in UNBUILDABLE]
    + [("the coefficient ", *case) for case in UNREADABLE_NUMBERS],
)
def test_check_compile_and_info_refuse_alike(capsys, tmp_path, heading, text, line, column, fragment):
    """check accepts exactly what compile builds: each command refuses with the same located
    error line, then the source line and a caret under it."""
    path = tmp_path / "f.rec"
    path.write_text(text)
    for command in ("check", "compile", "info"):
        options = () if command == "check" else ("--backbone", "mlp")
        status, out, err = run_cli(capsys, command, path, *options)
        assert status == 2, (command, out)
        first = err.splitlines()[0]
        assert first.startswith(f"{path}:{line}:{column}: error: {heading}"), (command, err)
        assert fragment in first and "Traceback" not in err
        assert err.splitlines()[2].strip() == "^"


BUILDABLE = [
    "x_<n+1> = sigmoid(1)*x_n + F(x_n)",
    "x_<n+1> = (relu(2) + tanh(1) + softplus(-1) + gelu(1) + silu(1) + elu(-1) + exp(1) + log(2))/9*x_n + F(x_n)",
    "x_<n+1> = sigmoid(n)*x_n + softplus(1 - n)*elu(1 - n)*gelu(n)*silu(n)*relu(1 - n)*x_<n-1> + F(x_n)",
    "x_<n+1> = sum(j=n-2..n, x_j)/3 + F(x_n)",
    "x_<n+1> = x_n + sum(i=0..n, x_<i-2>)/(n+1) + F(x_n)",
    "x_<-1> = 0\nx_<n+1> = sum(j=n-1..n, x_j) + F(x_n)",
    "x_<-1> = 2*x_0 + 1\nx_<-2> = 1/2\nx_<n+1> = x_n + x_<n-1> - x_<n-2> + G(x_<n-2>) + F(x_n)",
    "v_0 = x_0/2\nv_<n+1> = v_n + G(x_n)\nx_<n+1> = x_n + v_0 + v_<n+1> + F(x_n)",
    "v_<n+1> = sum(i=1..n, v_i) + G(x_n)\nx_<n+1> = x_n + F(v_<n+1>)",
    "v_<n+1> = 1/2\nx_<n+1> = x_n + F(v_<n+1>)",
    "x_<n+1> = x_n + sum(i=0..n, F(x_i))/(n+1)",
    "symbol a\nx_<n+1> = x_n + a*x_<n-1> + F(x_n)",  # free symbols: values come with --set
]


@pytest.mark.parametrize("text", BUILDABLE)
def test_what_check_accepts_compile_builds(capsys, tmp_path, text):
    path = tmp_path / "f.rec"
    path.write_text(text + "\n")
    status, out, err = run_cli(capsys, "check", path)
    assert status == 0 and err == "", err
    bind = ["--set", "a=0.5"] if "symbol a" in text else []
    for backbone, depth in (("mlp", "3"), ("cifar-resnet", "8")):
        status, out, err = run_cli(capsys, "info", path, "--backbone", backbone, "--depth", depth, *bind)
        assert status == 0, err
        assert "parameters" in out


# ------------------------------------------------------------------------------------------
# info --input-size


def test_info_input_size(capsys):
    resnet = EXAMPLES / "resnet.rec"
    status, out, err = run_cli(capsys, "info", resnet, "--backbone", "mlp", "--input-size", "32", "--json")
    assert status == 0, err
    data = json.loads(out)
    assert data["input_shape"] == [1, 32, 32]
    # the stem is built for 32x32 inputs: Linear(1024, 64) + branch + head
    status, out28, _ = run_cli(capsys, "info", resnet, "--backbone", "mlp", "--json")
    assert data["parameters"] - json.loads(out28)["parameters"] == (32 * 32 - 28 * 28) * 64
    status, out, _ = run_cli(capsys, "info", resnet, "--backbone", "mlp", "-O", "input_size=20", "--json")
    assert json.loads(out)["input_shape"] == [1, 20, 20]
    status, out, _ = run_cli(capsys, "info", resnet, "--depth", "8", "--input-size", "1", "--json")
    assert status == 0 and json.loads(out)["input_shape"] == [3, 1, 1]


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--input-size", "0"], "positive whole number"),
        (["--input-size=-5"], "positive whole number"),
        (["--input-size", "5000"], "at most 1024"),
        (["--input-size", "32", "-O", "input_size=28"], "disagree"),
        (["-O", "input_size=0"], "'input_size'"),
    ],
)
def test_info_bad_input_size(capsys, argv, fragment):
    status, _out, err = run_cli(capsys, "info", EXAMPLES / "resnet.rec", "--backbone", "mlp", *argv)
    assert status == 2 and fragment in err and "Traceback" not in err


TERMS = [
    "x_n",
    "x_<n-3>",
    "x_0",
    "v_0",
    "v_n",
    "F(x_n)",
    "G(x_<n-2>)",
    "F(v_n)",
    "sum(i=0..n, x_<i-2>)",
    "sum(i=1..n, v_i)",
    "sum(j=n-2..n, x_j)",
    "sigmoid(1)*x_n",
    "relu(n - 2)*x_n",
    "cat(x_n, F(x_n))",
    "cat(x_n, x_n)",
    "2",
    "1e300*1e300*x_n",
    "k_n*x_n",
    "F(cat(x_n, v_n))",
    "sum(i=0..n, cat(x_i, x_i))",
    "sum(i=0..n, F(x_i))",
]
HEADS = ["x_<-1> = 0\n", "v_0 = x_0\n", "v_<-1> = 1e309*x_0\n", "shared F\n", "param k_n = 1/2\n"]


@repeatable(40)
@given(
    heads=st.lists(st.sampled_from(HEADS), unique=True, max_size=2),
    v_terms=st.lists(st.sampled_from(TERMS), min_size=1, max_size=3),
    x_terms=st.lists(st.sampled_from([*TERMS, "v_<n+1>"]), min_size=1, max_size=4),
)
def test_check_and_compile_agree(heads, v_terms, x_terms):
    """Whatever check says, compile (on a deeper network than check's own plan) agrees."""
    text = "".join(heads) + f"v_<n+1> = {' + '.join(v_terms)}\nx_<n+1> = {' + '.join(x_terms)}\n"
    if "k_n" in text and "param k_n" not in text:
        text = "param k_n = 1/2\n" + text
    try:
        rec = parse_rec(text)
    except SourceError:
        return
    try:
        check_buildable(rec)
        refused = None
    except PlanError as exc:
        refused = exc
    try:
        net = formulac.compile(rec, backbone="mlp", depth=6, width=8, stages=[8, 12, 6])
    except FormulacError as exc:
        assert refused is not None, f"check accepts, compile refuses ({exc}):\n{text}"
        return
    assert refused is None, f"check refuses ({refused}), compile builds:\n{text}"
    net(torch.randn(2, 1, 28, 28)).sum().backward()
