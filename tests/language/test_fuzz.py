"""Fuzzing the parser: whatever the input, only FormulacError escapes, and quickly.

Three sources of input: random text over the language's alphabet (plus some hostile
characters), random bytes, and random mutations of the example files (characters inserted,
deleted or replaced, lines duplicated, dropped or swapped). Every parse must end in under a
second (hypothesis' deadline) and may only raise :class:`formulac.errors.FormulacError`.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from formulac.errors import FormulacError, SourceError
from formulac.parse import parse

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.rec"))
SOURCES = [p.read_text(encoding="utf-8") for p in EXAMPLES]

FUZZ = settings(
    max_examples=300,
    deadline=1000,
    derandomize=True,  # the same inputs every run: a failure is reproducible
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

# Characters of the language, hostile characters, and pieces that build structure.
CHARS = list("xyvFGTkan0123456789_<>{}()+-*/^=.,;# \t\n\r\x00\ufeff\u2028\xa0é$[]")
PIECES = [
    "x_n",
    "x_<n+1>",
    "x_<n-1>",
    "x_{n+1}",
    "F(",
    "sum(i=0..n, ",
    "cat(",
    "param ",
    "symbol ",
    "output ",
    "shared ",
    "relu(",
    "tanh(",
    "exp(",
    "log(",
    "sqrt(",
    "1e999",
    "..",
    "\\\n",
    "\r\n",
    "**",
    "lambda",
    "print",
]
ALPHABET = st.sampled_from(CHARS + PIECES)
TEXT = st.one_of(st.lists(ALPHABET, max_size=60).map("".join), st.text(max_size=80))

TOKENS = [
    "x_n",
    "x_<n+1>",
    "x_<n-1>",
    "x_<n-2>",
    "x_0",
    "v_n",
    "v_<n+1>",
    "F(x_n)",
    "G(",
    "(",
    ")",
    "+",
    "-",
    "*",
    "/",
    "^",
    "=",
    "\n",
    ";",
    "0.5",
    "1/3",
    "n",
    "k_n",
    "a",
    "sum(i=0..n, x_i)",
    "cat(",
    ",",
    "relu(",
    "sigmoid(",
    "1e400",
    "0",
    "#",
    "_",
    "<",
    ">",
    "{",
    "}",
    "x_{n+1}",
]


def _parse_quickly(text) -> None:
    """Parse; only the project's errors may escape, and a SourceError must point into the text."""
    start = time.process_time()  # CPU time: a loaded machine's scheduling pauses do not count
    try:
        parse(text, "fuzz.rec")
    except SourceError as exc:
        source = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
        assert 1 <= exc.location.line <= source.count("\n") + 1
        assert exc.location.column >= 1
        assert exc.format().startswith(f"fuzz.rec:{exc.location.line}:{exc.location.column}: error: ")
    except FormulacError:
        pass
    elapsed = time.process_time() - start
    assert elapsed < 1.0, f"parse took {elapsed:.2f} s of CPU time"


@FUZZ
@given(TEXT)
@example("x_<n+1> = " + "(" * 200 + "x_n" + ")" * 200)
@example("x_<n+1> = x_n" + "^x_n" * 300)
@example("x_<n+1> = x_n + " + "-" * 3000 + "x_n")
def test_random_text(text):
    _parse_quickly(text)


@FUZZ
@given(st.lists(st.sampled_from(TOKENS), max_size=40).map("".join))
def test_random_token_soup(text):
    _parse_quickly(text)


@FUZZ
@given(st.binary(max_size=200))
@example(b"\xff\xfe\x00x")
@example(b"\xef\xbb\xbf")
@example(b"x_<n+1> = x_n\x00")
def test_random_bytes(data):
    _parse_quickly(data)


def _mutate(source: str, edits: list[tuple[int, int, int, str]]) -> str:
    """Apply edits (kind, position, length, text): insert, delete, replace, or splice lines."""
    text = source
    for kind, pos, length, piece in edits:
        pos %= len(text) + 1
        if kind == 0:  # insert
            text = text[:pos] + piece + text[pos:]
        elif kind == 1:  # delete
            text = text[:pos] + text[pos + length :]
        elif kind == 2:  # replace
            text = text[:pos] + piece + text[pos + len(piece) :]
        else:  # splice: move, duplicate or drop a line
            lines = text.split("\n")
            i, j = pos % len(lines), (pos + length) % len(lines)
            if kind == 3:
                lines.insert(j, lines[i])
            elif kind == 4:
                del lines[i]
            else:
                lines[i], lines[j] = lines[j], lines[i]
            text = "\n".join(lines)
    return text


EDITS = st.lists(
    st.tuples(
        st.integers(0, 5),
        st.integers(0, 5000),
        st.integers(1, 12),
        st.one_of(st.lists(ALPHABET, min_size=1, max_size=4).map("".join), st.sampled_from(TOKENS)),
    ),
    min_size=1,
    max_size=6,
)


@FUZZ
@given(st.sampled_from(SOURCES), EDITS)
def test_mutated_examples(source, edits):
    _parse_quickly(_mutate(source, edits))


@FUZZ
@given(st.sampled_from(SOURCES), st.sampled_from(SOURCES), st.integers(0, 10_000), st.integers(0, 10_000))
def test_spliced_examples(a, b, i, j):
    """Lines of one example cut into another: states, blocks and declarations collide."""
    la, lb = a.split("\n"), b.split("\n")
    i, j = i % len(la), j % len(lb)
    _parse_quickly("\n".join(la[:i] + lb[j:]))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_themselves_parse(path):
    parse(path.read_bytes(), str(path))
