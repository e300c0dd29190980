"""Every whole-number option of every command is read by one parser (formulac.numbers): the
same refusal, one error line and exit status 2, for zero, a negative, a fraction and a word."""

from __future__ import annotations

import pytest
from cli_runner import run_cli
from fixtures_path import REPO

RESNET = str(REPO / "examples" / "resnet.rec")
POSITIVE = [
    ["compile", RESNET, "--depth"],
    ["train", RESNET, "--epochs"],
    ["train", RESNET, "--limit-train"],
    ["sample", RESNET, "--tokens"],
    ["search", RESNET, "--trials"],
]
NONNEGATIVE = [["train", RESNET, "--seed"], ["train", RESNET, "--threads"]]


@pytest.mark.parametrize("bad", ["0", "-3", "2.5", "many"])
@pytest.mark.parametrize("command", POSITIVE, ids=lambda c: f"{c[0]} {c[-1]}")
def test_positive_counts_are_refused_alike(command, bad, capsys):
    status, out, err = run_cli(capsys, *command, bad)
    assert status == 2 and out == ""
    assert err.strip().splitlines()[-1] == (
        f"formulac: error: argument {command[-1]}: expected a positive whole number, got {bad!r}"
    )


@pytest.mark.parametrize("bad", ["-1", "0.5", "none"])
@pytest.mark.parametrize("command", NONNEGATIVE, ids=lambda c: f"{c[0]} {c[-1]}")
def test_nonnegative_counts_are_refused_alike(command, bad, capsys):
    status, _, err = run_cli(capsys, *command, bad)
    assert status == 2
    assert err.strip().splitlines()[-1] == (
        f"formulac: error: argument {command[-1]}: expected a whole number >= 0, got {bad!r}"
    )
