"""A run killed with SIGKILL mid-training and resumed ends with exactly the weights of an
uninterrupted run (separate processes, deterministic CPU settings)."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from process_runs import kill_after_first_checkpoint, load_script, single_thread_env

from formulac.train import load_checkpoint, read_metrics, train

SCRIPT = Path(__file__).with_name("train_run_script.py")
script = load_script(SCRIPT, "formulac_train_run_script_kill")


@pytest.mark.slow  # end to end in other processes: about 20-45 s on a loaded 2-core machine
def test_sigkill_then_resume_is_bitwise_identical(tmp_path):
    epochs = 6
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    # the interrupted run sleeps after each epoch's checkpoint, so the kill lands mid-run
    kill_after_first_checkpoint(
        [sys.executable, str(SCRIPT), str(cut), "--dropout", "--epochs", str(epochs), "--sleep", "0.4"],
        cut,
        wait_s=90,
        settle_s=0.2,
    )
    done = load_checkpoint(cut)["epoch"]
    assert 1 <= done < epochs and not (cut / "summary.json").exists()

    resumed = subprocess.Popen(
        [sys.executable, str(SCRIPT), str(cut), "--dropout", "--epochs", str(epochs), "--resume"],
        env=single_thread_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # the uninterrupted run, here, while the resumed one runs (same settings: one thread,
        # deterministic algorithms)
        train(script.build(True), script.config(epochs), whole, progress=False, quiet=True)
    finally:
        out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    assert "final_test_acc=" in out

    a, b = load_checkpoint(whole), load_checkpoint(cut)
    assert a["epoch"] == b["epoch"] == epochs
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(sa["momentum_buffer"], sb["momentum_buffer"])
    assert torch.equal(a["rng"][0]["torch"], b["rng"][0]["torch"])
    drop = ("seconds", "train_seconds", "train_cpu_seconds", "images_per_s")
    assert [{k: v for k, v in r.items() if k not in drop} for r in read_metrics(whole)] == [
        {k: v for k, v in r.items() if k not in drop} for r in read_metrics(cut)
    ]
