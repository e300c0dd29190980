"""formulac.parse.as_recurrence, the one coercion of "a formula" (issue 21): a Formula, a
Recurrence, formula text, or a .rec file as a pathlib.Path give the same representation; a str
is always formula text, never a path. Every entry point that takes "a formula" uses it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from fixtures_path import REPO
from torch import nn

import formulac
from formulac.analysis import analyze, unroll
from formulac.errors import SourceError
from formulac.parse import as_recurrence, load
from formulac.printing import to_rec

ZOO = sorted((REPO / "examples").rglob("*.rec"))


@pytest.mark.parametrize("path", ZOO, ids=lambda p: p.stem)
def test_every_form_of_a_formula_gives_one_representation(path: Path):
    text = path.read_text(encoding="utf-8")
    rec = load(path)
    forms = [path, text, text.encode(), rec, formulac.load(path)]
    assert {to_rec(as_recurrence(form)) for form in forms} == {to_rec(rec)}
    assert as_recurrence(rec) is rec


STACK = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))


def _transform(item):
    return formulac.transform(STACK, item, stacks=[""])


def test_a_str_is_text_even_when_it_names_a_file():
    path = str(REPO / "examples" / "resnet.rec")
    for entry in (as_recurrence, analyze, formulac.analyze, lambda item: unroll(item, 2), _transform):
        with pytest.raises(SourceError):
            entry(path)


def test_transform_reads_a_path_as_the_file():
    path = REPO / "examples" / "momentum.rec"
    from_path, from_text = _transform(path), _transform(path.read_text(encoding="utf-8"))
    assert from_path.state_dict().keys() == from_text.state_dict().keys()
    x = torch.randn(3, 4)
    torch.testing.assert_close(from_path(x), from_text(x), rtol=0, atol=0)


def test_the_facade_and_the_analysis_take_the_same_forms():
    path = REPO / "examples" / "momentum.rec"
    reference = analyze(load(path), depth=4).to_json()
    assert formulac.analyze(path, depth=4).to_json() == reference
    from_text = formulac.analyze(path.read_text(), depth=4).to_json()
    assert from_text.pop("name") == "<string>"  # text has no file name
    assert from_text == {k: v for k, v in reference.items() if k != "name"}
    assert formulac.load(REPO / "examples" / "resnet.rec").diff(path, depth=3) is not None


@pytest.mark.parametrize("item", [3, None, ["x_<n+1> = x_n + F(x_n)"]])
def test_anything_else_is_a_type_error(item):
    with pytest.raises(TypeError, match="pathlib.Path"):
        as_recurrence(item)
