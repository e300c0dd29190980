"""``formulac learned`` on runs with shared, per-step and renamed parameters: the values are
the checkpoint's, and the per-step analysis matches an independent numeric iteration."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from search_setup import FAST

from formulac.cli import main

DATA = FAST[:10]  # a tiny synthetic data set, 2 epochs

FORMULAS = {
    # a shared parameter in a formula that is not linear: no spectral radius
    "shared_post": "param k = 0.5\nx_<n+1> = relu(x_n + k*F(x_n))\n",
    # a shared and a per-step parameter
    "mixed": "param g = 0.9\nparam k_n = -0.05\nx_<n+1> = (1 - k_n)*x_n + k_n*x_<n-1> + g*F(x_n)\n",
    # names the reversible memory mode's generated code uses itself
    "reserved": "param call = 0.5\nparam retreat_n = 0.1\nx_<n+1> = x_n + call*F(x_n) + retreat_n*x_<n-1>\n",
}
MEMORY = {"reserved": ["--memory", "reversible"]}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("learned")
    out = {}
    for name, text in FORMULAS.items():
        path = root / f"{name}.rec"
        path.write_text(text)
        argv = ["train", str(path), *DATA, "--backbone", "mlp", "--depth", "3", *MEMORY.get(name, [])]
        assert main([*argv, "--out", str(root / name), "-q"]) == 0
        out[name] = root / name
    return out


def learned_json(capsys, run_dir) -> dict:
    capsys.readouterr()
    code = main(["learned", str(run_dir), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def checkpoint(run_dir) -> dict:
    return torch.load(run_dir / "checkpoint.pt", weights_only=True)["model"]


def test_a_shared_parameter_of_a_formula_that_is_not_linear(capsys, runs):
    data = learned_json(capsys, runs["shared_post"])
    assert data["shared"]["k"] == pytest.approx(float(checkpoint(runs["shared_post"])["k"]))
    assert main(["learned", str(runs["shared_post"])]) == 0  # the text report too
    text = capsys.readouterr().out
    assert "spectral radius per step: -" in text and "Traceback" not in text
    assert "whole network (no per-step parameters)" in text and "(0 steps)" not in text


def block_weights_by_iteration(g: float, ks: list[float]) -> list[float]:
    """Weight of each step's block output in the stage's last state, by iterating the formula
    on vectors (one coordinate per block output); x_<-1> = x_0."""
    steps = len(ks)
    previous = current = np.zeros(steps)
    for i, k in enumerate(ks):
        block = np.zeros(steps)
        block[i] = g
        previous, current = current, (1 - k) * current + k * previous + block
    return list(current)


def test_shared_and_per_step_parameters(capsys, runs):
    data = learned_json(capsys, runs["mixed"])
    state = checkpoint(runs["mixed"])
    g = float(state["g"])
    ks = [float(state[f"layer1.{i}.k"]) for i in range(3)]
    assert data["shared"]["g"] == pytest.approx(g)
    (stage,) = data["stages"]
    assert stage["values"]["k"] == pytest.approx(ks)
    assert stage["block_weights"]["F"] == pytest.approx(block_weights_by_iteration(g, ks), rel=1e-5)
    # roots of z^2 - (1 - k) z - k: 1 and -k
    radii = [max(abs(r) for r in np.roots([1, -(1 - k), -k])) for k in ks]
    assert stage["spectral_radius"] == pytest.approx(radii, rel=1e-5)


def test_names_renamed_by_the_reversible_memory_mode(capsys, runs):
    data = learned_json(capsys, runs["reserved"])
    state = checkpoint(runs["reserved"])
    assert data["shared"]["call"] == pytest.approx(float(state["call_param"]))
    (stage,) = data["stages"]
    assert stage["values"]["retreat"] == pytest.approx(
        [float(state[f"layer1.{i}.retreat_param"]) for i in range(3)]
    )
    # roots of z^2 - z - r: (1 + sqrt(1 + 4 r)) / 2 is the larger
    radii = [(1 + (1 + 4 * r) ** 0.5) / 2 for r in stage["values"]["retreat"]]
    assert stage["spectral_radius"] == pytest.approx(radii, rel=1e-5)
