"""Inputs a search refuses with a message that says what is wrong: a property that a formula
lacks, a number that underflows, a damaged study file; an unopenable storage leaves no --out."""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_trainers import EPOCHS, fake_trainer
from search_setup import FAST, TWO_STEP

import formulac
from formulac.analysis import analyze
from formulac.cli import main
from formulac.errors import UsageError
from formulac.parse import load
from formulac.search.properties import parse_requirement, summarize

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def failure(example: str, requirement: str) -> str | None:
    summary = summarize(analyze(load(EXAMPLES / f"{example}.rec"), depth=6))
    return parse_requirement(requirement).failure(summary)


def test_a_missing_property_says_why_it_is_missing():
    # ResNet is linear: its rebuild growth is missing because F(x_n) cannot be inverted
    why = failure("resnet", "rebuild_growth<=2")
    assert "not invertible" in why and "F(x_n)" in why and "not linear" not in why
    assert failure("two_step", "rebuild_growth<=2") is None  # it runs backward, growth ~1
    assert "not linear" in failure("resnet_post", "rate<=1")
    assert "no block weights" in failure("resnet_post", "first_block_weight>0")


def one_error(capsys, argv) -> str:
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("formulac: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize(
    "space", ["a=1e-400,0", "a=-1e-400:0", "a=-0.5,-1e-330", "a=0.1,0.1000000000000000000001"]
)
def test_values_that_are_zero_or_equal_in_double_precision(capsys, tmp_path, space):
    line = one_error(capsys, ["search", TWO_STEP, "--space", space, *FAST, "--out", tmp_path / "out"])
    reasons = ("underflows to 0", "equal in double precision", "outside the range of a double")
    assert any(reason in line for reason in reasons), line
    assert not (tmp_path / "out").exists()


def test_a_damaged_study_file_is_named(tmp_path):
    out = tmp_path / "out"
    args = dict(space=["a=-0.9:0"], trials=2, out=str(out), trainer=fake_trainer, epochs=EPOCHS, seed=0)
    formulac.search([TWO_STEP], **args)
    study = out / "study.db"
    data = bytearray(study.read_bytes())
    data[4096 : 4096 + 2048] = bytes(2048)  # a page of the schema zeroed
    study.write_bytes(bytes(data))
    with pytest.raises(UsageError, match=r"study file .*study.db is damaged \(SQLite: database disk image"):
        formulac.search([TWO_STEP], **{**args, "trials": 3})
    assert study.read_bytes() == bytes(data)  # untouched


@pytest.mark.parametrize("storage", ["postgresql://nobody@127.0.0.1:1/none", "sqlite:///{tmp}/garbage.db"])
def test_a_storage_that_cannot_be_opened_leaves_no_out_directory(capsys, tmp_path, storage):
    (tmp_path / "garbage.db").write_text("not a database\n")
    storage = storage.format(tmp=tmp_path)
    out = tmp_path / "new" / "out"
    argv = ["search", TWO_STEP, "--space", "a=-0.9:0", *FAST, "--storage", storage, "--out", out]
    line = one_error(capsys, argv)
    assert "cannot open the study storage" in line or "is damaged" in line
    assert not out.exists()
    existing = tmp_path / "existing"
    existing.mkdir()
    one_error(capsys, [*argv[:-1], existing])
    assert existing.is_dir()  # a directory the user made stays
