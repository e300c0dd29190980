"""A seeded search never proposes a point twice: a continued study, a rerun, several workers
each draw new points, and the same seed still gives the same points to the same trials."""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_trainers import EPOCHS, fake_trainer

import formulac
from formulac.search.strategies import trial_seed

TWO_STEP = str(Path(__file__).resolve().parents[2] / "examples" / "two_step_free.rec")


def run(out, trials, sampler, seed=3):
    board = formulac.search(
        [TWO_STEP],
        space=["a=-0.9:0"],
        trials=trials,
        out=str(out),
        trainer=fake_trainer,
        epochs=EPOCHS,
        sampler=sampler,
        seed=seed,
        pruner="none",
    )
    return [t["params"]["a"] for t in board["trials"]]


@pytest.mark.parametrize("sampler", ["random", "tpe"])
def test_a_continued_study_draws_new_points(tmp_path, sampler):
    first = run(tmp_path / "out", 3, sampler)
    continued = run(tmp_path / "out", 6, sampler)  # the same command with more --trials
    assert continued[:3] == first
    assert len(set(continued)) == 6, continued
    # a rerun in another directory gives the same points to the same trial numbers
    assert run(tmp_path / "again", 6, sampler) == continued


def test_another_seed_draws_other_points(tmp_path):
    assert set(run(tmp_path / "one", 3, "random", seed=1)).isdisjoint(
        run(tmp_path / "two", 3, "random", seed=2)
    )


def test_trial_seeds_differ_by_trial_and_by_seed():
    seeds = {trial_seed(s, k) for s in range(20) for k in range(50)}
    assert len(seeds) == 1000 and all(0 <= x < 2**32 for x in seeds)
