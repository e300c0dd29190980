"""Data-parallel training under torchrun (2 gloo processes on the CPU) ends with the weights of
a single-process run with the same global batch."""

import json
import subprocess
from pathlib import Path

import torch
from process_runs import load_script, single_thread_env, torchrun_command

from formulac.train import load_checkpoint, read_metrics, train

SCRIPT = Path(__file__).with_name("train_run_script.py")
script = load_script(SCRIPT, "formulac_train_run_script")


def test_two_ranks_match_one_process(tmp_path):
    # 249 examples, global batch 32: the last global batch (25) splits 13 / 12 over the ranks
    ddp = subprocess.Popen(
        [
            *torchrun_command(SCRIPT),
            str(tmp_path / "ddp"),
            "--epochs",
            "3",
            "--limit",
            "249",
        ],
        env=single_thread_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # the single-process reference, here, while the ranks run
        train(script.build(False), script.config(3, 249), tmp_path / "single", progress=False, quiet=True)
    finally:
        _out, err = ddp.communicate(timeout=180)
    assert ddp.returncode == 0, err

    a, b = load_checkpoint(tmp_path / "single"), load_checkpoint(tmp_path / "ddp")
    for k in a["model"]:
        torch.testing.assert_close(b["model"][k], a["model"][k], rtol=0, atol=1e-5)
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert summary["world_size"] == 2 and b["world_size"] == 2 and len(b["rng"]) == 2
    # rank 0 alone writes: one line per epoch; metrics are averaged over the ranks
    rows, ref = read_metrics(tmp_path / "ddp"), read_metrics(tmp_path / "single")
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    for r, s in zip(rows, ref):
        assert abs(r["train_loss"] - s["train_loss"]) < 1e-4
        assert abs(r["test_acc"] - s["test_acc"]) < 1e-9
