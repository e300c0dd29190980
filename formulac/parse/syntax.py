"""Text -> Lark tree: the raw-text checks, the LALR parser and readable syntax errors.

Everything here happens before any meaning is read: encoding, characters, line and file sizes,
line continuations, nesting, and the parser's own "unexpected ... ; expected ..." messages.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import lark

from ..errors import SourceError
from ..limits import (
    MAX_EXPRESSION_DEPTH,
    MAX_FILE_BYTES,
    MAX_LINE_CHARS,
    MAX_NESTING,
    MAX_STATEMENTS,
    MAX_STATES,
)

__all__ = ["Source", "read", "chain", "too_many_states"]


@dataclass(frozen=True)
class Source:
    """A formula's text as shown in error messages, and its file name."""

    text: str
    path: str

    def error(self, message: str, where) -> SourceError:
        """A :class:`SourceError` at a token, a tree (its first token) or a ``(line, column)``."""
        if isinstance(where, tuple):
            line, col = where
        else:
            while isinstance(where, lark.Tree) and where.children:  # positions are not propagated:
                where = where.children[0]  # they cost half the parse time and matter only here
            line, col = getattr(where, "line", 1), getattr(where, "column", 1)
        return SourceError(message, self.path, self.text, line or 1, col or 1)


@lru_cache(maxsize=1)
def _parser() -> lark.Lark:
    grammar = resources.files("formulac.grammar").joinpath("rec.lark").read_text(encoding="utf-8")
    return lark.Lark(grammar, parser="lalr", maybe_placeholders=False, cache=True)


def read(data: str | bytes, path: str) -> tuple[lark.Tree, Source]:
    """Check the raw text and parse it; every problem is a :class:`SourceError`."""
    text = _decode(data, path)
    source = Source(_displayable(text), path)
    _check_shape(text, source)
    try:
        tree = _parser().parse(text + "\n")
    except lark.exceptions.UnexpectedInput as exc:
        raise _syntax_error(exc, text, source) from None
    _check_depth(tree, source)
    return tree, source


# -- raw text ---------------------------------------------------------------------------------


def _decode(data: str | bytes, path: str) -> str:
    if isinstance(data, str):
        text = data
    else:
        if len(data) > MAX_FILE_BYTES:
            raise SourceError(
                f"file too large ({len(data)} bytes; the limit is {MAX_FILE_BYTES})", path, None, 1, 1
            )
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            prefix = data[: exc.start].decode("utf-8", "replace")
            line = prefix.count("\n") + 1
            col = len(prefix) - (prefix.rfind("\n") + 1) + 1
            raise SourceError(
                f"not UTF-8 text (byte 0x{data[exc.start]:02x}); formula files are plain text",
                path,
                prefix + "?",
                line,
                col,
            ) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    return text


def _displayable(text: str) -> str:
    """``text`` for error messages: line breaks other than ``\\n`` and ``\\r\\n`` become spaces.

    Lark counts lines at ``\\n`` alone, while ``str.splitlines`` (used to show the source
    line) also breaks at form feeds, a lone ``\\r``, U+2028 and others; this keeps both in step.
    """
    return _ODD_BREAKS.sub(" ", text)


