"""Python source text as the generator writes it: docstrings, literals, and code fitted to
:data:`LINE_LENGTH` (ruff's limit in the tests of the emitted files), with runs of alike
constructor calls folded into list comprehensions. Nothing here knows about formulas."""

from __future__ import annotations

import re
import textwrap

from ..errors import UsageError

#: One level of indentation in the emitted code.
INDENT = "    "
#: The longest line the emitted code has (ruff's limit in the tests of the emitted files).
LINE_LENGTH = 110


def docstring(text: str, indent: str, one_line: bool = False) -> str:
    """A docstring at ``indent`` whose lines fit in :data:`LINE_LENGTH`: prose is wrapped, and
    long formula lines (indented by four spaces) continue with a backslash, as .rec text does."""
    width = LINE_LENGTH - len(indent)
    if one_line and "\n" not in text and len(text) + 6 <= width:
        return f'{indent}"""{_escaped(text)}"""'
    lines = []
    for line in text.splitlines():
        if line.startswith("    "):
            lines += _continued(line, width)
        else:
            lines += textwrap.wrap(line, width, break_on_hyphens=False) or [""]
    body = "\n".join((indent + _escaped(line)) if line else "" for line in lines)
    return f'{indent}"""\n{body}\n{indent}"""'


def _escaped(line: str) -> str:
    return line.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')


def _continued(line: str, width: int) -> list[str]:
    """A formula line cut after a top-level ``+`` or ``-``, each piece ending in a backslash
    (escaped in the docstring, so two characters)."""
    if len(line) <= width:
        return [line]
    indent = line[: len(line) - len(line.lstrip())]
    terms = split_terms(line.strip())
    lines, current = [], indent + terms[0]
    for term in terms[1:]:
        operator, rest = term[0], term[1:].strip()
        if len(current) + len(term) + 5 <= width:  # room for " + \\"
            current += f" {term}"
        else:
            lines.append(f"{current} {operator} \\")
            current = f"{indent}    {rest}"
    return [*lines, current]


def indented(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


def literal(value) -> str:
    """A Python literal for an option value (strings in double quotes, as ruff formats them)."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str) and value.replace("-", "").replace("_", "").isalnum() and value.isascii():
        return f'"{value}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    if isinstance(value, dict) and all(isinstance(k, str) and k.isidentifier() for k in value):
        return "{" + ", ".join(f'"{k}": {literal(v)}' for k, v in value.items()) + "}"
    raise UsageError(f"compile: option value {value!r} cannot be written into the module")


_INTEGER = re.compile(r"(?<![\w.])\d+(?![\w.])")


def alike_runs(codes: list[str]) -> list[list[str]]:
    """Consecutive codes that differ only in integers that grow by a fixed amount per step."""
    runs: list[list[str]] = []
    for code in codes:
        run = runs[-1] if runs else None
        alike = run is not None and _INTEGER.sub("#", run[0]) == _INTEGER.sub("#", code)
        if alike and (len(run) == 1 or _slopes(run[-2], run[-1]) == _slopes(run[-1], code)):
            run.append(code)
            continue
        runs.append([code])
    return runs


def _numbers(code: str) -> list[int]:
    return [int(m) for m in _INTEGER.findall(code)]


def _slopes(a: str, b: str) -> list[int]:
    return [y - x for x, y in zip(_numbers(a), _numbers(b))]


def run_as_list(run: list[str]) -> str:
    """``[code]`` for one step; ``[code for n in range(...)]`` for a run, each of its integers
    written as a function of the step index n."""
    if len(run) == 1:
        return f"[{run[0]}]"
    n_first = int(re.search(r"\bn=(\d+)", run[0]).group(1))
    pieces = _INTEGER.split(run[0])
    out = pieces[0]
    for value, slope, piece in zip(_numbers(run[0]), _slopes(run[0], run[1]), pieces[1:]):
        constant = value - slope * n_first
        if slope == 0:
            out += str(value)
        else:
            term = "n" if slope == 1 else f"{slope} * n"
            out += term if constant == 0 else f"{term} {'+' if constant > 0 else '-'} {abs(constant)}"
        out += piece
    bounds = f"{n_first}, {n_first + len(run)}" if n_first else f"{len(run)}"
    return f"[{out} for n in range({bounds})]"


def fitted(indent: str, prefix: str, code: str, suffix: str) -> list[str]:
    """``prefix + code + suffix`` on one line if it fits in :data:`LINE_LENGTH`, else with the
    code's outer brackets opened, one argument (or ``for`` clause, or ``+`` operand) a line."""
    line = f"{indent}{prefix}{code}{suffix}"
    if len(line) <= LINE_LENGTH:
        return [line]
    terms = split_terms(code)
    if len(terms) > 1:  # a long sum: one term a line, in parentheses
        lines = [f"{indent}{prefix}("]
        for term in terms:
            lines += fitted(indent + INDENT, "", term, "")
        return [*lines, f"{indent}){suffix}"]
    opener, inner, closer = _outer_brackets(code)
    if opener is None:
        return [line]
    lines = [f"{indent}{prefix}{opener}"]
    for piece in _split_top_level(inner):
        comma = piece.endswith(",")
        lines += fitted(indent + INDENT, "", piece.removesuffix(","), "," if comma else "")
    lines.append(f"{indent}{closer}{suffix}")
    return lines


def split_terms(code: str) -> list[str]:
    """``a + b - c`` at bracket depth 0 -> [``a``, ``+ b``, ``- c``] (a lambda-free expression)."""
    terms, start = [], 0
    for i in _outside_brackets(code):
        if i > start and code.startswith((" + ", " - "), i):
            terms.append(code[start:i].strip())
            start = i + 1
    return [*terms, code[start:].strip()]


def _outside_brackets(code: str):
    """The positions of ``code`` outside every bracket (the brackets excluded)."""
    depth = 0
    for i, ch in enumerate(code):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif depth == 0:
            yield i


def _outer_brackets(code: str) -> tuple[str | None, str, str]:
    """``name(inner)`` -> (``name(``, inner, ``)``), ``[inner]`` likewise; (None, "", "") when
    the first bracket does not close at the end."""
    depth = 0
    for i, ch in enumerate(code):
        if ch in "([{":
            depth += 1
            if depth == 1:
                start = i
        elif ch in ")]}":
            depth -= 1
            if depth == 0:
                if i == len(code) - 1:
                    return code[: start + 1], code[start + 1 : -1], code[-1]
                return None, "", ""
    return None, "", ""


def _split_top_level(inner: str) -> list[str]:
    """Pieces of ``inner`` at bracket depth 0: arguments (each with its comma), a
    comprehension's ``for`` clause, and the lists that ``+`` joins (with the ``+``)."""
    pieces, start = [], 0
    for i in _outside_brackets(inner):
        if inner[i] == ",":
            pieces.append(inner[start : i + 1].strip())
            start = i + 1
        elif inner.startswith((" for ", " + ["), i):
            pieces.append(inner[start:i].strip())
            start = i + 1
    pieces.append(inner[start:].strip())
    if len(pieces) > 1 and pieces[-2].endswith(","):
        pieces[-1] += ","  # the trailing comma of an argument list opened over several lines
    return [p for p in pieces if p.strip(",")]
