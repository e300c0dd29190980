"""Values as text: the JSON contract's numbers and strings, terminal cells, polynomials.

The one rule of ``analyze --json`` (docs/cli.md): a fully numeric real value is a JSON number
(integers exact up to :data:`~formulac.limits.MAX_JSON_DIGITS` digits, longer ones as decimal
strings; other values as the nearest double); anything else (symbolic, complex) is a string in
SymPy syntax, with per-step parameters written ``k_3`` and the variable of characteristic
polynomials written ``λ``. This module imports nothing else of the analysis.
"""

from __future__ import annotations

import math

import sympy
from sympy.core.evalf import PrecisionExhausted
from sympy.printing.str import StrPrinter

from ..ir import RecPrinter, StateRef, decimal_text, rec_expr, references, written_out
from ..limits import MAX_JSON_DIGITS

__all__ = [
    "LAMBDA",
    "stream_parameters_text",
    "descending",
    "sympy_text",
    "polynomial_text",
    "polynomial_show",
    "json_value",
    "certain_value",
    "json_number",
    "json_integer",
    "decimal_text",
    "poly_text",
    "show",
    "name_ranges",
    "table",
    "TEXT_WIDTH",
]

#: The variable of characteristic polynomials (printed ``λ``).
LAMBDA = sympy.Symbol("lambda")

TEXT_WIDTH = 24  # longer exact values are shown rounded in terminal tables


def descending(poly: sympy.Expr) -> sympy.Expr:
    """``poly`` as an unevaluated sum in descending powers of λ, for printing with order="none"."""
    P = sympy.Poly(poly, LAMBDA)
    terms = []
    for (k,), c in P.terms():
        power = LAMBDA**k if k else sympy.Integer(1)
        if k == 0:
            terms.append(c)
        elif c == 1:
            terms.append(power)
        elif c == -1:
            terms.append(sympy.Mul(-1, power, evaluate=False))
        elif c.could_extract_minus_sign() and not c.is_Number:
            terms.append(sympy.Mul(-1, -c, power, evaluate=False))
        else:
            terms.append(sympy.Mul(c, power, evaluate=False))
    if not terms:
        return sympy.Integer(0)
    return terms[0] if len(terms) == 1 else sympy.Add(*terms, evaluate=False)


class _SympyTextPrinter(StrPrinter):
    """SymPy syntax, with ``k[3]`` written ``k_3`` and ``lambda`` written ``λ``."""

    printmethod = "_formulac_sympy_text"  # not `_sympystr`, which Indexed defines as k[3]

    def _print_Indexed(self, expr):
        ref = StateRef.of(expr)
        return f"{ref.name}_{self._print(ref.index)}"

    def _print_BlockCall(self, expr):
        return f"{expr.block}_{self._print(expr.step)}({self._print(expr.argument)})"

    def _print_Symbol(self, expr):
        return "λ" if expr.name == "lambda" else super()._print_Symbol(expr)

    def _print_Integer(self, expr):
        return decimal_text(int(expr.p))

    def _print_Rational(self, expr):
        return f"{decimal_text(int(expr.p))}/{decimal_text(int(expr.q))}"


def sympy_text(e) -> str:
    return _SympyTextPrinter().doprint(e)


def polynomial_text(poly) -> str:
    """A characteristic polynomial in SymPy syntax, descending powers of λ."""
    return _SympyTextPrinter({"order": "none"}).doprint(descending(poly))


def polynomial_show(poly) -> str:
    """A characteristic polynomial in ``.rec`` syntax, descending powers of λ."""
    return rec_expr(descending(poly)).replace("lambda", "λ")


#: Working digits that :func:`certain_value` may use (a formula's numbers have at most
#: MAX_NUMBER_BITS bits, about 600 digits; a root's cancellation a few times that).
MAX_EVALF_DIGITS = 10_000


def certain_value(e: sympy.Expr, digits: int = 30) -> sympy.Expr:
    """``e`` to ``digits`` digits that are right however much its terms cancel
    (``1/2 - sqrt(1 + 4e-300)/2`` is -1e-300, not the 5e-166 a plain ``evalf`` gives);
    SymPy's error-tracked ``evalf(strict=True)``, else the plain one."""
    try:
        return e.evalf(digits, strict=True, maxn=MAX_EVALF_DIGITS)
    except (PrecisionExhausted, TypeError, ValueError):
        return e.evalf(digits)


def json_value(e):
    """One value in the JSON contract: a number when numeric and real, else a SymPy string."""
    if e is None or isinstance(e, bool):
        return e
    if isinstance(e, int):
        return json_integer(e)
    if isinstance(e, float):
        return e if math.isfinite(e) else str(e)
    e = sympy.sympify(e)
    if e.is_number:
        e = written_out(e)  # relu(2) -> 2: exact where the definition allows
    if e.is_Integer:
        return json_integer(int(e))
    if e.is_Rational or e.is_Float:
        f = float(e)
        return f if math.isfinite(f) else sympy_text(e)
    if e.is_number:
        try:
            c = complex(certain_value(e))
        except (TypeError, ValueError):
            return sympy_text(e)
        if c.imag == 0 and math.isfinite(c.real):
            return c.real
        return sympy_text(e)
    return sympy_text(e)


