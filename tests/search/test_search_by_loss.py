"""A search by validation loss: the study minimises, the leaderboard ranks the lowest loss
first and says so, and the pruner stops trials whose loss stays high."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fake_trainers import EPOCHS, fake_loss_trainer

import formulac
from formulac.errors import UsageError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TWO_STEP = str(EXAMPLES / "two_step_free.rec")


def test_grid_search_by_loss_ranks_the_lowest_first(tmp_path):
    values = [-0.9, -0.6, -0.3, 0.0]
    board = formulac.search(
        [TWO_STEP],
        out=str(tmp_path / "out"),
        space=[f"a={','.join(map(str, values))}"],
        trials=len(values),
        trainer=fake_loss_trainer,
        objective="val_loss",
        epochs=EPOCHS,
        pruner="none",
        seed=0,
    )
    saved = json.loads((tmp_path / "out" / "leaderboard.json").read_text())
    assert saved["objective"] == "val_loss" and saved["direction"] == "minimize"
    complete = [t for t in saved["trials"] if t["state"] == "complete"]
    assert len(complete) == len(values)
    # the independent reference: the loss each candidate reports, computed here
    expected = {t["params"]["a"]: 1.1 + (t["params"]["a"] + 0.3) ** 2 for t in complete}
    for t in complete:
        assert t["val_loss"] == pytest.approx(expected[t["params"]["a"]])
    assert board["best"]["params"]["a"] == pytest.approx(-0.3)
    assert board["best"]["val_loss"] == min(expected.values())
    markdown = (tmp_path / "out" / "leaderboard.md").read_text()
    assert "validation loss" in markdown and "lower is better" in markdown
    ranked = [line.split("|")[5].strip() for line in markdown.splitlines() if line.startswith("| 1 |")]
    assert float(ranked[0]) == pytest.approx(min(expected.values()), abs=1e-4)
    assert "# validation loss" in (tmp_path / "out" / "best.rec").read_text()


def test_hyperband_prunes_on_loss_keeping_the_best(tmp_path):
    board = formulac.search(
        [TWO_STEP],
        out=str(tmp_path / "out"),
        space=["a=-0.9:0.9"],
        trials=16,
        trainer=fake_loss_trainer,
        objective="val_loss",
        epochs=EPOCHS,
        pruner="hyperband",
        seed=1,
    )
    trials = board["trials"]
    pruned = [t for t in trials if t["state"] == "pruned"]
    complete = [t for t in trials if t["state"] == "complete"]
    assert complete and pruned
    # with direction minimize, a pruned trial was stopped while its loss was above the best's
    best = min(t["val_loss"] for t in complete)
    for t in pruned:
        assert t["val_loss"] > best
    assert board["best"]["val_loss"] == best


def test_val_accuracy_on_text_is_refused(tmp_path):
    with pytest.raises(UsageError, match="no accuracy"):
        formulac.search(
            [TWO_STEP],
            out=str(tmp_path / "out"),
            trials=1,
            objective="val_accuracy",
            data=f"text:{tmp_path / 'corpus.txt'}",
            epochs=1,
        )


def test_a_real_search_on_text_minimises_the_runs_validation_loss(tmp_path):
    """The gpt backbone trained on a corpus generated here: val_loss is the default objective."""
    import random

    rng = random.Random(0)
    words = ["tea", "for", "two", "and", "two", "for", "tea"]
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(" ".join(rng.choice(words) for _ in range(1200)))
    rec = tmp_path / "rezero.rec"
    rec.write_text("param s_n = 0\nx_<n+1> = x_n + s_n*F(x_n)\n")
    board = formulac.search(
        [str(rec)],
        out=str(tmp_path / "out"),
        space=["depth=1,2"],
        trials=2,
        backbone="gpt",
        backbone_options={"dim": 16, "heads": 2, "context": 16},
        pruner="none",
        seed=0,
        data=f"text:{corpus}",
        epochs=1,
        epoch_tokens=2048,
        batch_size=8,
        eval_windows=8,
        device="cpu",
        threads=1,
    )
    assert board["objective"] == "val_loss" and board["direction"] == "minimize"
    complete = [t for t in board["trials"] if t["state"] == "complete"]
    assert len(complete) == 2
    for t in complete:  # the score is the run's own final validation loss
        summary = json.loads((Path(t["run_dir"]) / "summary.json").read_text())
        assert t["val_loss"] == pytest.approx(summary["final_val_loss"])
    assert board["best"]["val_loss"] == min(t["val_loss"] for t in complete)
