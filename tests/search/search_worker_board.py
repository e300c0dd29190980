"""The leaderboard of a study left by the worker processes (same search, nothing to run)."""

from pathlib import Path

import fake_trainers

import formulac

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def board_of(out, trials, space):
    return formulac.search(
        [str(EXAMPLES / "two_step_free.rec")],
        space=[space],
        require=["stable"],
        trials=trials,
        out=str(out),
        trainer=fake_trainers.slow_trainer,
        epochs=fake_trainers.EPOCHS,
        pruner="none",
        heartbeat=1,
        grace=3,
    )
