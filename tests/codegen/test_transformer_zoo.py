"""The transformer zoo (examples/transformers/): each file checks, analyses, compiles on ``vit``,
lints as an emitted file, trains one epoch, and its memory modes give standard's gradients."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from fixtures_path import REPO

import formulac
from formulac.cli import main
from formulac.formula import network_factory
from formulac.train import make_config, train

ZOO_DIR = REPO / "examples" / "transformers"
ZOO = sorted(ZOO_DIR.glob("*.rec"))
TINY = {"depth": 2, "dim": 16, "heads": 2, "patch": 4, "mlp_ratio": 2, "input_size": 8}
INVERTIBLE = {"momentum", "revvit"}


def test_the_zoo_has_every_family():
    assert {p.stem for p in ZOO} == {
        "pre_norm",
        "parallel",
        "rezero",
        "deepnorm",
        "x0_mixing",
        "momentum",
        "revvit",
    }
    for path in ZOO:
        text = path.read_text()
        assert "# Source:" in text and "# What distinguishes it:" in text, path.name


@pytest.mark.parametrize("path", ZOO, ids=lambda p: p.stem)
def test_checks_and_analyses(path, capsys):
    assert main(["check", str(path)]) == 0
    capsys.readouterr()
    analysis = formulac.load(path).analyze(depth=4)
    if path.stem == "deepnorm":  # norm(...) of the stream: nonlinear, not invertible
        assert not analysis.linear and analysis.block_weights is None and not analysis.invertible
        return
    assert analysis.linear
    blocks = set(analysis.block_weights)
    assert blocks in ({"A", "M"}, {"F"}), blocks
    assert all(len(weights) == 4 for weights in analysis.block_weights.values())


def test_the_analysis_tells_the_families_apart():
    """Pre-norm and parallel pass every sublayer output on with weight 1; ReZero's weights are
    its alphas; the reversible pair's attention reaches x only through M (weight 0)."""
    weights = {p.stem: formulac.load(p).analyze(depth=3).block_weights for p in ZOO}
    assert [str(w) for w in weights["pre_norm"]["A"]] == ["1", "1", "1"]
    assert [str(w) for w in weights["parallel"]["M"]] == ["1", "1", "1"]
    assert all("alpha" in str(w) for w in weights["rezero"]["A"])
    assert [str(w) for w in weights["revvit"]["A"]] == ["0", "0", "0"]


@pytest.mark.parametrize("path", ZOO, ids=lambda p: p.stem)
def test_compiles_lints_and_trains_one_epoch(path, tmp_path):
    formula = formulac.load(path)
    source = formula.source(backbone="vit", in_channels=1, num_classes=3, **TINY)
    target = tmp_path / f"{path.stem}.py"
    target.write_text(source)
    lint = subprocess.run(
        [
            sys.executable,
            "-m",
            "ruff",
            "check",
            "--isolated",
            "--line-length",
            "110",
            "--select",
            "F,E,W,I",
            "--no-cache",
            str(target),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert lint.returncode == 0, lint.stdout[-3000:]
    factory, _ = network_factory(
        formula.rec, {"backbone": "vit", **{k: v for k, v in TINY.items() if k != "input_size"}}
    )
    config = make_config(data="synthetic:1x8x8:3", epochs=1, limit_train=32, limit_test=32, batch_size=16)
    summary = train(factory, config, tmp_path / "run")
    assert summary["finished"] and summary["epochs"] == 1
    assert torch.isfinite(torch.tensor(summary["final_train_loss"]))


def _gradients(path, memory: str) -> tuple[torch.Tensor, dict]:
    torch.manual_seed(0)
    net = (
        formulac.load(path)
        .compile(backbone="vit", memory=memory, in_channels=1, num_classes=3, **TINY)
        .double()
    )
    x = torch.randn(4, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    net.train()
    out = net(x)
    out.square().sum().backward()
    return out.detach(), {k: p.grad for k, p in net.named_parameters()}


@pytest.mark.parametrize(
    "path, memory",
    [(p, "checkpoint") for p in ZOO] + [(p, "reversible") for p in ZOO if p.stem in INVERTIBLE],
    ids=lambda v: v if isinstance(v, str) else v.stem,
)
def test_memory_modes_give_standard_gradients(path, memory):
    out, grads = _gradients(path, "standard")
    out_m, grads_m = _gradients(path, memory)
    assert ((out_m - out).norm() / out.norm()).item() < 1e-8
    assert grads.keys() == grads_m.keys()
    for key, g in grads.items():
        assert g is not None and grads_m[key] is not None, key
        scale = max(g.norm().item(), 1e-30)
        assert (grads_m[key] - g).norm().item() / scale < 1e-8, (key, memory)


def test_memory_modes_refuse_what_they_cannot_run_yet():
    """x_0 read at every step (x0-mixing) runs under checkpoint (above), not reversible; the
    non-invertible formulas are not reversible: a clear error, not a wrong gradient."""
    with pytest.raises(formulac.UsageError, match="read x_0 at every step yet; use memory='checkpoint'"):
        _gradients(ZOO_DIR / "x0_mixing.rec", "reversible")
    with pytest.raises(formulac.UsageError):
        _gradients(ZOO_DIR / "pre_norm.rec", "reversible")
    with pytest.raises(formulac.UsageError):
        _gradients(ZOO_DIR / "deepnorm.rec", "reversible")


def test_the_transformer_notebook_is_stored_with_its_outputs():
    """docs/notebooks/transformers.ipynb (scripts/refresh_notebook.py runs it) holds the outputs
    of every code cell, no path of the machine that ran it, and the Hugging Face check passed."""
    import json

    notebook = REPO / "docs" / "notebooks" / "transformers.ipynb"
    cells = [c for c in json.loads(notebook.read_text())["cells"] if c["cell_type"] == "code"]
    assert cells and all(c["outputs"] for c in cells)
    assert str(REPO) not in notebook.read_text()
    text = "".join("".join(o.get("text", "")) for c in cells for o in c["outputs"])
    assert "relative difference of the logits below 1e-5: True" in text
    assert "x_2 = x_0 + A_0(x_0) + M_0(h_1) + A_1(x_1) + M_1(h_2)" in text
