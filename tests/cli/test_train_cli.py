"""`formulac train` and `formulac compare` on the command line (tiny MLP runs on synthetic data)."""

import hashlib
import json

from cli_runner import QUIET_CPU
from fixtures_path import REPO

from formulac.cli import main

EX = REPO / "examples"
SMALL = [
    "--backbone",
    "mlp",
    "--depth",
    "2",
    "--data",
    "synthetic:1x8x8:4",
    "--limit-train",
    "128",
    "--limit-test",
    "64",
    "--batch-size",
    "32",
    "--epochs",
    "1",
    *QUIET_CPU,
]


def test_compare_in_two_processes_with_a_bound_symbol(tmp_path, capsys):
    """--jobs 2: the formula factory crosses into spawned workers, --set included."""
    out = tmp_path / "cmp"
    argv = ["compare", str(EX / "resnet.rec"), str(EX / "two_step_free.rec"), "--set", "a=-1/4"]
    status = main(argv + SMALL + ["--seeds", "2", "--jobs", "2", "--out", str(out)])
    assert status == 0, capsys.readouterr().err
    js = json.loads((out / "comparison.json").read_text())
    assert [m["label"] for m in js["models"]] == ["resnet", "two_step_free"]
    assert all(len(m["test_acc"]) == 2 for m in js["models"])
    summary = json.loads((out / "two_step_free" / "seed1" / "summary.json").read_text())
    assert "a = -1/4" in summary["model"]["formula"] and "x_<n-1>" in summary["model"]["formula"]
    # the recorded hash is the one of the file `formulac compile` writes for this network
    src = tmp_path / "net.py"
    status = main(
        ["compile", str(EX / "two_step_free.rec"), "--set", "a=-1/4", "--backbone", "mlp", "--depth", "2"]
        + ["--in-channels", "1", "--num-classes", "4", "-O", "input_size=8", "-o", str(src)]
    )
    assert status == 0
    assert summary["model"]["source_sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    # the two worker processes gave exactly what one process gives (deterministic CPU runs)
    status = main(argv + SMALL + ["--seeds", "2", "--jobs", "1", "--out", str(tmp_path / "one")])
    assert status == 0
    one = json.loads((tmp_path / "one" / "comparison.json").read_text())
    assert [m["test_acc"] for m in one["models"]] == [m["test_acc"] for m in js["models"]]
    capsys.readouterr()


def test_another_formula_in_a_run_directory_is_refused(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(["train", str(EX / "resnet.rec"), *SMALL, "--out", out]) == 0
    capsys.readouterr()
    for extra in ([], ["--resume"]):
        status = main(["train", str(EX / "two_step.rec"), *SMALL, "--out", out, *extra])
        err = capsys.readouterr().err
        assert status == 2 and "holds a run of another model" in err and "formula:" in err
    assert main(["train", str(EX / "two_step.rec"), *SMALL, "--out", out, "--overwrite"]) == 0
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["model"]["file"] == "two_step.rec"


def test_validation_split_from_the_command_line(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", str(EX / "resnet.rec"), *SMALL, "--val-fraction", "0.25", "--split-seed", "2"]
    assert main(argv + ["--out", str(out)]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["val_acc"] is not None and rows[-1]["test_acc"] is None
    summary = json.loads((out / "summary.json").read_text())
    assert (
        summary["evaluated_on"] == "validation" and 30 <= summary["validation"]["examples"] <= 34
    )  # a quarter of 128, per class
    capsys.readouterr()


def test_an_infinite_learning_rate_stops_the_cli_with_one_line(tmp_path, capsys):
    status = main(["train", str(EX / "resnet.rec"), *SMALL, "--lr", "1e30", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert (
        len(err) == 1
        and err[0].startswith("formulac: error: training diverged")
        and "epoch 1, step" in err[0]
    )


def test_a_run_diverging_in_a_worker_is_named_in_one_line(tmp_path, capsys):
    argv = ["compare", str(EX / "resnet.rec"), str(EX / "two_step.rec"), *SMALL, "--lr", "1e30"]
    status = main(argv + ["--seeds", "1", "--jobs", "2", "--out", str(tmp_path / "cmp")])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1
    assert err[0].startswith("formulac: error: ") and ", seed 0: training diverged" in err[0]


def _run_files(out):
    return {p.name: p.read_bytes() for p in out.iterdir()}


def test_overwrite_that_cannot_start_keeps_the_finished_run(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", str(EX / "resnet.rec"), *SMALL, "--out", str(out)]) == 0
    before = _run_files(out)
    failing = {
        "missing data": ["--data", "cifar10", "--data-dir", str(tmp_path / "none")],
        "NaN weight decay": ["--weight-decay", "nan"],
        "lr beyond float32": ["--lr", "1e300"],
    }
    for extra in failing.values():
        status = main(["train", str(EX / "resnet.rec"), *SMALL, *extra, "--out", str(out), "--overwrite"])
        err = capsys.readouterr().err
        assert status == 2 and err.startswith("formulac: error:") and "Traceback" not in err
        assert _run_files(out) == before


def test_an_output_directory_that_cannot_be_made_is_a_usage_error(tmp_path, capsys):
    blocker = tmp_path / "file.txt"
    blocker.write_text("keep me\n")
    commands = {
        "train": ["train", str(EX / "resnet.rec")],
        "compare": ["compare", str(EX / "resnet.rec"), str(EX / "two_step.rec"), "--seeds", "1"],
    }
    for argv in commands.values():
        status = main([*argv, *SMALL, "--out", str(blocker / "sub")])
        err = capsys.readouterr().err
        assert status == 2 and f"cannot create the run directory {blocker / 'sub'}" in err, err
    assert blocker.read_text() == "keep me\n"


def test_a_run_without_a_memory_mode_is_a_standard_run(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(["train", str(EX / "revnet.rec"), *SMALL, "--out", out]) == 0
    capsys.readouterr()
    # the same run again: refused as finished, not as another model
    assert main(["train", str(EX / "revnet.rec"), *SMALL, "--out", out, "--memory", "standard"]) == 2
    err = capsys.readouterr().err
    assert "holds a finished run" in err and "another model" not in err
    status = main(["train", str(EX / "revnet.rec"), *SMALL, "--out", out, "--memory", "reversible"])
    err = capsys.readouterr().err
    assert status == 2 and "memory: 'standard' (saved) vs 'reversible' (now)" in err


def test_text_flags_on_image_data_are_refused_not_ignored(tmp_path, capsys):
    for flag, value in (("--tokens", "chars"), ("--epoch-tokens", "512"), ("--eval-windows", "4")):
        argv = ["train", str(EX / "resnet.rec"), *SMALL, flag, value, "--out", str(tmp_path / "run")]
        status = main(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert status == 2 and len(err) == 1, err
        assert err[0].startswith(f"formulac: error: {flag} is for text data"), err
    assert not (tmp_path / "run").exists()
