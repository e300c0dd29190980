"""Coefficients that follow the step (``1/relu(n-3)``, ``10^(50*n)``) and tiny or huge numbers.

A network computes every coefficient as a Python float, a literal when it is constant and an
expression in ``self.n`` otherwise. The parser (and ``bind``, for ``--set``) must refuse a
coefficient that is not a finite real double at some step up to ``CHECKED_STEPS``, or whose
finished value is infinite as the float32 the network multiplies it into, naming the step; one
that passes must be computable at every such step. The reference here is plain Python evaluation
of the formula as written (``math``, floats), step by step, as the generated code does, and
CPython's own rounding to float32 (``struct``'s "f" format).
"""

from __future__ import annotations

import math
import re
import struct

import pytest
import sympy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from formulac.cli import main
from formulac.errors import FormulacError, SourceError, UsageError
from formulac.ir import n
from formulac.limits import CHECKED_STEPS
from formulac.numbers import parse_number
from formulac.parse import parse

# (coefficient as written, in x_<n+1> = x_n + ..., the step that fails, a phrase of the message)
ISSUE_INPUTS = [
    ("1/relu(n-3)*F(x_n)", 0, "divides by zero"),
    ("F(x_n)/abs(n-2)", 2, "divides by zero"),
    ("F(x_n)/sin(n)", 0, "divides by zero"),
    ("F(x_n)/tanh(n)", 0, "divides by zero"),
    ("log(n)*F(x_n)", 0, "log(0)"),
    ("sqrt(n-3)*F(x_n)", 0, "not a real number"),
    ("(-1)^(n/2)*F(x_n)", 1, "not a real number"),
    ("10^(n*50)*F(x_n)", 1, "exceeds the largest float32"),  # 1e50: a double, not a float32
    ("10^(n*5)*F(x_n)", 8, "exceeds the largest float32"),
    ("F(x_n)/(tanh(n) - 1)", 20, "divides by zero"),  # exact: never 0; math.tanh(20) is 1.0
    ("(n-3)/(n-3)*F(x_n)", 3, "division by zero"),  # 1 exactly, but the code divides
    ("F(x_n)/(exp(-700)*exp(-700))", None, "beyond the range of a double"),
    ("1e-400*F(x_n)", None, "rounds to 0 as a double"),
]


def _fits_float32(value: float) -> bool:
    """CPython's rounding of a double to float32 (``struct``'s "f" format) is finite."""
    try:
        (single,) = struct.unpack("f", struct.pack("f", value))
    except OverflowError:  # older Pythons raise where newer ones give inf
        return False
    return math.isfinite(single)


def _first_python_failure(coefficient: str, steps: int) -> int | None:
    """The first step at which Python, evaluating the coefficient as written, fails, or its
    value does not fit a float32."""
    code = coefficient.replace("^", "**").replace("F(x_n)", "1.0")
    for name in ("sqrt", "log", "exp", "sin", "tanh"):
        code = re.sub(rf"\b{name}\(", f"math.{name}(", code)
    code = code.replace("relu(", "_relu(").replace("abs(", "_abs(")
    function = eval(f"lambda n: {code}", {"math": math, "_relu": lambda a: max(a, 0), "_abs": abs})
    for step in range(steps):
        try:
            value = function(step)
        except (ZeroDivisionError, ValueError, OverflowError):
            return step
        if not isinstance(value, (int, float)) or not math.isfinite(value) or not _fits_float32(value):
            return step
    return None


@pytest.mark.parametrize("coefficient, step, phrase", ISSUE_INPUTS, ids=[c for c, _, _ in ISSUE_INPUTS])
def test_the_issue_inputs_are_refused_at_their_step(coefficient, step, phrase, tmp_path, capsys):
    text = f"x_<n+1> = x_n + {coefficient}\n"
    with pytest.raises(SourceError) as info:
        parse(text)
    message = str(info.value)
    assert phrase in message
    if step is None:
        assert "step n =" not in message
    else:
        assert f"at step n = {step}" in message
        assert _first_python_failure(coefficient, step + 1) == step, "the reference fails there too"
    path = tmp_path / "coefficient.rec"
    path.write_text(text)
    for command in (["check"], ["analyze", "--json"], ["unroll", "--steps", "3"], ["compile"], ["info"]):
        assert main([command[0], str(path), *command[1:]]) == 2
        out, err = capsys.readouterr()
        assert err.startswith(f"{path}:1:") and ": error: " in err and "Traceback" not in err
        assert '"zoo"' not in out and '"I"' not in out


