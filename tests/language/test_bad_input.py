"""Malformed formula files: each one is a SourceError at the right line and column.

``bad_input.cases`` holds (id, text, line, column, message fragment), read by
:mod:`case_files`. Every case is checked three ways: ``parse`` raises :class:`SourceError` at that place with that message; the formatted
error is ``FILE:LINE:COL: error: ...`` followed by the source line and a caret under the
column; and ``formulac check FILE`` exits with status 2 and prints exactly that, never a
traceback (in process for every case, and once for all of them in a real subprocess).
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
from case_files import expect_source_error, read_cases

from formulac.errors import FormulacError, SourceError
from formulac.limits import MAX_EXPRESSION_DEPTH, MAX_LINE_CHARS, MAX_NESTING
from formulac.parse import parse

CASES = read_cases(Path(__file__).with_name("bad_input.cases"))
IDS = [c[0] for c in CASES]


def test_there_are_enough_cases():
    assert len(CASES) >= 30
    assert len(set(IDS)) == len(IDS)


def _check_format(text: str, path: str, line: int, column: int, message: str) -> None:
    """``FILE:LINE:COL: error: MESSAGE``, then the source line, then a caret under the column."""
    lines = text.rstrip("\n").split("\n")
    assert lines[0] == f"{path}:{line}:{column}: error: {message}"
    assert "Traceback" not in text
    if len(lines) == 1:  # an empty file has no line to show
        return
    shown, caret = lines[1], lines[2]
    assert shown.startswith("    ") and caret.startswith("    ")
    assert caret.strip() == "^"
    caret_at = caret.index("^") - 4
    if not shown[4:].startswith("..."):  # a long line is cut to a window around the caret
        assert caret_at == column - 1
    assert caret_at <= len(shown) - 4


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_bad_input_is_a_source_error(case):
    _, text, line, column, fragment = case
    err = expect_source_error(text, line, column, fragment)
    _check_format(err.format(), "bad.rec", line, column, err.message)
    source_line = text.lstrip("\ufeff").split("\n")[line - 1].rstrip("\r")
    if text and source_line.replace("\t", "").isprintable():  # the line is shown as written (tabs as spaces)
        assert err.format().split("\n")[1] == "    " + source_line.replace("\t", " ")


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_bad_input_as_utf8_bytes(case):
    """The same files read as bytes (what ``load`` does) give the same errors."""
    expect_source_error(case.text.encode("utf-8"), case.line, case.column, case.message)


# -- binary garbage, huge and deep inputs -----------------------------------------------------


def test_nul_bytes():
    expect_source_error(b"x_<n+1> = x_n\x00 + F(x_n)", 1, 14, "control character U+0000")


def test_invalid_utf8():
    err = expect_source_error(b"a = 1\nx_<n+1> = x_n + \xff F(x_n)", 2, 17, "not UTF-8 text (byte 0xff)")
    _check_format(err.format(), "bad.rec", 2, 17, err.message)


def test_binary_file():
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10"
    expect_source_error(png, 1, 1, "not UTF-8")
    elf = b"\x7fELF\x02\x01\x01\x00" + bytes(range(256))
    with pytest.raises(SourceError):
        parse(elf, "bad.rec")


def test_random_bytes_are_rejected_quickly():
    rng = random.Random(1234)
    for _ in range(50):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400)))
        start = time.perf_counter()
        with pytest.raises(FormulacError):
            parse(data, "bad.rec")
        assert time.perf_counter() - start < 1.0


def test_very_long_line():
    text = "x_<n+1> = x_n + " + "1+" * 50_000 + "F(x_n)"
    start = time.perf_counter()
    err = expect_source_error(text, 1, MAX_LINE_CHARS + 1, "line too long")
    assert time.perf_counter() - start < 1.0
    shown = err.format().split("\n")[1]
    assert len(shown) < 200, "the source line is cut to a window"
    _check_format(err.format(), "bad.rec", 1, MAX_LINE_CHARS + 1, err.message)


def test_very_long_line_after_good_lines():
    text = "a = 1\n# fine\nx_<n+1> = x_n + a*F(x_n)\n# " + "x" * 100_000
    expect_source_error(text, 4, MAX_LINE_CHARS + 1, "line too long")


def test_ten_thousand_parentheses():
    text = "x_<n+1> = " + "(" * 10_000 + "x_n" + ")" * 10_000
    expect_source_error(text, 1, MAX_LINE_CHARS + 1, "line too long")


def test_deep_parentheses_within_the_line_limit():
    text = "x_<n+1> = " + "(" * (MAX_NESTING + 1) + "x_n" + ")" * (MAX_NESTING + 1)
    expect_source_error(text, 1, 11 + MAX_NESTING, "parentheses nested too deeply")
    # the limit itself is fine
    parse("x_<n+1> = " + "(" * MAX_NESTING + "x_n" + ")" * MAX_NESTING)


def test_deep_parentheses_across_continued_lines():
    text = "x_<n+1> = \\\n" + "(\\\n" * 200 + "x_n" + ")" * 200
    expect_source_error(text, 2 + MAX_NESTING, 1, "parentheses nested too deeply")


def test_deep_parentheses_on_separate_statements_are_independent():
    line = "(" * 40 + "x_n" + ")" * 40
    assert parse(f"v_<n+1> = {line}\nx_<n+1> = {line} + v_<n+1>").states == ("v", "x")


@pytest.mark.parametrize(
    "text",
    [
        "x_<n+1> = x_n + " + "-" * 3000 + "x_n",
        "x_<n+1> = x_n" + "^1" * 1000,
        "x_<n+1> = x_n + " + "F(" * 60 + "-" * 10 + "x_n" + ")" * 60,
        "x_<n+1> = x_n + " + "relu(-" * 60 + "x_n" + ")" * 60,
    ],
    ids=["unary-chain", "power-chain", "blocks-and-signs", "functions-and-signs"],
)
def test_deep_operator_nesting(text):
    start = time.perf_counter()
    with pytest.raises(SourceError) as info:
        parse(text, "bad.rec")
    assert "nested too deeply" in info.value.message
    assert f"more than {MAX_EXPRESSION_DEPTH}" in info.value.message
    assert time.perf_counter() - start < 1.0


def test_long_flat_sums_are_not_too_deep():
    text = "x_<n+1> = x_n + " + " + ".join(["F(x_n)"] * 400)
    assert parse(text).equations


def test_file_too_large():
    text = ("# " + "x" * 998 + "\n") * 1001 + "x_<n+1> = x_n\n"
    with pytest.raises(SourceError) as info:
        parse(text.encode(), "big.rec")
    assert "file too large" in info.value.message


# -- accepted look-alikes (so that the errors above are not over-eager) -----------------------


@pytest.mark.parametrize(
    "text",
    [
        "x_<n+1> = x_n + F(x_n)\r\n",  # Windows line endings
        "\ufeffx_<n+1> = x_n + F(x_n)\n",  # byte-order mark
        "x_<n+1> =\tx_n +\tF(x_n)",  # tabs
        "x_<n+1> = x_n + F(x_n)  # comment with é, ∑ and $[",
        "x_<n+1> = x_n + \\\n  F(x_n)",  # continued line
        "x_<n+1> = x_n + F(x_n)\n\n\n",
        "x_<n+1> = x_n + F(x_n);",
    ],
    ids=["crlf", "bom", "tabs", "comment-characters", "continuation", "blank-lines", "semicolon"],
)
def test_accepted_look_alikes(text):
    assert parse(text).equations


def test_bom_and_crlf_bytes_are_accepted():
    assert parse(b"\xef\xbb\xbfa = 0.5\r\nx_<n+1> = x_n + a*F(x_n)\r\n").constants


# -- the command line ---------------------------------------------------------------------------


def _write_case(directory: Path, case) -> Path:
    name, text = case[0], case[1]
    path = directory / f"{name}.rec"
    path.write_bytes(text.encode("utf-8"))
    return path


def _cli_main():
    from formulac import cli

    return cli.main


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_check_command_reports_bad_input(case, tmp_path, capsys):
    main = _cli_main()
    path = _write_case(tmp_path, case)
    status = main(["check", str(path)])
    _out, err = capsys.readouterr()
    assert status == 2
    _, _text, line, column, fragment = case
    first = err.split("\n")[0]
    assert first.startswith(f"{path}:{line}:{column}: error: ") and fragment in first, err
    _check_format(err, str(path), line, column, first.split(" error: ", 1)[1])


def test_check_command_in_a_subprocess(tmp_path):
    """One real run of ``python -m formulac check`` over every bad file: status 2, no traceback."""
    _cli_main()
    paths = [_write_case(tmp_path, case) for case in CASES]
    binary = tmp_path / "binary.rec"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    long_line = tmp_path / "long.rec"
    long_line.write_text("x_<n+1> = x_n + " + "1+" * 50_000 + "F(x_n)\n")
    paths += [binary, long_line]
    env = dict(os.environ, PYTHONIOENCODING="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "formulac", "check", *map(str, paths)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
        env=env,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    for case, path in zip(CASES, paths):
        _, _, line, column, _fragment = case
        assert f"{path}:{line}:{column}: error: " in proc.stderr, case[0]
    assert f"{binary}:1:1: error: not UTF-8" in proc.stderr
    assert f"{long_line}:1:{MAX_LINE_CHARS + 1}: error: line too long" in proc.stderr
    headers = [ln for ln in proc.stderr.splitlines() if ": error: " in ln]
    assert len(headers) == len(paths)


def test_check_command_on_a_missing_file(tmp_path, capsys):
    main = _cli_main()
    status = main(["check", str(tmp_path / "missing.rec")])
    _, err = capsys.readouterr()
    assert status == 2
    assert "Traceback" not in err and "missing.rec" in err
