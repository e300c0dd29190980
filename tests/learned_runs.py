"""A tiny trained run read back by ``formulac learned``, and pair weights set at random: what the
tests of ``learned`` (tests/mixing) start from."""

from __future__ import annotations

import json

import torch

import formulac
from formulac.cli import main

EXAMPLES = formulac.__file__.rsplit("/", 2)[0] + "/examples"
TINY = ["--data", "synthetic:1x8x8:4", "--limit-train", "96", "--limit-test", "48", "--epochs", "1"]
TINY += ["--batch-size", "32", "--lr", "0.05", "--backbone", "mlp", "--depth", "3", "-q"]


def trained_and_read(capsys, tmp_path, example):
    """Train ``examples/EXAMPLE`` tiny, then ``learned`` it: (its --json, the checkpoint's state,
    its text)."""
    run_dir = tmp_path / "run"
    assert main(["train", f"{EXAMPLES}/{example}", *TINY, "--out", str(run_dir)]) == 0
    capsys.readouterr()
    assert main(["learned", str(run_dir), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)["model"]
    assert main(["learned", str(run_dir)]) == 0
    return data, state, capsys.readouterr().out


def randomise_pair_weights(net, seed=3):
    """Every pair-parameter weight vector (``.w``) of ``net`` drawn from N(0, 1); its state_dict."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith(".w"):
                p.copy_(torch.randn_like(p))
    return net.state_dict()
