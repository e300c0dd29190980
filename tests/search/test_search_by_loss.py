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


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(objective="val_accuracy", data="text:{tmp}/corpus.txt"), "no accuracy"),
        (
            dict(objective="val_loss", data="synthetic", confirm=1, baseline=TWO_STEP),
            "--confirm with --objective val_loss compares the test loss",
        ),
    ],
    ids=["val-accuracy-on-text", "confirm-by-loss-on-images"],
)
def test_an_objective_the_data_cannot_give_is_refused(tmp_path, settings, message):
    settings = dict(settings, data=settings["data"].replace("{tmp}", str(tmp_path)))
    with pytest.raises(UsageError, match=message):
        formulac.search([TWO_STEP], out=str(tmp_path / "out"), trials=1, epochs=1, **settings)


def _tiny_corpus(tmp_path, seed: int) -> Path:
    import random

    rng = random.Random(seed)
    words = ["tea", "for", "two", "and", "two", "for", "tea"]
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(" ".join(rng.choice(words) for _ in range(1200)))
    return corpus


def _tiny_gpt_on(corpus: Path) -> dict:
    """Search settings that train a tiny gpt on ``corpus`` for one short epoch on one CPU thread."""
    return dict(
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


def test_a_real_search_on_text_minimises_the_runs_validation_loss(tmp_path):
    """The gpt backbone trained on a corpus generated here: val_loss is the default objective."""
    rec = tmp_path / "rezero.rec"
    rec.write_text("param s_n = 0\nx_<n+1> = x_n + s_n*F(x_n)\n")
    board = formulac.search(
        [str(rec)],
        out=str(tmp_path / "out"),
        space=["depth=1,2"],
        trials=2,
        **_tiny_gpt_on(_tiny_corpus(tmp_path, seed=0)),
    )
    assert board["objective"] == "val_loss" and board["direction"] == "minimize"
    complete = [t for t in board["trials"] if t["state"] == "complete"]
    assert len(complete) == 2
    for t in complete:  # the score is the run's own final validation loss
        summary = json.loads((Path(t["run_dir"]) / "summary.json").read_text())
        assert t["val_loss"] == pytest.approx(summary["final_val_loss"])
    assert board["best"]["val_loss"] == min(t["val_loss"] for t in complete)


def test_confirm_on_text_retrains_the_best_and_compares_test_loss_paired_by_seed(tmp_path):
    """search --confirm on text: the best trial by validation loss and the baseline retrained
    with each seed, compared by the runs' own test loss (lower is better), the paired t-test
    recomputed here with SciPy."""
    from scipy import stats as scipy_stats

    scaled = tmp_path / "scaled.rec"
    scaled.write_text("symbol a\nx_<n+1> = x_n + a*F(x_n)\n")
    baseline = tmp_path / "plain.rec"
    baseline.write_text("x_<n+1> = x_n + F(x_n)\n")
    out = tmp_path / "out"
    formulac.search(
        [str(scaled)],
        out=str(out),
        space=["a=0.25,0.5"],
        trials=2,
        depth=1,
        **_tiny_gpt_on(_tiny_corpus(tmp_path, seed=1)),
        confirm=1,
        seeds=2,
        baseline=str(baseline),
        quiet=True,
    )
    saved = json.loads((out / "leaderboard.json").read_text())
    assert saved["objective"] == "val_loss" and saved["direction"] == "minimize"
    conf = saved["confirmation"]
    assert conf["objective"] == "test_loss" and conf["direction"] == "minimize"
    best = min((t for t in saved["trials"] if t["state"] == "complete"), key=lambda t: t["val_loss"])
    base_row, trial_row = conf["models"]
    assert base_row["label"] == "plain" and trial_row["trial"] == best["number"]
    assert trial_row["params"] == best["params"]
    losses = {}
    for row in conf["models"]:  # each model's test loss per seed is its retrained run's own
        runs = [out / "confirm" / row["label"] / f"seed{s}" / "summary.json" for s in conf["seeds"]]
        losses[row["label"]] = [json.loads(p.read_text())["final_test_loss"] for p in runs]
        assert row["test_loss"] == losses[row["label"]]
    expected = scipy_stats.ttest_rel(losses[trial_row["label"]], losses["plain"])
    assert trial_row["paired_t_test"]["p_value"] == pytest.approx(expected.pvalue)
    assert trial_row["difference_to_baseline"] == pytest.approx(
        sum(losses[trial_row["label"]]) / 2 - sum(losses["plain"]) / 2
    )
    comparison = json.loads((out / "confirm" / "comparison.json").read_text())
    assert comparison["objective"] == "test_loss" and comparison["evaluated_on"] == "test"
    report = (out / "report.md").read_text()
    assert "test loss (nats per token, lower is better)" in report
    assert f"{losses['plain'][0]:.4f}" in report
    assert "# confirmation: test loss" in (out / "best.rec").read_text()
