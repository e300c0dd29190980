"""formulac search on the command line: bad input is one error line and exit 2, nothing stored
is damaged; end to end on the synthetic data set with a confirmation; formulac learned."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TWO = str(EXAMPLES / "two_step_free.rec")
FAST = [
    "--data",
    "synthetic:1x8x8:4",
    "--limit-train",
    "256",
    "--limit-test",
    "128",
    "--epochs",
    "2",
    "--batch-size",
    "64",
    "--backbone",
    "mlp",
    "--depth",
    "3",
    "--sampler-seed",
    "0",
]


def formulac(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "formulac", *args], capture_output=True, text=True, cwd=cwd)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--space", "b=0:1"], "unknown name 'b'"),
        (["--space", "a=1:0"], "reversed"),
        (["--space", "a=0.5:0.5"], "empty"),
        (["--space", "a=x:1"], "not a number"),
        (["--space", "a=0:1:log"], "LO > 0"),
        (["--require", "fast"], "unknown property 'fast'"),
        (["--require", "rate<=one"], "not a number"),
        (["--space", "depth=0:10"], "takes a list"),
        (["--storage", "postgresql://nobody@127.0.0.1:1/none"], "cannot open the study storage"),
        (["--sampler", "grid"], "needs finite domains"),
    ],
)
def test_bad_input_is_one_error_line(tmp_path, args, message):
    space = [] if any(a.startswith("a=") for a in args) else ["--space", "a=-0.9:0.9"]
    r = formulac("search", TWO, *space, *args, *FAST, "--out", str(tmp_path / "out"))
    assert r.returncode == 2, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.startswith("formulac: error:")]
    assert len(lines) == 1 and message in lines[0], r.stderr
    assert "Traceback" not in r.stderr


def test_domain_on_a_constant_is_refused(tmp_path):
    r = formulac("search", str(EXAMPLES / "two_step.rec"), "--space", "a=-1:0", *FAST, "--out", str(tmp_path))
    assert r.returncode == 2 and "a is a constant" in r.stderr and "not a free symbol" in r.stderr


def test_end_to_end_with_confirmation_and_another_space_refused(tmp_path):
    out = tmp_path / "out"
    r = formulac(
        "search",
        TWO,
        "--space",
        "a=-0.9:0.1",
        "--require",
        "stable",
        "--trials",
        "4",
        *FAST,
        "--out",
        str(out),
        "--confirm",
        "1",
        "--seeds",
        "2",
        "--baseline",
        str(EXAMPLES / "resnet.rec"),
        "--pruner",
        "none",
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "search: 4/4 done" in r.stderr and "rejected" in r.stderr
    board = json.loads((out / "leaderboard.json").read_text())
    assert len(board["trials"]) == 4
    conf = board["confirmation"]
    assert conf["evaluated_on"] == "test set" and len(conf["models"]) == 2
    assert conf["models"][1]["trial"] == board["best"]["number"]
    assert conf["friedman"] is not None and "p_holm" in conf["models"][1]
    for t in board["trials"]:
        if t["state"] == "complete":
            metrics = [json.loads(x) for x in (Path(t["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
            assert all(m["val_acc"] is not None and m["test_acc"] is None for m in metrics)  # test set unseen
            assert t["val_accuracy"] == pytest.approx(metrics[-1]["val_acc"])
    r = formulac("analyze", str(out / "best.rec"))
    assert r.returncode == 0 and "stability" in r.stdout
    before = (out / "study.db").read_bytes()
    r = formulac("search", TWO, "--space", "a=-0.5:0.5", "--trials", "4", *FAST, "--out", str(out))
    assert r.returncode == 2 and "another search space" in r.stderr
    assert (out / "study.db").read_bytes() == before  # nothing stored was touched


def test_learned_reads_trained_coefficients(tmp_path):
    run = tmp_path / "run"
    r = formulac(
        "train",
        str(EXAMPLES / "lm_resnet.rec"),
        *FAST[:10],
        "--backbone",
        "mlp",
        "--depth",
        "3",
        "--out",
        str(run),
        "-q",
    )
    assert r.returncode == 0, r.stderr[-2000:]
    r = formulac("learned", str(run), "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    import torch

    state = torch.load(run / "checkpoint.pt", weights_only=True)["model"]
    assert data["per_step"]["k"]["layer1"] == pytest.approx([float(state[f"layer1.{i}.k"]) for i in range(3)])
    r = formulac("analyze", str(run / "learned.rec"))
    assert r.returncode == 0
