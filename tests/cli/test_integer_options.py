"""Every whole-number option of every command is read by one parser (formulac.numbers): the
same refusal, one error line and exit status 2, for zero, a negative, a fraction and a word, and
for a count above its limit (formulac.limits)."""

from __future__ import annotations

import argparse

import pytest
from cli_runner import run_cli
from fixtures_path import REPO
from hypothesis import given
from hypothesis import strategies as st

from formulac.limits import (
    MAX_EPOCH_TOKENS,
    MAX_EPOCHS,
    MAX_PROCESSES,
    MAX_SAMPLE_TOKENS,
    MAX_SEED,
    MAX_SEEDS,
    MAX_TRIALS,
    MAX_WAIT_SECONDS,
)
from formulac.numbers import at_most, epoch_count, seed_value, trial_count
from formulac.train import TrainError, make_config
from formulac.train.options import parse_seeds

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


# a count whose every unit costs time or memory has an upper bound in formulac.limits
BOUNDED = [
    (["train", RESNET, "--epochs"], MAX_EPOCHS),
    (["search", RESNET, "--confirm-epochs"], MAX_EPOCHS),
    (["train", RESNET, "--epoch-tokens"], MAX_EPOCH_TOKENS),
    (["search", RESNET, "--trials"], MAX_TRIALS),
    (["train", RESNET, "--seed"], MAX_SEED),
    (["train", RESNET, "--split-seed"], MAX_SEED),
    (["search", RESNET, "--sampler-seed"], MAX_SEED),
    (["compare", RESNET, RESNET, "--jobs"], MAX_PROCESSES),
    (["search", RESNET, "--workers"], MAX_PROCESSES),
    (["train", RESNET, "--threads"], MAX_PROCESSES),
    (["sample", RESNET, "--tokens"], MAX_SAMPLE_TOKENS),
    (["search", RESNET, "--heartbeat"], MAX_WAIT_SECONDS),
    (["search", RESNET, "--grace"], MAX_WAIT_SECONDS),
]


@pytest.mark.parametrize("above", [1, 10**12], ids=["just-above", "absurd"])
@pytest.mark.parametrize("command, maximum", BOUNDED, ids=lambda c: c[-1] if isinstance(c, list) else "")
def test_counts_above_their_limit_are_refused(command, maximum, above, capsys):
    bad = str(maximum + above)
    status, out, err = run_cli(capsys, *command, bad)
    assert status == 2 and out == ""
    last = err.strip().splitlines()[-1]  # argparse names -j/--jobs by both its flags
    assert last.startswith("formulac: error: argument ")
    assert last.endswith(f"{command[-1]}: expected at most {maximum:,}, got {bad!r}")


@given(maximum=st.integers(1, 10**6), value=st.integers(-10, 2 * 10**6))
def test_at_most_keeps_exactly_the_counts_up_to_its_maximum(maximum, value):
    bounded = at_most(maximum)
    if 1 <= value <= maximum:
        assert bounded(str(value)) == value
    else:
        with pytest.raises(argparse.ArgumentTypeError):
            bounded(str(value))


@pytest.mark.parametrize(
    "seeds, message",
    [
        (str(10**12), f"at most {MAX_SEEDS:,} seeds (each one is a training run), not {10**12:,}"),
        (
            f"0-{MAX_SEEDS}",
            f"at most {MAX_SEEDS:,} seeds (each one is a training run), not {MAX_SEEDS + 1:,}",
        ),
        (f"1,{MAX_SEED + 1}", f"seeds go up to {MAX_SEED:,}, not {MAX_SEED + 1}"),
    ],
    ids=["count", "range", "value"],
)
def test_seed_lists_are_bounded(seeds, message, capsys):
    status, _, err = run_cli(capsys, "compare", RESNET, RESNET, "--seeds", seeds)
    assert status == 2
    assert err.strip().splitlines()[-1] == f"formulac: error: argument --seeds: {message}"


def test_the_limits_themselves_are_accepted():
    assert parse_seeds(str(MAX_SEEDS)) == list(range(MAX_SEEDS))
    assert parse_seeds(f"{MAX_SEED}..{MAX_SEED}") == [MAX_SEED]
    for parse, maximum in [(epoch_count, MAX_EPOCHS), (trial_count, MAX_TRIALS), (seed_value, MAX_SEED)]:
        assert parse(str(maximum)) == maximum


@pytest.mark.parametrize("knob, maximum", [("epochs", MAX_EPOCHS), ("epoch_tokens", MAX_EPOCH_TOKENS)])
def test_the_python_api_keeps_the_same_bounds(knob, maximum):
    assert getattr(make_config("fashion", **{knob: maximum}), knob) == maximum
    flag = "--" + knob.replace("_", "-")
    with pytest.raises(TrainError, match=f"{flag} must be from 1 to {maximum:,}, not {maximum + 1}"):
        make_config("fashion", **{knob: maximum + 1})
