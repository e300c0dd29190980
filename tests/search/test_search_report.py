"""report.md, the one-page report a search leaves: every trial in its leaderboard table, the
figures it shows present beside it, and its confirmation table equal to what ``compare``
measured (its own comparison.json, an independent record of the same runs)."""

from __future__ import annotations

import json
import re

import pytest
from fake_trainers import EPOCHS, fake_trainer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from search_setup import TWO_STEP

import formulac


def table_rows(text: str, heading: str) -> list[list[str]]:
    """The body rows of the first Markdown table under ``## heading``, as lists of cells."""
    section = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    return [[c.strip() for c in row.strip("|").split("|")] for row in rows[2:]]


@pytest.mark.slow  # end to end in other processes: about 20-45 s on a loaded 2-core machine
def test_report_of_a_confirmed_search(finished_study):
    out = finished_study["out"]
    report = (out / "report.md").read_text()
    board = json.loads((out / "leaderboard.json").read_text())
    # the leaderboard: one row per trial, the best first
    rows = table_rows(report, "Leaderboard")
    assert sorted(int(r[1]) for r in rows) == [t["number"] for t in board["trials"]]
    assert int(rows[0][1]) == board["best"]["number"] and rows[0][0] == "1"
    # every figure it shows is a file beside it
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    assert {"history.png", "properties.png"} <= set(images)
    for name in images:
        assert (out / name).stat().st_size > 0, name
    # the confirmation: per-seed test accuracy as compare recorded it, and its verdicts
    comparison = json.loads((out / "confirm" / "comparison.json").read_text())
    seeds = comparison["seeds"]
    conf_rows = {r[0]: r for r in table_rows(report, "Confirmation (test set)")}
    assert set(conf_rows) == {m["label"] for m in comparison["models"]}
    for model in comparison["models"]:
        row = conf_rows[model["label"]]
        by_seed = dict(zip(model["seeds"], (100 * a for a in model["test_acc"])))
        assert [float(c) for c in row[2 : 2 + len(seeds)]] == pytest.approx(
            [by_seed[s] for s in seeds], abs=0.006
        )
    baseline = next(m for m in comparison["models"] if m["label"] == board["confirmation"]["baseline"])
    for pairwise in comparison["pairwise"]:
        row = conf_rows[pairwise["model"]]
        assert float(row[3 + len(seeds)]) == pytest.approx(pairwise["mean_difference_pct"], abs=0.006)
        assert float(row[4 + len(seeds)]) == pytest.approx(pairwise["t_test"]["p_value"], abs=6e-5)
    assert conf_rows[baseline["label"]][3 + len(seeds)] == ""
    for verdict in comparison["verdicts"]:
        assert f"- {verdict}" in report


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(trials=st.integers(min_value=1, max_value=6), seed=st.integers(min_value=0, max_value=2**20))
def test_report_without_confirmation_lists_every_trial(tmp_path_factory, trials, seed):
    out = tmp_path_factory.mktemp("report") / "out"
    board = formulac.search(
        [TWO_STEP],
        space=["a=-0.9:0.9"],
        require=["stable"],
        trials=trials,
        trainer=fake_trainer,
        epochs=EPOCHS,
        seed=seed,
        out=str(out),
    )
    report = (out / "report.md").read_text()
    rows = table_rows(report, "Leaderboard")
    assert sorted(int(r[1]) for r in rows) == list(range(trials))
    counts = board["counts"]
    assert (
        f"{counts['complete']} complete, {counts['pruned']} pruned early, "
        f"{counts['rejected']} rejected by analysis" in report
    )
    # rejected rows are exactly the expanding values (a > 0), and they have no score
    for row in rows:
        a = float(row[3].removeprefix("a="))
        assert row[-1].startswith("rejected") == (a > 0)
        assert (row[4] == "") == (a > 0)
    assert "`a` in [-0.9, 0.9]" in report and "`stable`" in report
    assert "No confirmation was run" in report
