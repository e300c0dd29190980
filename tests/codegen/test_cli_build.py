"""``formulac compile`` and ``formulac info`` on the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from fixtures_path import REPO

from formulac.cli import main

EXAMPLES = REPO / "examples"


def run(capsys, *argv):
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_compile_to_stdout_and_file(capsys, tmp_path):
    status, out, err = run(capsys, "compile", EXAMPLES / "resnet_post.rec", "--depth", "20")
    assert status == 0 and "class FormulaNet(CifarResNet):" in out
    target = tmp_path / "model.py"
    status, out, err = run(
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
    status, out, _ = run(
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
    assert 'shortcut="B"' in out and "transition project" in out


def test_info_text_and_json(capsys):
    status, out, _ = run(capsys, "info", EXAMPLES / "resnet_post.rec", "--depth", "20")
    assert status == 0
    assert "269,722" in out and "multiply-adds" in out and "layer3" in out
    status, out, _ = run(capsys, "info", EXAMPLES / "momentum.rec", "--depth", "56", "--json")
    assert status == 0
    data = json.loads(out)
    assert data["parameters"] == 853_018 - 0  # momentum adds no parameter to ResNet-56
    assert data["states_kept"] == ["v_n", "x_n"]
    assert [s["steps"] for s in data["stages"]] == [9, 9, 9]
    assert [s["width"] for s in data["stages"]] == [16, 32, 64]
    assert data["multiply_adds"] > 100_000_000  # ResNet-56: about 125M per 32x32 image
    status, out, _ = run(capsys, "info", EXAMPLES / "two_step.rec", "--backbone", "mlp", "--json")
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
    status, out, err = run(capsys, *argv)
    assert status == 2
    assert "Traceback" not in err and "Traceback" not in out
    assert fragment in err
    assert "error" in err


def test_output_into_a_missing_directory(capsys, tmp_path):
    target = tmp_path / "no" / "such" / "dir" / "model.py"
    status, _out, err = run(capsys, "compile", EXAMPLES / "resnet.rec", "--depth", "8", "-o", target)
    assert status == 2 and "Traceback" not in err
    assert "no directory" in err or "cannot write" in err
    assert not target.exists()
    status, _, err = run(capsys, "compile", EXAMPLES / "resnet.rec", "--depth", "8", "-o", tmp_path)
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