def test_coefficients_that_stay_finite_pass(capsys):
    for coefficient in ("n/(n+1)", "1/(n+1)^2", "sqrt(n)", "log(n+1)", "1.0001^n", "relu(n-3)", "1e-300"):
        rec = parse(f"x_<n+1> = x_n + {coefficient}*F(x_n)\n")
        assert _first_python_failure(f"{coefficient}*F(x_n)", 2000) is None
        assert rec.equations[0].rhs.has(sympy.Symbol("F")) or rec.blocks == ("F",)


def test_a_failure_far_along_names_the_step_and_the_checked_range():
    with pytest.raises(SourceError, match=rf"float32 .*at step n = 931 .*up to n = {CHECKED_STEPS - 1}"):
        parse("x_<n+1> = x_n + 1.1^n*F(x_n)\n")
    assert _first_python_failure("1.1^n*F(x_n)", 932) == 931


@pytest.mark.parametrize(
    ("value", "fits"),
    [
        ("3e38", True),
        ("-3e38", True),
        ("340282346638528859811704183484516925440", True),  # the largest float32
        ("4e38", False),
        ("-4e38", False),
        ("340282356779733661637539395458142568448", False),  # halfway to 2^128: rounds to inf
    ],
)
def test_constants_at_the_float32_boundary(value, fits, tmp_path, capsys):
    """3e38 is a float32, 4e38 is not; the largest float32 and the first double that rounds to
    infinity in float32 (halfway to 2^128, a tie that rounds to the even 2^128) decide the edge,
    in a file (FILE:LINE:COL) and through ``--set`` (``formulac: error:``)."""
    assert _fits_float32(float(value)) is fits  # the reference agrees with the table
    path = tmp_path / "big.rec"
    path.write_text(f"x_<n+1> = x_n + {value}*F(x_n)\n")
    assert main(["check", str(path)]) == (0 if fits else 2)
    err = capsys.readouterr().err
    if not fits:
        assert (
            err.startswith(f"{path}:1:11: error: the coefficient ") and "exceeds the largest float32" in err
        )
    free = tmp_path / "free.rec"
    free.write_text("x_<n+1> = x_n + a*F(x_n)\n")
    out = tmp_path / "m.py"
    assert main(["compile", str(free), "--set", f"a={value}", "-o", str(out)]) == (0 if fits else 2)
    err = capsys.readouterr().err
    assert out.exists() is fits
    if not fits:
        assert err.startswith("formulac: error: with a = ") and "exceeds the largest float32" in err


def test_bound_symbols_are_checked_at_every_step(tmp_path, capsys):
    rec = parse("x_<n+1> = x_n + (n - a)/(n - a)*F(x_n)\n")
    rec.bind(a=sympy.Rational(7, 2))  # never an integer step: fine
    with pytest.raises(UsageError, match=r"with a = 3, .*divides by zero at step n = 3"):
        rec.bind(a=3)
    path = tmp_path / "bound.rec"
    path.write_text("x_<n+1> = x_n + F(x_n)/(n - a)\n")
    assert main(["analyze", str(path), "--set", "a=5", "--json"]) == 2
    assert "at step n = 5" in capsys.readouterr().err
    assert main(["analyze", str(path), "--set", "a=-1", "--json"]) == 0
    capsys.readouterr()


@pytest.mark.parametrize("text", ["1e-400", "-1e-400", "1e400", "1/1e400", "1e309"])
def test_numbers_a_double_cannot_hold_are_refused(text, tmp_path, capsys):
    with pytest.raises(UsageError, match="outside the range of a double"):
        parse_number("--set a", text)
    path = tmp_path / "free.rec"
    path.write_text("x_<n+1> = x_n + a*F(x_n)\n")
    assert main(["analyze", str(path), "--set", f"a={text}"]) == 2
    assert "outside the range of a double" in capsys.readouterr().err
    with pytest.raises(UsageError, match="rounds to 0|beyond the range"):
        parse(path.read_text()).bind(a=sympy.Rational(text.replace("1/1e400", "1e-400")))


