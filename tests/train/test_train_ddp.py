"""Data-parallel training under torchrun (2 gloo processes on the CPU) ends with the weights of
a single-process run with the same global batch."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from formulac.train import load_checkpoint, read_metrics, train

SCRIPT = Path(__file__).with_name("train_run_script.py")
_spec = importlib.util.spec_from_file_location("formulac_train_run_script", SCRIPT)
script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(script)


def test_two_ranks_match_one_process(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    # 249 examples, global batch 32: the last global batch (25) splits 13 / 12 over the ranks
    ddp = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            str(SCRIPT),
            str(tmp_path / "ddp"),
            "--epochs",
            "3",
            "--limit",
            "249",
        ],
        env=env,
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
