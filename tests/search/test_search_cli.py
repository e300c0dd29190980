"""formulac search on the command line: bad input is one error line and exit 2 and leaves a
stored study as it was; end to end on the synthetic data set with a confirmation (the shared
study of conftest.py); formulac learned."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from case_files import each_case, read_command_cases
from cli_runner import run_cli
from search_setup import EXAMPLES, FAST, RESNET, SEARCH_ARGS, TWO_STEP, study_content


def search_family(capsys, out, space, *options):
    """``formulac search two_step_free.rec --space SPACE OPTIONS --out OUT``: (status, stderr)."""
    code, _, err = run_cli(capsys, "search", TWO_STEP, "--space", space, *options, "--out", out)
    return code, err


def trials_by_a(out) -> dict:
    return {t["params"]["a"]: t for t in json.loads((out / "leaderboard.json").read_text())["trials"]}


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("formulac: error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


LM = str(EXAMPLES / "lm_resnet.rec")


def with_option(args, flag, value):
    """``args`` with the value of ``flag`` replaced."""
    i = args.index(flag)
    return [*args[: i + 1], value, *args[i + 2 :]]


BAD = read_command_cases(Path(__file__).with_name("bad_search_arguments.cases"))


@each_case(BAD)
def test_bad_input_is_one_error_line_and_the_study_is_intact(capsys, study_copy, case):
    before = study_content(study_copy)
    board = (study_copy / "leaderboard.json").read_text()
    code, _, err = run_cli(capsys, *case.argv(examples=EXAMPLES), *FAST, "--out", study_copy)
    assert code == 2, err
    assert case.message in one_error_line(err)
    assert study_content(study_copy) == before
    assert (study_copy / "leaderboard.json").read_text() == board


def test_out_naming_a_file(capsys, tmp_path):
    target = tmp_path / "file"
    target.write_text("keep")
    code, err = search_family(capsys, target, "a=-0.9:0", *FAST)
    assert code == 2 and "exists and is not a directory" in one_error_line(err)
    assert target.read_text() == "keep"


def test_the_executable_reports_one_line_and_status_2(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "formulac", "search", TWO_STEP, "--space", "b=0:1", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2
    assert "unknown name 'b'" in one_error_line(r.stderr)


def test_end_to_end_with_confirmation(finished_study, capsys):
    out = finished_study["out"]
    assert "search: 3/3 done" in finished_study["stderr"]
    assert "the test set is used only by --confirm" in finished_study["stderr"]
    board = json.loads((out / "leaderboard.json").read_text())
    assert len(board["trials"]) == 3
    conf = board["confirmation"]
    assert conf["evaluated_on"] == "test set" and len(conf["models"]) == 2
    assert conf["models"][1]["trial"] == board["best"]["number"]
    assert conf["friedman"] is not None and "p_holm" in conf["models"][1]
    assert [len(m["test_error_pct"]) for m in conf["models"]] == [2, 2]  # two seeds each
    complete = [t for t in board["trials"] if t["state"] == "complete"]
    assert complete
    for t in complete:
        metrics = [json.loads(x) for x in (Path(t["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
        assert all(m["val_acc"] is not None and m["test_acc"] is None for m in metrics)  # test set unseen
        assert t["val_accuracy"] == pytest.approx(metrics[-1]["val_acc"])
        assert len(metrics) == t["epochs"] == 2
    for t in board["trials"]:
        assert (t["state"] == "rejected") == (t["params"]["a"] > 0)  # stable exactly for -1 <= a <= 0
    timings = [json.loads(x) for x in (out / "timings.jsonl").read_text().splitlines()]
    assert sorted(r["number"] for r in timings) == [t["number"] for t in board["trials"]]
    for r in timings:
        assert 0 <= r["train_seconds"] <= r["seconds"] and r["overhead_seconds"] >= 0
    code, stdout, _ = run_cli(capsys, "analyze", out / "best.rec")
    assert code == 0 and "stability" in stdout


def test_the_same_command_again_continues_and_another_space_is_refused(capsys, study_copy):
    before = study_content(study_copy)
    code, _, err = run_cli(
        capsys, "search", TWO_STEP, "--space", "a=-0.5:0.5", "--trials", "3", *FAST, "--out", study_copy
    )
    assert code == 2 and "another search space" in one_error_line(err)
    assert study_content(study_copy) == before  # nothing stored was touched
    # the same search with other training settings is another search too
    code, _, err = run_cli(capsys, *with_option(SEARCH_ARGS, "--epochs", "3"), "--out", study_copy)
    assert code == 2 and "other settings" in one_error_line(err)
    # the same command (without its confirmation) finds the study finished: nothing is trained
    code, _, err = run_cli(capsys, *SEARCH_ARGS, "--out", study_copy)
    assert code == 0, err
    board = json.loads((study_copy / "leaderboard.json").read_text())
    assert len(board["trials"]) == 3
    assert len((study_copy / "timings.jsonl").read_text().splitlines()) == 3  # no new trial ran


def test_too_few_complete_trials_for_the_confirmation(capsys, tmp_path):
    # every candidate is unstable: all rejected, nothing to confirm; the study and leaderboard stay
    out = tmp_path / "out"
    code, err = search_family(
        capsys, out, "a=0.2,0.5", "--require", "stable", *FAST, "--confirm", "1", "--baseline", RESNET
    )
    assert code == 2 and "no trial of the study completed" in one_error_line(err)
    board = json.loads((out / "leaderboard.json").read_text())
    assert board["counts"]["rejected"] == 2 and board["confirmation"] is None
    assert not (out / "confirm").exists()


def test_a_diverging_candidate_fails_with_its_reason_and_the_study_goes_on(capsys, tmp_path):
    # a = 0.9 expands (roots 1.57 and -0.57): 30 steps of it overflow at lr 0.1 within an epoch
    out = tmp_path / "out"
    deep = with_option(FAST, "--depth", "30")
    # He et al.'s SGD (the mlp's default recipe is AdamW, which takes bounded steps)
    sgd = ["--recipe", "cifar", "--lr", "0.1"]
    code, err = search_family(capsys, out, "a=-0.5,0.9", *deep, *sgd, "--pruner", "none")
    assert code == 0, err
    states = trials_by_a(out)
    assert states[0.9]["state"] == "failed" and "diverged" in states[0.9]["reason"]
    assert states[-0.5]["state"] == "complete"


def test_learned_reads_trained_coefficients(capsys, tmp_path):
    import torch

    run_dir = tmp_path / "run"
    code, _, err = run_cli(
        capsys, "train", LM, *FAST[:10], "--backbone", "mlp", "--depth", "3", "--out", run_dir, "-q"
    )
    assert code == 0, err[-2000:]
    code, stdout, err = run_cli(capsys, "learned", run_dir, "--json")
    assert code == 0, err
    data = json.loads(stdout)
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)["model"]
    assert data["per_step"]["k"]["layer1"] == pytest.approx([float(state[f"layer1.{i}.k"]) for i in range(3)])
    code, stdout, _ = run_cli(capsys, "analyze", run_dir / "learned.rec")
    assert code == 0 and "stability" in stdout


def test_reversible_memory_rejects_what_cannot_run_backward_and_trains_the_rest(capsys, tmp_path):
    # a = 0 is ResNet (x_<n-1> is not read: nothing to rebuild it from); a = -0.5 runs backward;
    # a = -1e-5 does, but rebuilding multiplies errors by 1e5 a step: no float32 state survives
    out = tmp_path / "out"
    code, err = search_family(
        capsys, out, "a=-0.5,0,-0.00001", *FAST, "--memory", "reversible", "--pruner", "none"
    )
    assert code == 0, err
    states = trials_by_a(out)
    # the code generator's own refusal, once: the planner decides, not a second check beside it
    assert states[0]["state"] == "rejected"
    assert states[0]["reason"].startswith("memory='reversible' needs a formula whose steps can run backward")
    assert (
        "; use memory='checkpoint' instead" in states[0]["reason"]
        and "; not invertible" not in states[0]["reason"]
    )
    assert states[-1e-5]["state"] == "rejected" and "useless" in states[-1e-5]["reason"]
    assert states[-0.5]["state"] == "complete"
    assert states[-0.5]["analysis"]["invertible"] is True
    # roots (1 +- i)/2: 1/0.707 backward
    assert states[-0.5]["analysis"]["rebuild_growth"] == pytest.approx(2**0.5)
    config = json.loads((Path(states[-0.5]["run_dir"]) / "config.json").read_text())
    assert config["model"]["memory"] == "reversible"


def test_an_out_directory_that_cannot_be_made(capsys, tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("keep me\n")
    code, err = search_family(capsys, blocker / "sub", "a=-0.5,-0.2", *FAST)
    assert code == 2 and f"cannot create --out {blocker / 'sub'}" in one_error_line(err)
    assert blocker.read_text() == "keep me\n"