def test_the_smallest_doubles_are_kept():
    assert parse_number("--set a", "1e-300") == sympy.Rational(1, 10**300)
    assert parse_number("--set a", "4e-324") == sympy.Rational(4, 10**324)  # a subnormal, not 0


# -- generated coefficients --------------------------------------------------------------------

_FUNCTIONS = {  # language name -> Python, as the generated code computes it
    "exp": "math.exp({})",
    "log": "math.log({})",
    "sin": "math.sin({})",
    "cos": "math.cos({})",
    "tanh": "math.tanh({})",
    "abs": "abs({})",
    "relu": "max({}, 0)",
    "sqrt": "({}) ** 0.5",
}


def _leaf():
    return st.one_of(st.just(("n", "n")), st.integers(1, 9).map(lambda k: (str(k), str(k))))


def _extend(inner):
    with_n = inner.filter(lambda t: "n" in t[0])
    binary = st.tuples(inner, st.sampled_from("+-*/"), inner).map(
        lambda t: (f"({t[0][0]} {t[1]} {t[2][0]})", f"({t[0][1]} {t[1]} {t[2][1]})")
    )
    # functions and powers of step-dependent values only: the generated code folds constant
    # parts exactly (exp(2) is one correctly rounded literal), which math need not match
    function = st.tuples(st.sampled_from(sorted(_FUNCTIONS)), with_n).map(
        lambda t: (f"{t[0]}({t[1][0]})", _FUNCTIONS[t[0]].format(t[1][1]))
    )
    power = st.tuples(with_n, st.sampled_from(["2", "3", "(-1)", "(-2)", "(1/2)", "n"])).map(
        lambda t: (f"({t[0][0]})^{t[1]}", f"(({t[0][1]}) ** {t[1].replace('(1/2)', '0.5')})")
    )
    return st.one_of(binary, function, power)


COEFFICIENTS = st.recursive(_leaf(), _extend, max_leaves=6).filter(lambda t: "n" in t[0])


def _python_failure(code: str, steps: int) -> int | None:
    function = eval(f"lambda n: {code}", {"math": math})
    for step in range(steps):
        try:
            value = function(float(step))
        except (ZeroDivisionError, ValueError, OverflowError):
            return step
        if isinstance(value, complex) or not math.isfinite(value) or not _fits_float32(value):
            return step
    return None


def _exactly_undefined(rec_text: str, step: int) -> bool:
    """Is the exact (canonical) value at ``step`` undefined, not real or beyond a double?"""
    value = sympy.sympify(rec_text.replace("^", "**"), locals={"n": n, "relu": lambda a: sympy.Max(a, 0)})
    value = value.subs(n, step)
    if value.has(sympy.zoo, sympy.nan, sympy.oo, -sympy.oo, sympy.I):
        return True
    number = complex(value.evalf(30))
    return number.imag != 0 or not math.isfinite(number.real) or abs(number.real) > 1.7976931348623157e308


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(COEFFICIENTS)
def test_generated_coefficients_agree_with_python(coefficient):
    rec_text, code = coefficient
    try:
        parse(f"x_<n+1> = x_n + {rec_text}*F(x_n)\n")
    except FormulacError as exc:
        message = str(exc)
        if "exponent too large" in message or "number out of range" in message:
            return  # size limits of the language, not values
        found = re.search(r"step n = (\d+)", message)
        step = int(found.group(1)) if found else 0
        assert _python_failure(code, step + 1) == step or _exactly_undefined(rec_text, step), message
        return
    assert _python_failure(code, CHECKED_STEPS) is None, "accepted, but Python fails at some step"


@pytest.mark.parametrize(
    "function, at_zero",
    [
        ("relu", 0),
        ("sigmoid", 0.5),
        ("softplus", math.log(2)),
        ("gelu", 0),
        ("silu", 0),
        ("elu", 0),
        ("abs", 0),
    ],
)
def test_a_written_cancellation_inside_a_function_is_its_exact_value(function, at_zero):
    """``relu(2 - 2)`` is kept as written; its argument evaluated to 0.e-165, a zero of no
    precision that sympy.Max could not compare: a ValueError traceback from ``check``."""
    import formulac

    formula = formulac.parse(f"x_<n+1> = x_n - {function}(2 - 2)*x_n + F(x_n)")
    (weight,) = formula.analyze(depth=1).initial_weights.values()
    assert float(weight) == pytest.approx(1 - at_zero, abs=1e-15)
