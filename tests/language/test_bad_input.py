"""Malformed formula files: each one is a SourceError at the right line and column.

The table below holds (id, text, line, column, message fragment). Every case is checked three
ways: ``parse`` raises :class:`SourceError` at that place with that message; the formatted
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

from formulac.errors import FormulacError, SourceError
from formulac.limits import MAX_EXPRESSION_DEPTH, MAX_LINE_CHARS, MAX_NESTING
from formulac.parse import parse

CASES = [
    # -- syntax ---------------------------------------------------------------------------
    (
        "operator-without-operand",
        "x_<n+1> = x_n + F(x_n)\ny_<n+1> = y_n +* 2",
        2,
        16,
        "unexpected '*'; expected an expression",
    ),
    ("missing-operator", "x_<n+1> = x_n + F(x_n) G(x_n)", 1, 24, "expected an operator"),
    ("missing-equals", "x_<n+1> x_n", 1, 9, "expected '='"),
    ("statement-starts-with-equals", "= x_n", 1, 1, "unexpected '='; expected a statement"),
    ("empty-right-side", "x_<n+1> = ", 1, 11, "unexpected end of line; expected an expression"),
    ("line-starts-with-operator", "x_<n+1> = x_n + F(x_n)  # ok\n  + 1", 2, 3, "end it with a backslash"),
    ("two-dots-in-number", "x_<n+1> = x_n + 1.2.3", 1, 20, "unexpected '.3'"),
    ("stray-dollar", "x_<n+1> = x_n + F(x_n) $", 1, 24, "unexpected character '$'"),
    ("stray-bracket", "x_<n+1> = x_n + F(x_n)[0]", 1, 23, "write indices as x_n"),
    ("unterminated-parenthesis", "x_<n+1> = (x_n + F(x_n)\na = 1", 1, 24, "expected ')'"),
    ("extra-parenthesis", "x_<n+1> = x_n + F(x_n))", 1, 23, "unexpected ')'; expected end of line"),
    ("dunder-name", "__class__ = 1\nx_<n+1> = x_n", 1, 1, "names cannot start with '_'"),
    # -- functions and blocks -------------------------------------------------------------------
    ("unknown-function", "x_<n+1> = x_n + foo(x_n)", 1, 17, "unknown function 'foo'"),
    ("misspelt-function", "x_<n+1> = x_n + sigmoyd(F(x_n))", 1, 17, "did you mean 'sigmoid'?"),
    ("function-two-arguments", "x_<n+1> = x_n + relu(x_n, x_n)", 1, 17, "relu takes exactly one argument"),
    ("block-without-argument", "x_<n+1> = x_n + F", 1, 17, "block F must be applied to an argument"),
    ("block-empty-parentheses", "x_<n+1> = x_n + F()", 1, 19, "unexpected ')'; expected an expression"),
    ("block-two-arguments", "x_<n+1> = x_n + F(x_n, x_<n-1>)", 1, 17, "block F takes exactly one argument"),
    ("block-of-a-number", "x_<n+1> = x_n + G(2)", 1, 19, "block G must be applied to states"),
    (
        "block-with-absolute-step",
        "x_<n+1> = x_n + F_0(x_n)",
        1,
        17,
        "only a block may be written with its step",
    ),
    ("constant-called", "a = 1\nx_<n+1> = x_n + a(x_n)", 2, 17, "a is a constant, not a function"),
    # -- causality and references ------------------------------------------------------------
    ("future-reference", "a = 0.5\nx_<n+1> = x_n + a*x_<n+2>", 2, 19, "reference to the future: x_<n+2>"),
    (
        "future-of-other-state",
        "v_<n+1> = v_n + F(x_n)\nx_<n+1> = x_n + v_<n+2>",
        2,
        17,
        "reference to the future: v_<n+2>",
    ),
    ("self-reference", "x_<n+1> = x_<n+1> + F(x_n)", 1, 11, "refers to the state this equation defines"),
    (
        "self-reference-in-block",
        "x_<n+1> = x_n + F(x_<n+1>)",
        1,
        19,
        "refers to the state this equation defines",
    ),
    (
        "same-step-cycle",
        "x_<n+1> = v_<n+1> + F(x_n)\nv_<n+1> = v_n + x_<n+1>",
        1,
        1,
        "cycle: x_<n+1> -> v_<n+1> -> x_<n+1>",
    ),
    (
        "three-state-cycle",
        "a_<n+1> = b_<n+1>\nb_<n+1> = c_<n+1>\nc_<n+1> = a_<n+1> + F(a_n)\noutput a",
        1,
        1,
        "cycle: a_<n+1> -> b_<n+1>",
    ),
    ("undefined-state", "x_<n+1> = x_n + F(z_<n-1>)", 1, 19, "undefined state 'z'"),
    ("misspelt-constant", "alpha = 0.5\nx_<n+1> = x_n + alpah*F(x_n)", 2, 17, "did you mean 'alpha'"),
    ("state-without-index", "x_<n+1> = x + F(x_n)", 1, 11, "state x needs an index"),
    ("too-far-back", "x_<n+1> = x_n + F(x_<n-65>)", 1, 19, "reaches too far back"),
    ("absolute-index-in-equation", "x_<n+1> = x_0 + x_<5>", 1, 17, "is absolute"),
    # -- indices --------------------------------------------------------------------------
    ("index-missing-offset", "x_<n+> = x_n + F(x_n)", 1, 1, "cannot read the index of x_<n+>"),
    ("index-other-letter-on-left", "x_<m+1> = x_n + F(x_n)", 1, 1, "an equation defines the next state"),
    ("index-other-letter-on-right", "x_<n+1> = x_<m> + F(x_n)", 1, 11, "unknown index 'm'"),
    ("index-double-sign", "x_<n+1> = x_<n--1> + F(x_n)", 1, 11, "cannot read the index of x_<n--1>"),
    ("index-negative-n", "x_<n+1> = x_<-n> + F(x_n)", 1, 11, "cannot read the index of x_<-n>"),
    ("capitalised-state", "Y_<n+1> = Y_n + F(Y_n)", 1, 1, "capitalised names are blocks"),
    # -- declarations -----------------------------------------------------------------------
    (
        "duplicate-equation",
        "x_<n+1> = x_n + F(x_n)\n\n# again\nx_{n+1} = x_n",
        4,
        1,
        "duplicate equation for x (first defined on line 1)",
    ),
    (
        "duplicate-declaration",
        "symbol a\nparam a = 1\nx_<n+1> = x_n + a*F(x_n)",
        2,
        7,
        "already declared as a symbol on line 1",
    ),
    (
        "duplicate-constant",
        "a = 1\na = 2\nx_<n+1> = x_n + a*F(x_n)",
        2,
        1,
        "already declared as a constant on line 1",
    ),
    ("constant-cycle", "a = b\nb = a\nx_<n+1> = x_n + a*F(x_n)", 1, 1, "defined through itself: a -> b -> a"),
    ("python-keyword", "lambda = 1\nx_<n+1> = x_n", 1, 1, "'lambda' is a Python keyword"),
    ("python-builtin", "print = 2\nx_<n+1> = x_n", 1, 1, "'print' is a Python builtin"),
    ("reserved-word", "sum = 3\nx_<n+1> = x_n", 1, 1, "'sum' is a reserved word"),
    ("reserved-function-name", "relu = 1\nx_<n+1> = x_n", 1, 1, "'relu' is a reserved word"),
    (
        "keyword-as-symbol",
        "symbol a, lambda\nx_<n+1> = x_n + a*F(x_n)",
        1,
        11,
        "'lambda' is a Python keyword",
    ),
    ("reserved-per-step-param", "x_<n+1> = x_n\n\nparam sum_n = 1", 3, 7, "'sum' is a reserved word"),
    ("n-as-symbol", "symbol n\nx_<n+1> = x_n", 1, 8, "'n' is a reserved word"),
    (
        "param-symbolic-init",
        "symbol b\nparam k = b\nx_<n+1> = k*x_n",
        2,
        11,
        "the initial value of parameter k must be a number",
    ),
    ("param-state-init", "param k = x_n\nx_<n+1> = k*x_n", 1, 11, "only equations can"),
    ("param-undefined-init", "param k = abc\nx_<n+1> = k*x_n", 1, 11, "undefined symbol 'abc'"),
    (
        "per-step-param-bad-index",
        "param k_<n+1> = 1\nx_<n+1> = x_n",
        1,
        7,
        "a per-step parameter is declared as k_n",
    ),
    (
        "per-step-param-without-index",
        "x_<n+1> = x_n + k*F(x_n)\nparam k_n = 1",
        1,
        17,
        "per-step parameter: write k_n",
    ),
    ("shared-param-with-index", "x_<n+1> = x_n + k_n*F(x_n)\nparam k = 1", 1, 17, "write k, not k_n"),
    ("constant-with-index", "x_<n+1> = x_n + a_n*F(x_n)\na = 2", 1, 17, "a is a constant, not a state"),
    ("output-not-a-state", "a = 1\noutput a\nx_<n+1> = x_n + F(x_n)", 2, 8, "output a is not a state"),
    ("output-undefined", "output y\nx_<n+1> = x_n + F(x_n)", 1, 8, "output y is not a state"),
    ("output-twice", "x_<n+1> = x_n + F(x_n)\noutput x\noutput x", 3, 8, "already declared on line 2"),
    ("several-states-no-output", "u_<n+1> = u_n + F(w_n)\nw_<n+1> = w_n + G(u_n)", 1, 1, "name the output"),
    (
        "shared-lowercase",
        "shared f\nx_<n+1> = x_n + F(x_n)",
        1,
        8,
        "only blocks (capitalised names) can be shared",
    ),
    ("shared-unused", "shared G\nx_<n+1> = x_n + F(x_n)", 1, 8, "shared block G is not used"),
    # -- initial conditions ---------------------------------------------------------------------
    (
        "initial-unknown-state",
        "x_<n+1> = x_n + F(x_n)\nz_0 = 1",
        2,
        1,
        "initial condition for z, which no equation defines",
    ),
    ("initial-sets-input", "x_<n+1> = x_n + F(x_n)\nx_0 = 1", 2, 1, "x_0 is the network's input"),
    ("initial-after-start", "x_<n+1> = x_n + F(x_n)\nx_3 = 1", 2, 1, "sets a state after the start"),
    (
        "initial-reads-n",
        "x_<n+1> = x_n + x_<n-1>\nx_<-1> = n",
        2,
        10,
        "n has no value in an initial condition",
    ),
    ("initial-twice", "x_<n+1> = x_n + x_<n-1>\nx_<-1> = 0\nx_{-1} = 1", 3, 1, "duplicate initial condition"),
    # -- numbers ------------------------------------------------------------------------------
    ("division-by-zero", "x_<n+1> = x_n + 1/0*F(x_n)", 1, 19, "division by zero"),
    ("division-by-zero-at-step", "x_<n+1> = x_n + 1/n*F(x_n)", 1, 19, "division by zero at step n = 0"),
    ("division-by-zero-later", "x_<n+1> = x_n + F(x_n)/(n^2-4)", 1, 24, "division by zero at step n = 2"),
    ("division-by-zero-in-constant", "a = 1/(2-2)\nx_<n+1> = x_n + a*F(x_n)", 1, 7, "division by zero"),
    ("huge-literal", "x_<n+1> = x_n + 1e999999*F(x_n)", 1, 17, "number out of range: 1e999999"),
    ("huge-exponent", "x_<n+1> = x_n^1000000", 1, 15, "exponent too large"),
    ("power-tower", "x_<n+1> = x_n + ((2^64)^64)^64 * F(x_n)", 1, 18, "number out of range"),
    ("exp-tower", "x_<n+1> = x_n + exp(exp(exp(exp(100))))*F(x_n)", 1, 29, "exp of a number beyond"),
    ("log-of-zero", "x_<n+1> = x_n + log(0)*F(x_n)", 1, 21, "log(0) is undefined"),
    ("sqrt-of-negative", "x_<n+1> = x_n + sqrt(-2)*F(x_n)", 1, 22, "not a real number"),
    ("negative-fractional-power", "x_<n+1> = x_n + (-8)^(1/3)*F(x_n)", 1, 17, "not a real number"),
    # -- sums and concatenation ------------------------------------------------------------------
    ("sum-without-range", "x_<n+1> = x_n + sum(x_n)", 1, 17, "sum takes a range first"),
    ("sum-range-into-future", "x_<n+1> = x_n + sum(i=0..n+1, x_i)", 1, 26, "cannot reach beyond step n"),
    (
        "sum-body-into-future",
        "x_<n+1> = x_n + sum(i=0..n, x_<i+1>)",
        1,
        29,
        "reference to the future: x_<i+1>",
    ),
    ("sum-absolute-upper-limit", "x_<n+1> = x_n + sum(i=0..3, x_i)", 1, 26, "upper limit is n"),
    ("sum-runs-backwards", "x_<n+1> = x_n + sum(i=2..n, x_i)", 1, 23, "runs backwards"),
    ("sum-variable-n", "x_<n+1> = x_n + sum(n=0..n, x_n)", 1, 21, "already a name"),
    ("sum-nested", "x_<n+1> = x_n + sum(i=0..n, sum(j=0..n, x_j))", 1, 33, "a sum inside another sum"),
    ("cat-one-argument", "x_<n+1> = x_n + cat(x_n)", 1, 17, "cat concatenates two or more"),
    ("function-as-value", "x_<n+1> = x_n + 2*cat", 1, 19, "cat is a function"),
    # -- characters, whitespace, encodings --------------------------------------------------------
    ("tabs-error-position", "\tx_<n+1> =\tx_n +\tG(x_n)\t+ foo(x_n)", 1, 27, "unknown function 'foo'"),
    ("windows-line-endings-error", "x_<n+1> = x_n + F(x_n)\r\nx_<n+1> = x_n\r\n", 2, 1, "duplicate equation"),
    ("bom-error-position", "\ufeffx_<n+1> = x_n + q(x_n)", 1, 17, "unknown function 'q'"),
    ("lone-carriage-return", "x_<n+1> = x_n\r+ F(x_n)", 1, 14, "carriage return"),
    ("no-break-space", "x_<n+1> = x_n + \xa0F(x_n)", 1, 17, "no-break space"),
    ("line-separator", "a = 1\u2028\nx_<n+1> = x_n + b", 1, 6, "line separator"),
    ("form-feed-keeps-lines", "a = 1\x0c\nx_<n+1> = x_n + b(x_n)", 2, 17, "unknown function 'b'"),
    ("non-ascii-name", "x_<n+1> = x_n + é", 1, 17, "unexpected character 'é'"),
    ("nul-character", "x_<n+1> = x_n\x00 + F(x_n)", 1, 14, "control character U+0000"),
    # -- line continuations ------------------------------------------------------------------------
    ("continuation-at-end-of-file", "x_<n+1> = x_n + \\", 1, 17, "but the file ends there"),
    ("continuation-before-final-newline", "x_<n+1> = x_n + \\\n", 1, 17, "but the file ends there"),
    ("continuation-into-blank-line", "x_<n+1> = x_n + \\\n\nF(x_n)", 1, 17, "but line 2 is blank"),
    ("continuation-into-comment", "x_<n+1> = x_n + \\\n  # F(x_n)\n", 1, 17, "line 2 holds only a comment"),
    # -- search domains of free symbols ---------------------------------------------------------
    ("domain-reversed", "symbol a in [1, -1]\nx_<n+1> = a*x_n + F(x_n)", 1, 13, "empty interval [1, -1]"),
    ("domain-single-point", "symbol a in [1/2, 0.5]\nx_<n+1> = a*x_n + F(x_n)", 1, 13, "empty interval"),
    (
        "domain-log-from-zero",
        "symbol w in [0, 1] log\nx_<n+1> = w*x_n + F(x_n)",
        1,
        14,
        "a log interval needs",
    ),
    ("domain-log-negative", "symbol w in [-1, 1] log\nx_<n+1> = w*x_n + F(x_n)", 1, 14, "numbers above 0"),
    (
        "domain-duplicate-choice",
        "symbol k in {0.25, 0.5, 1/2}\nx_<n+1> = k*x_n + F(x_n)",
        1,
        25,
        "duplicate choice 1/2",
    ),
    (
        "domain-on-constant",
        "a = 1\nsymbol a in [0, 1]\nx_<n+1> = a*x_n + F(x_n)",
        2,
        8,
        "only a free symbol can have a domain",
    ),
    (
        "domain-then-parameter",
        "symbol k in [0, 1]\nparam k = 1\nx_<n+1> = k*x_n + F(x_n)",
        2,
        7,
        "only a free symbol can have a domain",
    ),
    (
        "domain-bound-is-a-symbol",
        "symbol b\nsymbol a in [0, b]\nx_<n+1> = a*b*x_n + F(x_n)",
        2,
        17,
        "bounds and choices are real numbers",
    ),
    (
        "domain-bound-is-a-state",
        "symbol a in [0, x_n]\nx_<n+1> = a*x_n + F(x_n)",
        1,
        17,
        "only equations can",
    ),
    ("domain-in-parentheses", "symbol a in (0, 1)\nx_<n+1> = a*x_n + F(x_n)", 1, 13, "expected '[' or '{'"),
    ("domain-empty-set", "symbol a in {}\nx_<n+1> = a*x_n + F(x_n)", 1, 14, "expected an expression"),
    ("domain-three-bounds", "symbol a in [0, 1, 2]\nx_<n+1> = a*x_n + F(x_n)", 1, 18, "expected ']'"),
    ("domain-log-on-choices", "symbol a in {1, 2} log\nx_<n+1> = a*x_n + F(x_n)", 1, 20, "unexpected 'log'"),
    (
        "domain-bound-not-real",
        "symbol a in [0, sqrt(-1)]\nx_<n+1> = a*x_n + F(x_n)",
        1,
        22,
        "not a real number",
    ),
    # -- the output state and its input -----------------------------------------------------------
    ("input-of-only-state-set", "y_<n+1> = y_n + F(y_n)\ny_0 = 1", 2, 1, "y_0 is the network's input"),
    ("initial-reads-other-state", "y_<n+1> = y_n + F(y_n)\ny_<-1> = 2*z_0", 2, 12, "undefined state 'z'"),
    # -- values once constants are written out ---------------------------------------------------
    ("division-by-zero-through-constant", "a = 1 - 1\nx_<n+1> = x_n/a + F(x_n)", 2, 15, "division by zero"),
    ("negative-root-through-constant", "a = -4\nx_<n+1> = a^(1/2)*x_n + F(x_n)", 2, 11, "not a real number"),
    (
        "constant-power-doubling",
        "".join(f"c{i} = c{i + 1}*c{i + 1}\n" for i in range(10)) + "c10 = b\nx_<n+1> = c0*x_n + F(x_n)",
        4,
        6,
        "constant c3 has a power beyond 64",
    ),
    (
        "constant-number-doubling",
        "".join(f"c{i} = c{i + 1}^2\n" for i in range(14)) + "c14 = 3\nx_<n+1> = x_n + F(x_n)/c0",
        4,
        6,
        "number out of range",
    ),
    # -- names that look like typos of declared ones ---------------------------------------------
    (
        "misspelt-parameter",
        "param gamma = 0.9\nx_<n+1> = gamma*x_n + (1 - gama)*F(x_n)",
        2,
        28,
        "did you mean 'gamma' (the parameter declared on line 1)",
    ),
    ("misspelt-function-as-coefficient", "x_<n+1> = x_n + sigmoyd*F(x_n)", 1, 17, "did you mean 'sigmoid'"),
    # -- empty files ------------------------------------------------------------------------------
    ("empty-file", "", 1, 1, "no equation"),
    ("only-comments", "# only a comment\n# another\n", 1, 1, "no equation"),
    ("only-declarations", "a = 1\nparam k = 2", 1, 1, "no equation"),
]

IDS = [c[0] for c in CASES]


def test_there_are_enough_cases():
    assert len(CASES) >= 30
    assert len(set(IDS)) == len(IDS)


def _expect_error(data, line: int, column: int, fragment: str, path: str = "bad.rec") -> SourceError:
    with pytest.raises(SourceError) as info:
        parse(data, path)
    err = info.value
    assert fragment in err.message, err.format()
    assert (err.location.line, err.location.column) == (line, column), err.format()
    return err


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
    err = _expect_error(text, line, column, fragment)
    _check_format(err.format(), "bad.rec", line, column, err.message)
    source_line = text.lstrip("\ufeff").split("\n")[line - 1].rstrip("\r")
    if text and source_line.replace("\t", "").isprintable():  # the line is shown as written (tabs as spaces)
        assert err.format().split("\n")[1] == "    " + source_line.replace("\t", " ")


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_bad_input_as_utf8_bytes(case):
    """The same files read as bytes (what ``load`` does) give the same errors."""
    _, text, line, column, fragment = case
    _expect_error(text.encode("utf-8"), line, column, fragment)


# -- binary garbage, huge and deep inputs -----------------------------------------------------


def test_nul_bytes():
    _expect_error(b"x_<n+1> = x_n\x00 + F(x_n)", 1, 14, "control character U+0000")


def test_invalid_utf8():
    err = _expect_error(b"a = 1\nx_<n+1> = x_n + \xff F(x_n)", 2, 17, "not UTF-8 text (byte 0xff)")
    _check_format(err.format(), "bad.rec", 2, 17, err.message)


def test_binary_file():
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10"
    _expect_error(png, 1, 1, "not UTF-8")
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
    err = _expect_error(text, 1, MAX_LINE_CHARS + 1, "line too long")
    assert time.perf_counter() - start < 1.0
    shown = err.format().split("\n")[1]
    assert len(shown) < 200, "the source line is cut to a window"
    _check_format(err.format(), "bad.rec", 1, MAX_LINE_CHARS + 1, err.message)


def test_very_long_line_after_good_lines():
    text = "a = 1\n# fine\nx_<n+1> = x_n + a*F(x_n)\n# " + "x" * 100_000
    _expect_error(text, 4, MAX_LINE_CHARS + 1, "line too long")


def test_ten_thousand_parentheses():
    text = "x_<n+1> = " + "(" * 10_000 + "x_n" + ")" * 10_000
    _expect_error(text, 1, MAX_LINE_CHARS + 1, "line too long")


def test_deep_parentheses_within_the_line_limit():
    text = "x_<n+1> = " + "(" * (MAX_NESTING + 1) + "x_n" + ")" * (MAX_NESTING + 1)
    _expect_error(text, 1, 11 + MAX_NESTING, "parentheses nested too deeply")
    # the limit itself is fine
    parse("x_<n+1> = " + "(" * MAX_NESTING + "x_n" + ")" * MAX_NESTING)


def test_deep_parentheses_across_continued_lines():
    text = "x_<n+1> = \\\n" + "(\\\n" * 200 + "x_n" + ")" * 200
    _expect_error(text, 2 + MAX_NESTING, 1, "parentheses nested too deeply")


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
