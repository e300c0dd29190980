"""formulac/numbers.py: the numbers the CLI reads (``--set``, ``-O``, counts) are written in ASCII,
as the language's numbers are: Python's int() and float() read other scripts' digits."""

from __future__ import annotations

import argparse
import unicodedata

import pytest
import sympy
from hypothesis import given
from hypothesis import strategies as st

from formulac.errors import UsageError
from formulac.numbers import option_value, parse_number, whole_number

# decimal digits of other scripts (Arabic-Indic, Devanagari, fullwidth, ...)
FOREIGN_DIGITS = st.characters(categories=["Nd"]).filter(lambda c: not c.isascii())


@given(st.lists(FOREIGN_DIGITS, min_size=1, max_size=4), st.integers(0, 3))
def test_other_scripts_digits_are_no_numbers(digits, at):
    text = "12"[:at] + "".join(digits)
    assert int(text) >= 0  # what Python would have read
    with pytest.raises(UsageError, match="is not a number"):
        parse_number("--set a", text)
    with pytest.raises(argparse.ArgumentTypeError, match="expected"):
        whole_number(text, 1, "a whole number of at least 1")
    assert option_value(text) == text  # text, which an integer option then refuses


@given(st.integers(-(10**12), 10**12), st.integers(1, 10**6))
def test_ascii_numbers_are_read_exactly(numerator, denominator):
    assert parse_number("--set a", f"{numerator}/{denominator}") == sympy.Rational(numerator, denominator)
    assert option_value(str(numerator)) == numerator
    if numerator >= 1:
        assert whole_number(str(numerator), 1, "x") == numerator


def test_arabic_three():
    assert unicodedata.digit("٣") == 3
    with pytest.raises(UsageError):
        parse_number("--set a", "٣")
