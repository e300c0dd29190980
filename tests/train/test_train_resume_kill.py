"""A run killed with SIGKILL mid-training and resumed ends with exactly the weights of an
uninterrupted run (separate processes, deterministic CPU settings)."""

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from formulac.train import load_checkpoint, read_metrics, train

SCRIPT = Path(__file__).with_name("train_run_script.py")
_spec = importlib.util.spec_from_file_location("formulac_train_run_script_kill", SCRIPT)
script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(script)


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    return env


def test_sigkill_then_resume_is_bitwise_identical(tmp_path):
    epochs = 6
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    # the interrupted run sleeps after each epoch's checkpoint, so the kill lands mid-run
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), str(cut), "--dropout", "--epochs", str(epochs), "--sleep", "0.4"],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 90
        while not (cut / "checkpoint.pt").exists():
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.02)
        time.sleep(0.2)
        assert proc.poll() is None, "the run ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done = load_checkpoint(cut)["epoch"]
    assert 1 <= done < epochs and not (cut / "summary.json").exists()

    resumed = subprocess.Popen(
        [sys.executable, str(SCRIPT), str(cut), "--dropout", "--epochs", str(epochs), "--resume"],
        env=_env(),
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
