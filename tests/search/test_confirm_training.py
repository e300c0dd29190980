"""The confirmation's own training budget (--confirm-epochs, --confirm-limit-train): the search
ranks candidates on a small budget, the confirmation retrains the winner and the baseline on
the one asked for, and the leaderboard records what each trained with."""

from __future__ import annotations

import json

import pytest
from cli_runner import run_cli
from search_setup import FAST, RESNET, TWO_STEP

from formulac.errors import UsageError
from formulac.search.confirm import confirmation_config
from formulac.train import make_config

SYNTHETIC_TRAIN = 5000  # the synthetic data set's training examples (FAST limits the search to 192)


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("formulac: error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def metric_lines(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]


def examples_seen(record: dict) -> int:
    """The training examples of one epoch, from its measured rate and time."""
    return round(record["images_per_s"] * record["train_seconds"])


def test_the_confirmation_trains_its_own_epochs_on_its_own_examples(capsys, tmp_path):
    out = tmp_path / "out"
    code, _, err = run_cli(
        capsys,
        "search",
        TWO_STEP,
        "--space",
        "a=-0.9:0",
        "--trials",
        "2",
        *FAST,  # 2 epochs on 192 examples less the validation split
        "--pruner",
        "none",
        "--confirm",
        "1",
        "--seeds",
        "2",
        "--baseline",
        RESNET,
        "--confirm-epochs",
        "3",
        "--confirm-limit-train",
        "all",
        "--out",
        out,
    )
    assert code == 0, err[-3000:]
    board = json.loads((out / "leaderboard.json").read_text())
    # the trials: the search's budget
    assert {t["epochs"] for t in board["trials"]} == {2}
    trial_runs = sorted((out / "trials").glob("*/metrics.jsonl"))
    assert trial_runs
    for path in trial_runs:
        records = metric_lines(path.parent)
        assert len(records) == 2
        assert all(examples_seen(r) < 192 for r in records)  # the validation split is held out
    # the confirmation: 3 epochs on the whole training set, tested once, after the last epoch
    conf = board["confirmation"]
    assert conf["train_changes"] == {"epochs": 3, "limit_train": None}
    assert conf["train"]["epochs"] == 3 and conf["train"]["limit_train"] is None
    assert conf["train"]["val_fraction"] == 0.0
    assert board["settings"]["train"]["epochs"] == 2  # the search's own settings are unchanged
    runs = sorted((out / "confirm").glob("*/seed*"))
    assert len(runs) == 4  # baseline and the best trial, 2 seeds each
    for run in runs:
        records = metric_lines(run)
        assert [r["epoch"] for r in records] == [1, 2, 3]
        assert all(examples_seen(r) == SYNTHETIC_TRAIN for r in records)
        assert [r["test_acc"] is not None for r in records] == [False, False, True]
        summary = json.loads((run / "summary.json").read_text())
        assert summary["epochs"] == 3 and summary["final_test_acc"] == records[-1]["test_acc"]
    report = (out / "report.md").read_text()
    assert "Retrained from scratch on the full training set for 3 epochs" in report


def test_without_changes_the_confirmation_trains_as_the_search_did():
    search = make_config("fashion", data="synthetic", epochs=2, limit_train=300, val_fraction=0.1)
    config = confirmation_config(search)
    assert (config.epochs, config.limit_train, config.val_fraction) == (2, 300, 0.0)
    assert config.eval_every == 2  # tested once, after the last epoch
    assert config.replace(val_fraction=0.1, eval_every=search.eval_every) == search
    changed = confirmation_config(search, {"epochs": 5, "limit_train": 1000})
    assert (changed.epochs, changed.limit_train, changed.eval_every) == (5, 1000, 5)


@pytest.mark.parametrize(
    "options, phrase",
    [
        (["--confirm-epochs", "3"], "need --confirm K"),
        (["--confirm-limit-train", "all"], "need --confirm K"),
        (["--confirm", "1", "--baseline", RESNET, "--confirm-epochs", "0"], "positive whole number"),
        (["--confirm", "1", "--baseline", RESNET, "--confirm-limit-train", "most"], "positive whole number"),
    ],
)
def test_confirmation_settings_without_a_confirmation_or_out_of_range_are_one_error_line(
    capsys, tmp_path, options, phrase
):
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, "search", TWO_STEP, "--space", "a=-0.9:0", *FAST, *options, "--out", out)
    assert code == 2 and phrase in one_error_line(err)
    assert not out.exists()  # refused before the study was touched


def test_an_unknown_confirmation_setting_is_refused_before_the_study(tmp_path):
    import formulac

    out = tmp_path / "out"
    with pytest.raises(UsageError, match="may change epochs, limit_train, not lr"):
        formulac.search(
            TWO_STEP,
            space=["a=-0.9:0"],
            data="synthetic:1x8x8:4",
            limit_train=192,
            epochs=1,
            backbone="mlp",
            depth=2,
            confirm=1,
            baseline=RESNET,
            confirm_train={"lr": 0.5},
            out=str(out),
        )
    assert not out.exists()


def test_a_continued_search_with_other_confirmation_settings_says_what_to_do(capsys, tmp_path):
    """The earlier confirmation's runs are neither reused nor overwritten, and the error gives
    advice search can follow (search has no --overwrite)."""
    out = tmp_path / "out"
    common = ["search", TWO_STEP, "--space", "a=-0.9:0", "--trials", "2", *FAST, "--pruner", "none"]
    common += ["--confirm", "1", "--seeds", "2", "--baseline", RESNET, "--confirm-epochs", "1"]
    code, _, err = run_cli(capsys, *common, "--confirm-limit-train", "32", "--out", out)
    assert code == 0, err[-3000:]
    code, _, err = run_cli(capsys, *common, "--confirm-limit-train", "48", "--out", out)
    assert code == 2
    line = one_error_line(err)
    assert "holds a finished run with other settings" in line
    assert "limit_train: 32 (saved) vs 48 (now)" in err
    assert f"remove {out / 'confirm'}" in err and "--overwrite" not in err
