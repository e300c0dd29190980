"""The search machinery with a fake objective in place of training: analysis pruning, grid
order, categorical over files, resume without duplicates, failures, outputs."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import sympy
from fake_trainers import EPOCHS, diverging_trainer, fake_trainer, score, trained
from search_setup import build_once

import formulac
from formulac.analysis import analyze
from formulac.parse import load
from formulac.search.space import GRID_PARAM, build_space

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TWO_STEP = str(EXAMPLES / "two_step_free.rec")


def run(tmp_path, files=(TWO_STEP,), **kw):
    kw.setdefault("trainer", fake_trainer)
    kw.setdefault("epochs", EPOCHS)
    kw.setdefault("seed", 0)
    return formulac.search(list(files), out=str(tmp_path / "out"), **kw)


@pytest.fixture(scope="session")
def fake_study(tmp_path_factory, worker_id):
    """One search of a in [-0.9, 0.9] with --require stable and the fake objective, shared."""
    directory = build_once(
        tmp_path_factory,
        worker_id,
        "fake-study",
        lambda d: run(d, space=["a=-0.9:0.9"], require=["stable"], trials=12, pruner="none"),
    )
    out = directory / "out"
    return out, json.loads((out / "leaderboard.json").read_text())


def test_unstable_candidates_are_rejected_and_never_trained(fake_study):
    out, board = fake_study
    assert len(board["trials"]) == 12
    rejected = [t for t in board["trials"] if t["state"] == "rejected"]
    kept = [t for t in board["trials"] if t["state"] == "complete"]
    assert rejected and kept
    # the independent reference: x_<n+1> = x_n + a x_<n-1> has roots (1 ± sqrt(1 + 4a)) / 2,
    # and is contracting or neutral exactly for -1 <= a <= 0
    for t in rejected:
        a = t["params"]["a"]
        assert a > 0, t
        assert "not stable" in t["reason"] and "expanding" in t["reason"]
        assert t["run_dir"] is None and t["val_accuracy"] is None
    for t in kept:
        assert -1 <= t["params"]["a"] <= 0
    trained_values = sorted(r["params"]["a"] for r in trained(out))
    assert trained_values == sorted(t["params"]["a"] for t in kept)
    # every candidate carries its analysis: spectral radius = max |root|
    for t in board["trials"]:
        roots = t["analysis"]["roots"]
        assert t["analysis"]["rate"] == pytest.approx(max(r["modulus"] for r in roots))
    best = board["best"]
    assert best["val_accuracy"] == max(t["val_accuracy"] for t in kept)


def test_rate_requirement_matches_the_analysis(tmp_path):
    board = run(tmp_path, space=["a=-0.9,-0.5,-0.1,0.2"], require=["rate<=0.8"], trials=4)
    for t in board["trials"]:
        a = sympy.Rational(str(t["params"]["a"]))
        rate = analyze(load(TWO_STEP).bind(a=a), depth=4).rate
        assert (t["state"] == "rejected") == (float(rate) > 0.8), (a, rate)


def test_grid_visits_every_point_once_in_a_seeded_order(tmp_path):
    space = ["a=-0.5,-0.25,0", "depth=8,14"]
    first = run(tmp_path / "1", space=space, trials=6, backbone="cifar-resnet", seed=3)
    second = run(tmp_path / "2", space=space, trials=6, backbone="cifar-resnet", seed=3)
    points = [(t["params"]["a"], t["params"]["depth"]) for t in first["trials"]]
    assert sorted(points) == sorted(itertools.product([-0.5, -0.25, 0.0], [8, 14]))
    assert points == [(t["params"]["a"], t["params"]["depth"]) for t in second["trials"]]
    assert first["settings"]["pruner"] == "hyperband"


def test_more_trials_than_grid_points_stops_at_the_grid(tmp_path):
    board = run(tmp_path, space=["a=-0.5,-0.25"], trials=5)
    assert sorted(t["params"]["a"] for t in board["trials"]) == [-0.5, -0.25]
    assert board["trials_requested"] == 2


def test_several_files_compete_as_one_categorical_choice(tmp_path):
    resnet = str(EXAMPLES / "resnet.rec")
    # the grid holds each file's own space once: resnet.rec has no a, so it is one point
    board = run(tmp_path, files=(TWO_STEP, resnet), space=["a=-0.6,-0.3"], trials=10, pruner="none")
    assert board["trials_requested"] == 3 and len(board["trials"]) == 3
    seen = sorted((t["formula"], t["params"].get("a", 0)) for t in board["trials"])
    assert seen == [("resnet", 0), ("two_step_free", -0.6), ("two_step_free", -0.3)]
    assert board["best"]["formula"] == "two_step_free" and board["best"]["params"]["a"] == -0.3
    for t in board["trials"]:
        base, a = (0.9, t["params"]["a"]) if t["formula"] == "two_step_free" else (0.8, 0.0)
        assert t["val_accuracy"] == pytest.approx(base - (a + 0.3) ** 2)


def test_a_grid_over_files_holds_each_files_own_space_once():
    resnet = str(EXAMPLES / "resnet.rec")
    space = build_space(
        [load(TWO_STEP), load(resnet)], [TWO_STEP, resnet], ["a=-0.6,-0.3", "depth=8,14"], "cifar-resnet"
    )
    points = [p.describe() for p in space.points()]
    expected = [f"two_step_free: a={a}, depth={d}" for a in ("-0.6", "-0.3") for d in (8, 14)] + [
        f"resnet: depth={d}" for d in (8, 14)
    ]
    assert points == expected and space.grid_size == 6
    assert space.grid() == {GRID_PARAM: expected}
    # one file: one dimension per name, whose product is the same points
    single = build_space([load(TWO_STEP)], [TWO_STEP], ["a=-0.6,-0.3", "depth=8,14"], "cifar-resnet")
    assert single.grid() == {"a": ["-0.6", "-0.3"], "depth": [8, 14]} and single.grid_size == 4


def test_resume_continues_without_duplicates(tmp_path):
    first = run(tmp_path, space=["a=-0.9:0"], trials=3, pruner="none")
    assert len(first["trials"]) == 3
    again = run(tmp_path, space=["a=-0.9:0"], trials=3, pruner="none")  # nothing left to do
    assert [t["number"] for t in again["trials"]] == [0, 1, 2]
    more = run(tmp_path, space=["a=-0.9:0"], trials=5, pruner="none")
    assert [t["number"] for t in more["trials"]] == [0, 1, 2, 3, 4]
    assert len(trained(tmp_path / "out")) == 5  # each trial trained once
    assert [t["params"] for t in more["trials"][:3]] == [t["params"] for t in first["trials"]]


def test_interrupted_trial_is_requeued_and_resumed(tmp_path, monkeypatch):
    calls = {"n": 0}

    def interrupting(candidate, run_dir, report):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return fake_trainer(candidate, run_dir, report)

    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, space=["a=-0.9:0"], trials=3, trainer=interrupting, pruner="none")
    board = run(tmp_path, space=["a=-0.9:0"], trials=3, trainer=interrupting, pruner="none")
    assert len(board["trials"]) == 3
    assert [s["reason"] for s in board["superseded"]] == ["interrupted"]
    stopped = board["superseded"][0]["number"]
    retry = next(t for t in board["trials"] if t["retry_of"] == stopped)
    assert retry["run_dir"].endswith(f"trial-{stopped:04d}")  # the same run directory


def test_diverged_trials_are_failed_and_the_study_goes_on(tmp_path):
    board = run(tmp_path, space=["a=-0.5,0.5"], trials=2, trainer=diverging_trainer)
    states = {t["params"]["a"]: (t["state"], t["reason"]) for t in board["trials"]}
    assert states[0.5] == ("failed", "training diverged in epoch 1 (loss nan)")
    assert states[-0.5][0] == "complete"


def test_pruner_stops_poor_trials_early(tmp_path):
    board = run(tmp_path, space=["a=-0.9:0.9"], trials=10, pruner="median")
    pruned = [t for t in board["trials"] if t["state"] == "pruned"]
    assert pruned
    for t in pruned:
        assert t["epochs"] < EPOCHS and t["reason"].startswith("stopped after epoch")


def test_outputs_follow_the_contract(fake_study):
    out, board = fake_study
    data = json.loads((out / "leaderboard.json").read_text())
    assert {"study", "objective", "direction", "trials", "best", "confirmation"} <= set(data)
    assert data["objective"] == "val_accuracy" and data["direction"] == "maximize"
    assert data["confirmation"] is None
    for t in data["trials"]:
        assert {
            "number",
            "formula",
            "params",
            "state",
            "reason",
            "val_accuracy",
            "epochs",
            "analysis",
            "run_dir",
        } <= set(t)
        assert t["state"] in ("complete", "pruned", "rejected", "failed")
    for name in ("leaderboard.md", "history.png", "properties.png", "objective.png", "best.rec"):
        assert (out / name).stat().st_size > 0, name
    # best.rec parses, binds the best value and analyses
    rec = load(out / "best.rec")
    best_a = sympy.Rational(str(board["best"]["params"]["a"]))
    assert rec.constants["a"] == best_a and not rec.free_symbols
    assert "trial" in (out / "best.rec").read_text().splitlines()[1]
    assert analyze(rec, depth=5).stability in ("contracting", "neutral")
    rho = data["correlations"]["rate"]["spearman"]
    assert rho is not None and -1 <= rho <= 1


def test_candidate_scores_are_the_fake_objective(fake_study):
    _, board = fake_study
    for t in board["trials"]:
        if t["state"] == "complete":
            cand = type("C", (), {"values": {"a": t["params"]["a"]}, "formula": "two_step_free"})
            assert t["val_accuracy"] == pytest.approx(score(cand))
            assert t["curve"] == pytest.approx([score(cand) * e / EPOCHS for e in range(1, EPOCHS + 1)])


def test_machinery_time_is_recorded_per_trial(fake_study):
    out, board = fake_study
    rows = [json.loads(x) for x in (out / "timings.jsonl").read_text().splitlines()]
    assert sorted(r["number"] for r in rows) == [t["number"] for t in board["trials"]]
    for r in rows:
        assert r["seconds"] >= r["train_seconds"] + r["analysis_seconds"] - 1e-9
        assert r["overhead_seconds"] == pytest.approx(r["seconds"] - r["train_seconds"])
        if r["state"] == "rejected":
            assert r["train_seconds"] == 0
    assert board["overhead"]["trials"] == sum(1 for r in rows if r["train_seconds"] > 0)