def show(e) -> str:
    """A value for terminal tables: exact ``.rec`` syntax when short, else rounded (``≈``)."""
    if e is None:
        return "-"
    if isinstance(e, bool):
        return "yes" if e else "no"
    e = sympy.sympify(e)
    if not e.is_number:
        terms = len(sympy.Add.make_args(e))
        if terms > 8 or sympy.count_ops(e) > 60:
            names = name_ranges({_SympyTextPrinter().doprint(a) for a in _symbols(e)})
            return f"<{terms} terms in {names}>"
    if e.is_Rational and max(abs(e.p), e.q).bit_length() > 80:  # more digits than a cell shows
        return "≈" + _rounded(e)
    text = _PRETTY.doprint(e).replace("lambda", "λ")
    if len(text) <= TEXT_WIDTH or not e.is_number:
        return text
    try:
        c = complex(e.evalf(15))
    except (TypeError, ValueError):
        return text
    if c.imag == 0:
        return f"≈{c.real:.6g}"
    return f"≈{c.real:.6g}{c.imag:+.6g}i"


def _rounded(e: sympy.Rational) -> str:
    """Six significant digits at any size (a float overflows beyond 1e308)."""
    mantissa, _, exponent = str(sympy.N(e, 6)).partition("e")
    return f"{float(mantissa):.6g}" + (f"e{int(exponent):+d}" if exponent else "")


def name_ranges(names) -> str:
    """``k_1, k_2, ..., k_9, a`` -> ``a, k_1..k_9``."""
    plain, steps = set(), {}
    for name in names:
        base, _, idx = name.rpartition("_")
        if base and idx.isdigit():
            steps.setdefault(base, []).append(int(idx))
        else:
            plain.add(name)
    parts = sorted(plain)
    for base, idx in sorted(steps.items()):
        idx.sort()
        parts.append(f"{base}_{idx[0]}" if len(idx) == 1 else f"{base}_{idx[0]}..{base}_{idx[-1]}")
    return ", ".join(parts)


def _symbols(e):
    refs = {ref.indexed for ref in references(e)}
    names = {ref.name for ref in references(e)}
    return refs | {a for a in e.atoms(sympy.Symbol) if a.name not in names}


_PRETTY = RecPrinter()  # .rec syntax with SymPy's usual term order (polynomials by degree)


def table(headers: list[str], rows: list[list[str]], indent: str = "  ") -> list[str]:
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    numeric = [all(r[i].lstrip("-").isdigit() for r in rows) for i in range(len(headers))]

    def fmt(cells):
        return (
            indent
            + "  ".join(
                c.rjust(w) if numeric[i] else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))
            ).rstrip()
        )

    return [fmt(headers)] + [fmt(r) for r in rows]


def json_number(c: sympy.Rational):
    """A rational as a JSON number: an int when whole, else the nearest double (string if huge)."""
    if c.is_Integer:
        return json_integer(int(c))
    try:
        return int(c.p) / int(c.q)
    except OverflowError:
        return f"{decimal_text(int(c.p))}/{decimal_text(int(c.q))}"


def json_integer(value: int):
    """An exact integer as a JSON number, or as its decimal string beyond :data:`MAX_JSON_DIGITS`
    digits (standard JSON readers refuse or round longer numbers)."""
    if abs(value).bit_length() <= _MAX_JSON_BITS or len(decimal_text(value)) <= MAX_JSON_DIGITS:
        return value
    return decimal_text(value)


_MAX_JSON_BITS = int(MAX_JSON_DIGITS * math.log2(10))  # below this many bits, surely short enough


def poly_text(p, names: list[str]) -> str:
    """A sparse polynomial in SymPy syntax, fast (SymPy's printer is slow for many generators)."""
    if not p:
        return "0"
    out = []
    for monom, coeff in p.terms():
        c = sympy.Rational(int(getattr(coeff, "numerator", coeff)), int(getattr(coeff, "denominator", 1)))
        factors = [names[i] if e == 1 else f"{names[i]}**{e}" for i, e in enumerate(monom) if e]
        neg = c < 0
        c = -c if neg else c
        if not factors:
            body = str(c)
        elif c == 1:
            body = "*".join(factors)
        else:
            body = f"{c}*" + "*".join(factors)
        if out:
            out.append(" - " if neg else " + ")
        elif neg:
            out.append("-")
        out.append(body)
    return "".join(out)


def stream_parameters_text(rec, names=None) -> str | None:
    """A stream formula's parameters as declared (``res_n[4,4] = identity, post_n[4] = 1``), not
    entry by entry as its lowered form holds them; None for a formula without streams.
    ``names``: only the parameters with one of these lowered entries (or names)."""
    if rec.compact is None:
        return None
    wanted = {
        p.entry[0] if p.entry is not None else p.name
        for p in rec.params.values()
        if names is None or p.name in names
    }
    return ", ".join(p.declaration for p in rec.compact.params.values() if p.name in wanted)
