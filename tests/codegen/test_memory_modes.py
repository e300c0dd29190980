"""The memory-mode registry (issue 21): a new mode is one class and one registry entry, and the
CLI, the compiler and ``info --memory`` take it from there; the formula's inverse is computed
once per compile.

The toy mode below is defined here, not in formulac: it checkpoints every step on its own
(segments of one step) through the runtime's ``run_checkpointed``. Its reference is the standard
network on the same weights and batch: the same outputs and gradients, as for the shipped modes.
"""

from __future__ import annotations

import json
import sys

import pytest
import torch
from cli_runner import run_cli
from fixtures_path import REPO

from formulac.analysis import invertibility
from formulac.codegen import compile_source, load_source, memory_modes
from formulac.codegen.memory_mode import MemoryMode, MemoryPlan, history_refusal
from formulac.formula import NetworkFactory
from formulac.parse import load

EXAMPLES = REPO / "examples"
MLP = ["--backbone", "mlp", "--depth", "5", "-O", "width=12", "-O", "stages=12,16", "-O", "input_size=6"]


class EveryStepCheckpoint(MemoryMode):
    """A toy mode: ``torch.utils.checkpoint`` around every step on its own."""

    name = "toy"
    description = "checkpoint every step on its own"
    reserved_names = frozenset({"call", "advance", "checkpoint_segment", "first"})
    runtime_names = ("_plain_call", "advance_steps", "_KeptBuffers", "run_checkpointed")
    runner = "run_checkpointed"
    runner_attributes = ("checkpoint_segment",)

    def refusal(self, rec):
        return history_refusal(rec, self.name)

    def network_attribute_lines(self, mplan: MemoryPlan, indent: str) -> list[str]:
        return [f"{indent}checkpoint_segment = 1", ""]


@pytest.fixture
def toy_mode(monkeypatch):
    """The registry with the toy mode added (the shipped registry is restored afterwards)."""
    monkeypatch.setattr(memory_modes, "MEMORY_MODES", dict(memory_modes.MEMORY_MODES))
    return memory_modes.register_memory_mode(EveryStepCheckpoint())


def _help(capsys, command: str) -> str:
    """``formulac COMMAND --help``, its whitespace runs made single spaces."""
    with pytest.raises(SystemExit):
        run_cli(capsys, command, "--help")
    return " ".join(capsys.readouterr().out.split())


def _choices(capsys, command: str) -> str:
    """What ``--memory`` accepts, as argparse's error lists it."""
    status, _, err = run_cli(capsys, command, "--memory", "bogus")
    assert status == 2
    return err.split("invalid choice: 'bogus' ")[1].strip()


@pytest.mark.parametrize("command", ["compile", "info", "train", "search"])
def test_the_cli_offers_what_the_registry_holds(command, capsys):
    assert tuple(memory_modes.MEMORY_MODES) == ("standard", "checkpoint", "reversible")
    assert _choices(capsys, command) == "(choose from 'standard', 'checkpoint', 'reversible')"
    text = _help(capsys, command)
    for name, mode in memory_modes.MEMORY_MODES.items():
        assert f"{name} ({mode.description})" in text


def test_a_registered_mode_compiles_from_the_cli_and_matches_standard(toy_mode, tmp_path, capsys):
    assert "toy (checkpoint every step on its own)" in _help(capsys, "compile")
    assert _choices(capsys, "compile").endswith("'reversible', 'toy')")
    out = tmp_path / "toy.py"
    status, _, err = run_cli(
        capsys, "compile", EXAMPLES / "lm_resnet.rec", *MLP, "--memory", "toy", "-o", out
    )
    assert status == 0, err
    source = out.read_text()
    assert "checkpoint_segment = 1" in source and "run_checkpointed(" in source and "def advance(" in source
    standard_source = compile_source(
        load(str(EXAMPLES / "lm_resnet.rec")),
        backbone="mlp",
        depth=5,
        width=12,
        stages=[12, 16],
        input_size=6,
    )
    torch.manual_seed(0)
    standard = load_source(standard_source, "standard").FormulaNet().double().train()
    toy = load_source(source, "toy").FormulaNet().double().train()
    toy.load_state_dict(standard.state_dict())
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 1, 6, 6, generator=g, dtype=torch.float64)
    y = torch.randint(0, 10, (4,), generator=g)
    grads = []
    for net in (standard, toy):
        net.zero_grad()
        out_ = net(x)
        torch.nn.functional.cross_entropy(out_, y).backward()
        grads.append({k: p.grad.clone() for k, p in net.named_parameters()})
    assert grads[0].keys() == grads[1].keys()
    for k in grads[0]:
        torch.testing.assert_close(grads[1][k], grads[0][k], rtol=1e-10, atol=1e-12)


def test_a_registered_mode_appears_in_info_memory(toy_mode, capsys):
    status, out, err = run_cli(capsys, "info", EXAMPLES / "resnet.rec", *MLP, "--memory", "--json")
    assert status == 0, err
    modes = [e["mode"] for e in json.loads(out)["memory"]]
    assert modes == ["standard", "checkpoint", "reversible", "toy"]
    toy = json.loads(out)["memory"][-1]
    standard = json.loads(out)["memory"][0]
    assert toy["bytes_per_image"] == standard["bytes_per_image"] > 0  # the base class's estimate
    # --memory toy: the table, and the layout of the toy network itself
    status, out, err = run_cli(capsys, "info", EXAMPLES / "resnet.rec", *MLP, "--memory", "toy", "--json")
    assert status == 0, err
    assert [e["mode"] for e in json.loads(out)["memory"]][-1] == "toy"


def test_a_registered_mode_refuses_what_it_cannot_run(toy_mode, capsys):
    status, _, err = run_cli(capsys, "compile", EXAMPLES / "history_sum.rec", *MLP, "--memory", "toy")
    assert status == 2
    assert err.startswith("formulac: error: memory='toy'") and "sums over the whole history" in err


def test_an_unregistered_mode_is_one_error_line(capsys):
    status, _, err = run_cli(capsys, "compile", EXAMPLES / "resnet.rec", "--memory", "toy")
    assert status == 2 and "invalid choice: 'toy'" in err and "Traceback" not in err


def test_a_name_is_registered_once():
    with pytest.raises(ValueError, match="'reversible' is registered already"):
        memory_modes.register_memory_mode(memory_modes.MEMORY_MODES["reversible"])


@pytest.fixture
def invert_calls(monkeypatch):
    """Every call of ``invertibility.invert`` from any formulac module, counted."""
    calls = []
    original = invertibility.invert

    def counted(rec):
        calls.append(rec)
        return original(rec)

    for module in list(sys.modules.values()):
        name = getattr(module, "__name__", "")
        if name.startswith("formulac") and getattr(module, "invert", None) is original:
            monkeypatch.setattr(module, "invert", counted)
    return calls


@pytest.mark.parametrize("spec", ["lm_resnet.rec", "momentum.rec", "revnet.rec"])
def test_the_inverse_is_computed_once_per_compile(spec, invert_calls, monkeypatch):
    rec = load(str(EXAMPLES / spec))
    compile_source(rec, backbone="mlp", depth=5, memory="reversible")
    assert len(invert_calls) == 1
    # a NetworkFactory compiles twice (the source, and its rebuild from the file's text): twice
    from formulac import codegen

    compiles = []
    original = codegen.compile_source

    def counted(*args, **kwargs):
        compiles.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(codegen, "compile_source", counted)
    invert_calls.clear()
    NetworkFactory(rec, {"backbone": "mlp", "depth": 5, "memory": "reversible"})
    assert len(compiles) == 2 and len(invert_calls) == len(compiles)
