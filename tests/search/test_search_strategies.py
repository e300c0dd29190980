"""Samplers and pruners come from one registry each: a toy sampler and a toy pruner registered
from outside are offered by the command line and used by the study."""

from __future__ import annotations

import json

import pytest
from search_setup import FAST, TWO_STEP

from formulac.cli import main
from formulac.search import strategies


def _lowest_sampler(space, seed):
    """Every interval at its lower end."""
    import optuna

    class Lowest(optuna.samplers.RandomSampler):
        def sample_independent(self, study, trial, name, distribution):
            return distribution.low

    return Lowest(seed=seed)


def _prune_at_once(epochs):
    import optuna

    class AtOnce(optuna.pruners.BasePruner):
        def prune(self, study, trial):
            return True

    return AtOnce()


@pytest.fixture
def toys():
    strategies.register_sampler("lowest", _lowest_sampler, "every interval at its lower end")
    strategies.register_pruner("at-once", _prune_at_once, "stop every trial after its first epoch")
    yield
    del strategies.SAMPLERS["lowest"], strategies.PRUNERS["at-once"]


def test_a_registered_sampler_and_pruner_are_used_from_the_command_line(toys, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["search", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "lowest: every interval at its lower end" in help_text and "at-once" in help_text
    out = tmp_path / "out"
    argv = ["search", TWO_STEP, "--space", "a=-0.9:0", "--trials", "1", *FAST, "--out", str(out)]
    code = main([*argv, "--sampler", "lowest", "--pruner", "at-once"])
    assert code == 0, capsys.readouterr().err
    (trial,) = json.loads((out / "leaderboard.json").read_text())["trials"]
    assert trial["params"]["a"] == -0.9 and trial["state"] == "pruned"


def test_auto_is_resolved_in_one_place():
    finite = build_space_of(["a=-0.5,-0.25"])
    interval = build_space_of(["a=-0.5:0"])
    assert strategies.resolve_sampler("auto", finite).name == "grid"
    assert strategies.resolve_sampler("auto", interval).name == "tpe"


def build_space_of(items):
    from formulac.parse import load
    from formulac.search.space import build_space

    return build_space([load(TWO_STEP)], [TWO_STEP], items, "mlp", {})


def test_the_command_line_refuses_an_unregistered_sampler(capsys):
    assert main(["search", TWO_STEP, "--sampler", "lowest"]) == 2
    assert "invalid choice: 'lowest'" in capsys.readouterr().err