# every character str.splitlines breaks at, except \n and the \r of \r\n
_ODD_BREAKS = re.compile("\r(?!\n)|[\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


def _check_shape(text: str, source: Source) -> None:
    if len(text) > MAX_FILE_BYTES:
        raise SourceError(
            f"file too large ({len(text)} characters; the limit is {MAX_FILE_BYTES})", source.path, None, 1, 1
        )
    lines = text.split("\n")
    depth = 0
    statements = heads = 0
    for number, line in enumerate(lines, 1):
        if line.endswith("\r"):
            line = line[:-1]
        if len(line) > MAX_LINE_CHARS:
            raise source.error(
                f"line too long ({len(line)} characters; the limit is {MAX_LINE_CHARS})",
                (number, MAX_LINE_CHARS + 1),
            )
        bad = next((i for i, ch in enumerate(line) if not ch.isprintable() and ch not in "\t\f"), None)
        if bad is not None:
            raise source.error(f"unexpected {_describe(line[bad])}", (number, bad + 1))
        code = line.partition("#")[0]
        continued = line.endswith("\\")
        if continued:
            _check_continuation(lines, number, source)
        for col, ch in enumerate(code, 1):
            if ch == "(":
                depth += 1
                if depth > MAX_NESTING:
                    raise source.error(
                        f"parentheses nested too deeply (the limit is {MAX_NESTING})", (number, col)
                    )
            elif ch == ")":
                depth -= 1
        if not continued:
            depth = 0
            statements += code.count(";") + bool(code.strip())
            if statements > MAX_STATEMENTS:
                raise source.error(f"too many statements (the limit is {MAX_STATEMENTS})", (number, 1))
        heads += len(_EQUATION_HEAD.findall(code))
        if heads > MAX_STATES:  # before the parser spends time on a system no analysis would take
            raise source.error(too_many_states(), (number, 1))


def too_many_states() -> str:
    """The message for a formula with more than :data:`MAX_STATES` equations."""
    return (
        f"too many states (the limit is {MAX_STATES} equations; the analyses of a system take "
        "time in proportion to it)"
    )


# the start of an equation, `x_<n+1> =` or `x_{n+1} =`: counted before parsing (the declarations
# count them exactly; this one can only undercount, in continued lines)
_EQUATION_HEAD = re.compile(r"(?:^|;)\s*[A-Za-z]\w*_(?:<\s*n\s*\+\s*1\s*>|\{\s*n\s*\+\s*1\s*\})\s*=(?!=)")


def _check_continuation(lines: list[str], number: int, source: Source) -> None:
    """The line after a backslash at the end of line ``number`` (1-based) must hold code."""
    following = lines[number] if number < len(lines) else None  # lines[number] is the next one
    if following is None or (number == len(lines) - 1 and not following):
        what = "the file ends there"
    elif not following.strip():
        what = f"line {number + 1} is blank"
    elif following.strip().startswith("#"):
        what = f"line {number + 1} holds only a comment"
    else:
        return
    column = len(lines[number - 1].rstrip("\r"))
    raise source.error(
        f"a backslash at the end of a line continues the statement on the next line, but {what}",
        (number, column),
    )


def _describe(ch: str) -> str:
    """``control character U+0000``, ``character U+00A0 (no-break space)``."""
    name = unicodedata.name(ch, "")
    if ch == "\r":
        return "carriage return U+000D (a line ends with \\n or \\r\\n)"
    if not name:
        return f"control character U+{ord(ch):04X}"
    return f"character U+{ord(ch):04X} ({name.lower()})"


# -- syntax errors ----------------------------------------------------------------------------

_TERMINAL_NAMES = {
    "SUBSCRIPTED": "an indexed name like x_n or x_<n+1>",
    "NAME": "a name",
    "NUMBER": "a number",
    "RANGE": "'..'",
    "EQUALS": "'=='",
    "PLUS": "'+'",
    "MINUS": "'-'",
    "STAR": "'*'",
    "SLASH": "'/'",
    "POW": "'^'",
    "NEWLINE": "end of line",
    "LPAR": "'('",
    "RPAR": "')'",
    "LSQB": "'['",
    "RSQB": "']'",
    "LBRACE": "'{'",
    "RBRACE": "'}'",
    "IN": "'in'",
    "LOG": "'log'",
    "EQUAL": "'='",
    "COMMA": "','",
    "SEMICOLON": "';'",
    "PARAM": "'param'",
    "SYMBOL": "'symbol'",
    "OUTPUT": "'output'",
    "SHARED": "'shared'",
    "$END": "end of file",
}

_OPERATORS = {"PLUS", "MINUS", "STAR", "SLASH", "POW"}
_EXPRESSION_START = {"LPAR", "NAME", "NUMBER", "SUBSCRIPTED"}
_STATEMENT_START = {"NAME", "SUBSCRIPTED", "PARAM", "SYMBOL", "OUTPUT", "SHARED"}
_LINE_END = {"NEWLINE", "SEMICOLON", "$END"}

# characters and tokens that have a likelier meaning than their place in the grammar
_HINTS = {
    "_": " (names cannot start with '_'; an underscore introduces an index: x_n)",
    "[": " (write indices as x_n, x_<n-1> or x_{n-1})",
}


def _syntax_error(exc: lark.exceptions.UnexpectedInput, text: str, source: Source) -> SourceError:
    line, col = getattr(exc, "line", 1), getattr(exc, "column", 1)
    if line is None or line < 1:  # unexpected end of input
        lines = text.split("\n")
        if len(lines) > 1 and not lines[-1]:
            lines.pop()
        line, col = len(lines), len(lines[-1].rstrip("\r")) + 1
    if isinstance(exc, lark.exceptions.UnexpectedCharacters):
        ch = text[exc.pos_in_stream] if exc.pos_in_stream < len(text) else ""
        return source.error(f"unexpected character {ch!r}{_HINTS.get(ch, '')}", (line, col))
    terminals = set(getattr(exc, "expected", None) or ())
    interactive = getattr(exc, "interactive_parser", None)
    if interactive is not None:  # exact: LALR's own set includes lookaheads of merged states
        terminals = set(interactive.accepts())
    expected = _expected(terminals)
    token = getattr(exc, "token", None)
    if token is None or token.type == "$END":
        got = "end of file"
    elif token.type == "NEWLINE":
        got = "end of line"
    else:
        got = repr(str(token))
    message = f"unexpected {got}"
    if expected:
        message += "; expected " + _one_of(expected)
    if token is not None and token.type in _OPERATORS and terminals >= _STATEMENT_START:
        message += " (to continue the previous line, end it with a backslash)"
    elif token is not None and "LSQB" not in terminals:
        message += _HINTS.get(str(token), "")
    return source.error(message, (line, col))


def _expected(terminals: set[str]) -> list[str]:
    """Terminal names -> readable words, grouped: 'an expression', 'an operator', 'end of line'."""
    terminals = {t for t in terminals if not t.startswith("__")}
    words: list[str] = []
    if terminals >= _STATEMENT_START:
        words.append("a statement (x_<n+1> = ..., a = ..., param, symbol, output or shared)")
        terminals -= _STATEMENT_START
    if terminals >= _EXPRESSION_START:
        words.append("an expression")
        terminals -= _EXPRESSION_START | {"PLUS", "MINUS", "LSQB"}  # '[' opens [i == n]
    if terminals >= _OPERATORS:
        words.append("an operator (+ - * / ^)")
        terminals -= _OPERATORS
    line_end = terminals & _LINE_END
    terminals -= _LINE_END
    words += sorted(_TERMINAL_NAMES.get(t, t) for t in terminals)
    if line_end:
        words.append("end of line" if line_end & {"NEWLINE", "SEMICOLON"} else "end of file")
    return words


def _one_of(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    if len(items) > 6:
        items = items[:6] + ["..."]
    return ", ".join(items[:-1]) + " or " + items[-1]


# -- nesting ------------------------------------------------------------------------------------

_CHAINS = {"add": "sum", "sub": "sum", "mul": "product", "div": "product"}
_TRANSPARENT = ("arguments", "range_arguments", "parens")  # add no level of nesting


def _check_depth(tree: lark.Tree, source: Source) -> None:
    """Reject expressions nested deeper than :data:`MAX_EXPRESSION_DEPTH` before anything
    recurses on them.

    A chain ``a + b + c`` or ``a*b/c`` is one level (it is built flat); every other operator
    and call is one more. Parentheses are limited separately (per statement).
    """
    stack = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_EXPRESSION_DEPTH:
            raise source.error(
                f"expression nested too deeply (more than {MAX_EXPRESSION_DEPTH} levels of operators and calls)",
                node,
            )
        for child in node.children:
            if isinstance(child, lark.Tree):
                family = _CHAINS.get(child.data)
                flat = family is not None and family == _CHAINS.get(node.data) and child is node.children[0]
                stack.append((child, depth if flat or child.data in _TRANSPARENT else depth + 1))


def chain(node: lark.Tree) -> tuple[lark.Tree, list[tuple[str, lark.Tree]]]:
    """``a + b - c`` -> ``(a, [("add", b), ("sub", c)])``, walking the left spine in a loop."""
    family = _CHAINS[node.data]
    links = []
    while isinstance(node, lark.Tree) and _CHAINS.get(node.data) == family:
        left, _, right = node.children
        links.append((node.data, right))
        node = left
    links.reverse()
    return node, links
