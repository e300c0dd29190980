"""Formula text -> :class:`~formulac.ir.Recurrence`, with every semantic check.

Syntax lives in ``grammar/rec.lark`` (LALR). This module walks the Lark tree twice: first to
collect the declarations (constants, parameters, symbols, outputs, equation heads), then to
build the SymPy expressions, so that a name may be used before the line that declares it.
Every problem becomes a :class:`~formulac.errors.SourceError` at the offending token.
"""

from __future__ import annotations

import builtins
import difflib
import keyword
import math
import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

import lark
import sympy

from .errors import SourceError, UsageError
from .ir import ELEMENTWISE, BlockCall, Concat, Equation, Param, Recurrence, n, rebuild, state

__all__ = ["parse", "load", "MAX_LINE_CHARS", "MAX_NESTING", "MAX_DEPTH", "MAX_LAG", "RESERVED_WORDS"]

MAX_FILE_BYTES = 1_000_000
MAX_LINE_CHARS = 4_000
MAX_NESTING = 64  # parentheses, per statement
MAX_DEPTH = 64  # operators and calls nested in one expression (a + b + c counts once)
MAX_LAG = 64  # how far back an index may reach: x_<n-64>, x_<-64>
MAX_NUMBER_BITS = 2_000  # numerator or denominator of any number the formula computes
MAX_NAME_CHARS = 64
MAX_EXPONENT = 400  # of a decimal literal; 1e999999 would build a million-digit integer

#: Words of the language that cannot name anything.
RESERVED_WORDS = frozenset({"param", "symbol", "output", "shared", "sum", "cat", "n"}) | frozenset(
    ELEMENTWISE
)

_TERMINAL_NAMES = {
    "SUBSCRIPTED": "an indexed name like x_n or x_<n+1>",
    "NAME": "a name",
    "NUMBER": "a number",
    "RANGE": "'..'",
    "PLUS": "'+'",
    "MINUS": "'-'",
    "STAR": "'*'",
    "SLASH": "'/'",
    "POW": "'^'",
    "NEWLINE": "end of line",
    "LPAR": "'('",
    "RPAR": "')'",
    "EQUAL": "'='",
    "COMMA": "','",
    "SEMICOLON": "';'",
    "PARAM": "'param'",
    "SYMBOL": "'symbol'",
    "OUTPUT": "'output'",
    "SHARED": "'shared'",
    "$END": "end of file",
}

_INDEX = re.compile(
    r"^\s*(?:(?P<var>[A-Za-z][A-Za-z0-9]*)\s*(?:(?P<sign>[+-])\s*(?P<off>[0-9]+))?|(?P<abs>[+-]?\s*[0-9]+))\s*$"
)


@lru_cache(maxsize=1)
def _parser() -> lark.Lark:
    grammar = resources.files("formulac.grammar").joinpath("rec.lark").read_text(encoding="utf-8")
    return lark.Lark(grammar, parser="lalr", propagate_positions=True, maybe_placeholders=False, cache=True)


def load(path: str | Path) -> Recurrence:
    """Read and parse a ``.rec`` file; unreadable files are a :class:`UsageError`."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    return parse(data, str(path))


def parse(text: str | bytes, path: str = "<string>") -> Recurrence:
    """Parse formula text into a :class:`Recurrence`, or raise :class:`SourceError`."""
    text = _decode(text, path)
    shown = _displayable(text)
    _check_shape(text, shown, path)
    try:
        tree = _parser().parse(text + "\n")
    except lark.exceptions.UnexpectedInput as exc:
        raise _syntax_error(exc, text, shown, path) from None
    _check_depth(tree, shown, path)
    return _Builder(shown, path).build(tree)


# -- raw text checks -------------------------------------------------------------------------


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


def _check_shape(text: str, shown: str, path: str) -> None:
    if len(text) > MAX_FILE_BYTES:
        raise SourceError(
            f"file too large ({len(text)} characters; the limit is {MAX_FILE_BYTES})", path, None, 1, 1
        )
    depth = 0
    for number, line in enumerate(text.split("\n"), 1):
        if line.endswith("\r"):
            line = line[:-1]
        if len(line) > MAX_LINE_CHARS:
            raise SourceError(
                f"line too long ({len(line)} characters; the limit is {MAX_LINE_CHARS})",
                path,
                shown,
                number,
                MAX_LINE_CHARS + 1,
            )
        bad = next((i for i, ch in enumerate(line) if not ch.isprintable() and ch not in "\t\f"), None)
        if bad is not None:
            raise SourceError(f"unexpected {_describe(line[bad])}", path, shown, number, bad + 1)
        for col, ch in enumerate(line, 1):
            if ch == "(":
                depth += 1
                if depth > MAX_NESTING:
                    raise SourceError(
                        f"parentheses nested too deeply (the limit is {MAX_NESTING})",
                        path,
                        shown,
                        number,
                        col,
                    )
            elif ch == ")":
                depth -= 1
        if not line.endswith("\\"):  # a backslash at the end continues the line
            depth = 0


def _describe(ch: str) -> str:
    """``control character U+0000``, ``character U+00A0 (no-break space)``."""
    name = unicodedata.name(ch, "")
    if ch == "\r":
        return "carriage return U+000D (a line ends with \\n or \\r\\n)"
    if not name:
        return f"control character U+{ord(ch):04X}"
    return f"character U+{ord(ch):04X} ({name.lower()})"


def _syntax_error(exc: lark.exceptions.UnexpectedInput, text: str, shown: str, path: str) -> SourceError:
    line, col = getattr(exc, "line", 1), getattr(exc, "column", 1)
    if line is None or line < 1:  # unexpected end of input
        lines = text.split("\n")
        if len(lines) > 1 and not lines[-1]:
            lines.pop()
        line, col = len(lines), len(lines[-1].rstrip("\r")) + 1
    if isinstance(exc, lark.exceptions.UnexpectedCharacters):
        ch = text[exc.pos_in_stream] if exc.pos_in_stream < len(text) else ""
        hint = ""
        if ch == "_":
            hint = " (names cannot start with '_'; an underscore introduces an index: x_n)"
        elif ch == "[":
            hint = " (write indices as x_n, x_<n-1> or x_{n-1})"
        return SourceError(f"unexpected character {ch!r}{hint}", path, shown, line, col)
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
    return SourceError(message, path, shown, line, col)


_CHAINS = {"add": "sum", "sub": "sum", "mul": "product", "div": "product"}
_ARGUMENT_LISTS = ("arguments", "range_arguments")


def _check_depth(tree: lark.Tree, shown: str, path: str) -> None:
    """Reject expressions nested deeper than :data:`MAX_DEPTH` before anything recurses on them.

    A chain ``a + b + c`` or ``a*b/c`` is one level (it is built flat); every other operator
    and call is one more. Parentheses are limited separately (per statement).
    """
    stack = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            meta = node.meta
            raise SourceError(
                f"expression nested too deeply (more than {MAX_DEPTH} levels of operators and calls)",
                path,
                shown,
                getattr(meta, "line", 1),
                getattr(meta, "column", 1),
            )
        for child in node.children:
            if isinstance(child, lark.Tree):
                family = _CHAINS.get(child.data)
                flat = family is not None and family == _CHAINS.get(node.data) and child is node.children[0]
                stack.append((child, depth if flat or child.data in _ARGUMENT_LISTS else depth + 1))


_OPERATORS = {"PLUS", "MINUS", "STAR", "SLASH", "POW"}
_EXPRESSION_START = {"LPAR", "NAME", "NUMBER", "SUBSCRIPTED"}
_STATEMENT_START = {"NAME", "SUBSCRIPTED", "PARAM", "SYMBOL", "OUTPUT", "SHARED"}
_LINE_END = {"NEWLINE", "SEMICOLON", "$END"}


def _expected(terminals: set[str]) -> list[str]:
    """Terminal names -> readable words, grouped: 'an expression', 'an operator', 'end of line'."""
    terminals = {t for t in terminals if not t.startswith("__")}
    words: list[str] = []
    if terminals >= _STATEMENT_START:
        words.append("a statement (x_<n+1> = ..., a = ..., param, symbol, output or shared)")
        terminals -= _STATEMENT_START
    if terminals >= _EXPRESSION_START:
        words.append("an expression")
        terminals -= _EXPRESSION_START | {"PLUS", "MINUS"}
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


# -- tree -> representation ------------------------------------------------------------------


@dataclass(frozen=True)
class _Index:
    """A parsed subscript: ``var + offset`` (var None for an absolute index)."""

    var: str | None
    offset: int

    def text(self) -> str:
        if self.var is None:
            return str(self.offset)
        if self.offset == 0:
            return self.var
        return f"<{self.var}{self.offset:+d}>"


@dataclass
class _Scope:
    """What an expression may refer to while it is being built."""

    kind: str  # "equation", "initial", "value" (a constant, param init or range bound)
    state: str | None = None
    bound: dict[str, tuple[sympy.Symbol, sympy.Expr, sympy.Expr]] = field(default_factory=dict)
    same_step: set[str] = field(default_factory=set)


class _Builder:
    def __init__(self, text: str, path: str):
        self.text = text
        self.path = path
        self.constants: dict[str, sympy.Expr] = {}
        self.params: dict[str, Param] = {}
        self.symbols: list[str] = []
        self.shared: dict[str, lark.Token] = {}
        self.output: lark.Token | None = None
        self.state_heads: dict[str, lark.Token] = {}
        self.declared: dict[str, tuple[str, lark.Token]] = {}

    # errors
    def error(self, message: str, where) -> SourceError:
        line = getattr(where, "line", None) or getattr(getattr(where, "meta", None), "line", 1)
        col = getattr(where, "column", None) or getattr(getattr(where, "meta", None), "column", 1)
        return SourceError(message, self.path, self.text, line or 1, col or 1)

    # -- pass 1: declarations -----------------------------------------------------------------
    def build(self, tree: lark.Tree) -> Recurrence:
        statements = [s for s in tree.children if isinstance(s, lark.Tree)]
        for st in statements:
            self._declare(st)
        if not self.state_heads:
            where = statements[0] if statements else lark.Token("X", "", line=1, column=1)
            raise self.error("no equation: a formula needs a line like x_<n+1> = x_n + F(x_n)", where)
        for st in statements:
            if st.data == "constant":
                name_tok, expr = st.children
                self.constants[str(name_tok)] = self._value(expr, f"constant {name_tok}")
        self._check_constant_cycles()
        for st in statements:
            if st.data == "param":
                name_tok, expr = st.children
                base, index = (
                    self._split(name_tok) if name_tok.type == "SUBSCRIPTED" else (str(name_tok), None)
                )
                init = self._value(expr, f"parameter {base}")
                if init.free_symbols:
                    raise self.error(f"the initial value of parameter {base} must be a number", expr)
                self.params[base] = Param(base, init, per_step=index is not None)
        equations: dict[str, Equation] = {}
        deps: dict[str, set[str]] = {}
        initial: dict[tuple[str, int], sympy.Expr] = {}
        for st in statements:
            if st.data != "equation":
                continue
            head, expr = st.children
            base, index = self._split(head)
            if index.var is None:
                initial[(base, index.offset)] = self._initial(base, index, head, expr, initial)
                continue
            scope = _Scope("equation", state=base)
            display = self._expr(expr, scope)
            rhs = rebuild(display)
            self._check_result(rhs, expr)
            equations[base] = Equation(base, rhs, display, head.line, head.column)
            deps[base] = scope.same_step
        order = self._evaluation_order(equations, deps)
        output = self._output()
        for block, tok in self.shared.items():
            if not any(block == b for eq in equations.values() for b in _block_names(eq.rhs)):
                raise self.error(f"shared block {block} is not used by any equation", tok)
        return Recurrence(
            equations=tuple(equations[s] for s in order),
            output=output,
            constants=self.constants,
            params=self.params,
            symbols=tuple(self.symbols),
            initial=initial,
            shared_blocks=frozenset(self.shared),
            name=self.path,
        )

    def _declare(self, st: lark.Tree) -> None:
        kind = st.data
        if kind == "equation":
            head = st.children[0]
            base, index = self._split(head)
            self._check_name(base, "state", head, lowercase=True)
            if index.var is None:
                if index.offset > 0:
                    raise self.error(
                        f"{head} sets a state after the start; initial conditions are x_0, x_<-1>, ...", head
                    )
                return
            if index.var != "n" or index.offset != 1:
                raise self.error(f"an equation defines the next state: write {base}_<n+1> = ...", head)
            if base in self.state_heads:
                first = self.state_heads[base]
                raise self.error(f"duplicate equation for {base} (first defined on line {first.line})", head)
            self._claim(base, "state", head)
            self.state_heads[base] = head
        elif kind == "constant":
            tok = st.children[0]
            self._check_name(str(tok), "constant", tok, lowercase=None)
            self._claim(str(tok), "constant", tok)
        elif kind == "param":
            tok = st.children[0]
            if tok.type == "SUBSCRIPTED":
                base, index = self._split(tok)
                if index != _Index("n", 0):
                    raise self.error(f"a per-step parameter is declared as {base}_n", tok)
            else:
                base = str(tok)
            self._check_name(base, "parameter", tok, lowercase=None)
            self._claim(base, "parameter", tok)
        elif kind == "symbols":
            for tok in st.children:
                self._check_name(str(tok), "symbol", tok, lowercase=None)
                self._claim(str(tok), "symbol", tok)
                self.symbols.append(str(tok))
        elif kind == "output":
            tok = st.children[0]
            if self.output is not None:
                raise self.error(f"the output is already declared on line {self.output.line}", tok)
            self.output = tok
        elif kind == "shared":
            for tok in st.children:
                if not str(tok)[:1].isupper():
                    raise self.error(f"only blocks (capitalised names) can be shared, not {tok}", tok)
                self._check_name(str(tok), "block", tok, lowercase=False)
                self.shared[str(tok)] = tok

    def _claim(self, name: str, kind: str, tok) -> None:
        if name in self.declared:
            other_kind, other = self.declared[name]
            raise self.error(f"{name} is already declared as a {other_kind} on line {other.line}", tok)
        self.declared[name] = (kind, tok)

    def _check_name(self, name: str, kind: str, tok, lowercase: bool | None) -> None:
        if len(name) > MAX_NAME_CHARS:
            raise self.error(
                f"{kind} name too long ({len(name)} characters; the limit is {MAX_NAME_CHARS})", tok
            )
        if keyword.iskeyword(name) or keyword.issoftkeyword(name):
            raise self.error(f"{name!r} is a Python keyword and cannot name a {kind}", tok)
        if name in RESERVED_WORDS:
            raise self.error(f"{name!r} is a reserved word of the language and cannot name a {kind}", tok)
        if hasattr(builtins, name):
            raise self.error(f"{name!r} is a Python builtin and cannot name a {kind}", tok)
        if lowercase is True and name[:1].isupper():
            raise self.error(
                f"capitalised names are blocks; a {kind} name starts with a lower-case letter", tok
            )
        if lowercase is None and name[:1].isupper():
            raise self.error(f"capitalised names are blocks and cannot name a {kind}", tok)

    def _output(self) -> str:
        if self.output is not None:
            name = str(self.output)
            if name not in self.state_heads:
                known = ", ".join(self.state_heads)
                raise self.error(f"output {name} is not a state (the states are {known})", self.output)
            return name
        if "x" in self.state_heads:
            return "x"
        if len(self.state_heads) == 1:
            return next(iter(self.state_heads))
        first = next(iter(self.state_heads.values()))
        raise self.error("several states and none is x: name the output with `output NAME`", first)

    def _check_constant_cycles(self) -> None:
        """``a = b`` with ``b = a`` (or ``a = a + 1``) defines nothing."""
        uses = {c: {s.name for s in v.free_symbols} & set(self.constants) for c, v in self.constants.items()}
        done: set[str] = set()

        def visit(c: str, chain: list[str]) -> None:
            if c in chain:
                cycle = chain[chain.index(c) :] + [c]
                raise self.error(
                    f"constant {c} is defined through itself: " + " -> ".join(cycle), self.declared[c][1]
                )
            if c not in done:
                for d in sorted(uses[c]):
                    visit(d, chain + [c])
                done.add(c)

        for c in self.constants:
            visit(c, [])

    def _evaluation_order(self, equations: dict[str, Equation], deps: dict[str, set[str]]) -> list[str]:
        order: list[str] = []
        visiting: set[str] = set()

        def visit(s: str, chain: list[str]) -> None:
            if s in order:
                return
            if s in visiting:
                cycle = chain[chain.index(s) :] + [s]
                raise self.error(
                    "same-step references form a cycle: " + " -> ".join(f"{c}_<n+1>" for c in cycle),
                    self.state_heads[s],
                )
            visiting.add(s)
            for d in sorted(deps[s], key=list(equations).index):
                visit(d, chain + [s])
            visiting.discard(s)
            order.append(s)

        for s in equations:
            visit(s, [])
        return order

    # -- pass 2: expressions --------------------------------------------------------------------
    def _value(self, node, what: str) -> sympy.Expr:
        expr = rebuild(self._expr(node, _Scope("value")))
        self._check_result(expr, node)
        return expr

    def _initial(self, base, index, head, node, initial) -> sympy.Expr:
        if base not in self.state_heads:
            raise self.error(f"initial condition for {base}, which no equation defines", head)
        output = str(self.output) if self.output is not None else ("x" if "x" in self.state_heads else None)
        if base == output and index.offset == 0:
            raise self.error(f"{head} is the network's input and cannot be set", head)
        if (base, index.offset) in initial:
            raise self.error(f"duplicate initial condition for {head}", head)
        expr = rebuild(self._expr(node, _Scope("initial")))
        self._check_result(expr, node)
        return expr

    def _check_result(self, expr: sympy.Expr, node) -> None:
        """The finished (evaluated) expression: finite, real, with numbers of a sane size."""
        if expr.has(sympy.zoo, sympy.nan, sympy.oo, -sympy.oo):
            raise self.error("division by zero (or another undefined value, such as log(0))", node)
        if expr.has(sympy.I):
            raise self.error("the value is not a real number (a root or log of a negative number?)", node)
        for number in expr.atoms(sympy.Rational):
            self._number(number, node)

    def _check_divisor(self, value: sympy.Expr, where) -> None:
        if value == 0:
            raise self.error("division by zero", where)
        step = _first_zero_step(value)
        if step is not None:
            raise self.error(f"division by zero at step n = {step}", where)

    def _number(self, value: sympy.Expr, where) -> sympy.Expr:
        """``value`` if it is a number of at most :data:`MAX_NUMBER_BITS` bits (numerator and denominator)."""
        if value.is_Rational and max(abs(value.p).bit_length(), value.q.bit_length()) > MAX_NUMBER_BITS:
            raise self.error(f"number out of range (more than {MAX_NUMBER_BITS} bits)", where)
        return value

    def _split(self, tok: lark.Token) -> tuple[str, _Index]:
        text = str(tok)
        base, _, sub = text.partition("_")
        inner = sub[1:-1] if sub[:1] in "<{" else sub
        m = _INDEX.match(inner)
        if not m:
            raise self.error(f"cannot read the index of {text}; write x_n, x_0, x_<n+1> or x_<n-2>", tok)
        if m.group("abs") is not None:
            index = _Index(None, int(m.group("abs").replace(" ", "")))
        else:
            offset = int(m.group("off") or 0) * (-1 if m.group("sign") == "-" else 1)
            if sub[:1] not in "<{" and not sub.isdigit() and m.group("off"):
                raise self.error(f"write a shifted index in brackets: {base}_<{inner}>", tok)
            index = _Index(m.group("var"), offset)
        if index.offset < -MAX_LAG:
            raise self.error(f"{text} reaches too far back (the limit is {MAX_LAG} steps)", tok)
        return base, index

    def _expr(self, node, scope: _Scope) -> sympy.Expr:
        if isinstance(node, lark.Token):
            raise self.error(f"unexpected {node}", node)
        handler = getattr(self, "_e_" + node.data)
        return handler(node, scope)

    def _e_number(self, node, scope):
        tok = node.children[0]
        text = str(tok)
        exponent = re.search(r"[eE]([+-]?\d+)", text)
        if exponent and abs(int(exponent.group(1))) > MAX_EXPONENT:
            raise self.error(f"number out of range: {text}", tok)
        return sympy.Rational(text)

    def _e_add(self, node, scope):  # also sub: a chain a + b - c is built flat, without recursion
        first, links = _chain(node)
        value = self._expr(first, scope)
        terms = list(value.args) if isinstance(value, sympy.Add) else [value]
        for kind, operand in links:
            term = self._expr(operand, scope)
            terms.append(_negate(term) if kind == "sub" else term)
        return sympy.Add(*terms, evaluate=False)

    _e_sub = _e_add

    def _e_mul(self, node, scope):  # also div: a chain a*b/c is built flat
        first, links = _chain(node)
        value = self._expr(first, scope)
        factors = list(value.args) if isinstance(value, sympy.Mul) else [value]
        for kind, operand in links:
            factor = self._expr(operand, scope)
            if kind == "div":
                self._check_divisor(rebuild(factor), operand)
            if len(factors) == 1 and factors[0].is_Number and factor.is_Number:
                factors[0] = self._number(
                    factors[0] / factor if kind == "div" else factors[0] * factor, operand
                )
                continue
            if kind == "div":
                factor = sympy.Pow(factor, -1, evaluate=False)
                if factors == [1]:
                    factors = [factor]
                    continue
            factors.append(factor)
        return factors[0] if len(factors) == 1 else sympy.Mul(*factors, evaluate=False)

    _e_div = _e_mul

    def _e_neg(self, node, scope):
        return _negate(self._expr(node.children[1], scope))

    def _e_pos(self, node, scope):
        return self._expr(node.children[1], scope)

    def _e_pow(self, node, scope):
        a, _, b = node.children
        base, exponent = self._expr(a, scope), self._expr(b, scope)
        e, value = rebuild(exponent), rebuild(base)
        if e.is_number and (abs(e) > 64):
            raise self.error("exponent too large (the limit is 64)", b)
        if e.is_number and e.is_negative:
            self._check_divisor(value, node)
        if value.is_Rational and e.is_Rational and abs(value) != 1:
            bits = max(abs(value.p).bit_length(), value.q.bit_length()) * abs(e)
            if bits > MAX_NUMBER_BITS:
                raise self.error(f"number out of range (more than {MAX_NUMBER_BITS} bits)", node)
        if value.is_number and value.is_negative and e.is_number and not e.is_integer:
            raise self.error("a negative number to a fractional power is not a real number", node)
        return sympy.Pow(base, exponent, evaluate=False)

    def _e_name(self, node, scope):
        tok = node.children[0]
        name = str(tok)
        if name in scope.bound:
            return scope.bound[name][0]
        if name == "n":
            if scope.kind == "initial":
                raise self.error("n has no value in an initial condition", tok)
            return n
        if name in self.constants or name in self.symbols:
            return sympy.Symbol(name)
        kind = self.declared.get(name, (None,))[0]
        if kind == "constant":  # used by another constant before its own value was built
            return sympy.Symbol(name)
        if name in self.params:
            p = self.params[name]
            if p.per_step:
                raise self.error(f"{name} is a per-step parameter: write {name}_n", tok)
            if scope.kind != "equation":
                raise self.error(f"parameter {name} can only be used in equations", tok)
            return sympy.Symbol(name)
        if kind == "parameter":
            raise self.error(f"parameter {name} can only be used in equations", tok)
        if name in self.state_heads:
            raise self.error(f"state {name} needs an index: {name}_n, {name}_<n-1>, ...", tok)
        if name[:1].isupper():
            raise self.error(f"block {name} must be applied to an argument, e.g. {name}(x_n)", tok)
        if name in ELEMENTWISE or name in ("sum", "cat"):
            raise self.error(f"{name} is a function: write {name}(...)", tok)
        hint = _suggest(name, list(self.constants) + self.symbols + list(self.params))
        raise self.error(
            f"undefined symbol {name!r}{hint}; give it a value ({name} = 0.5), make it learnable "
            f"(param {name} = 0.5) or leave it free (symbol {name})",
            tok,
        )

    def _e_subscripted(self, node, scope):
        tok = node.children[0]
        base, index = self._split(tok)
        var = None
        if index.var is not None:
            if index.var == "n":
                var = n
            elif index.var in scope.bound:
                var = scope.bound[index.var][0]
            else:
                raise self.error(
                    f"unknown index {index.var!r} in {tok}; indices are n or a sum's variable", tok
                )
            if index.var == "n" and scope.kind != "equation":
                raise self.error(f"{tok} refers to a step; only equations can", tok)
        if base in self.params:
            p = self.params[base]
            if not p.per_step:
                raise self.error(f"{base} is one parameter shared by all steps: write {base}, not {tok}", tok)
            if index.var is None or index.offset != 0:
                raise self.error(f"a per-step parameter is read at its own step: {base}_n", tok)
            return sympy.IndexedBase(base)[var]
        if base in self.state_heads:
            return self._state_ref(base, index, var, tok, scope)
        if base[:1].isupper():
            raise self.error(f"block {base} must be applied to an argument, e.g. {base}(x_n)", tok)
        kind = self.declared.get(base, (None,))[0]
        if kind is not None:
            raise self.error(f"{base} is a {kind}, not a state; it takes no index", tok)
        hint = _suggest(base, list(self.state_heads))
        raise self.error(f"undefined state {base!r}{hint}: no equation defines {base}_<n+1>", tok)

    def _state_ref(self, base, index, var, tok, scope):
        if scope.kind == "value":
            raise self.error(f"a state ({tok}) cannot appear in a constant or parameter value", tok)
        if scope.kind == "initial":
            output = (
                str(self.output) if self.output is not None else ("x" if "x" in self.state_heads else None)
            )
            if index.var is not None or index.offset != 0 or base != output:
                raise self.error(f"an initial condition can only read the input {output}_0", tok)
            return state(base, 0)
        if var is None:
            if index.offset != 0:
                raise self.error(
                    f"an equation reads states relative to n; {tok} is absolute (only _0 is allowed)", tok
                )
            return state(base, 0)
        if var == n:
            if index.offset >= 2:
                raise self.error(
                    f"reference to the future: {tok} (an equation for step n reads states up to n, "
                    "and other states at n+1)",
                    tok,
                )
            if index.offset == 1:
                if base == scope.state:
                    raise self.error(f"{tok} refers to the state this equation defines", tok)
                scope.same_step.add(base)
        else:
            _, low, high = scope.bound[index.var]
            if (high + index.offset - n).is_positive:
                raise self.error(f"reference to the future: {tok} reaches beyond step n", tok)
            first = low + index.offset - (n if (low - n).is_Integer else 0)
            if first < -MAX_LAG:
                raise self.error(f"{tok} reaches too far back (the limit is {MAX_LAG} steps)", tok)
        return state(base, var + index.offset)

    def _e_call(self, node, scope):
        name_tok, args_node = node.children
        name = str(name_tok)
        return self._call(name, name_tok, args_node, scope)

    def _e_subscripted_call(self, node, scope):
        name_tok, args_node = node.children
        base, index = self._split(name_tok)
        if not base[:1].isupper() or index != _Index("n", 0):
            raise self.error(f"only a block may be written with its step, as {base}_n(...)", name_tok)
        return self._call(base, name_tok, args_node, scope)

    def _call(self, name, name_tok, args_node, scope):
        is_range = args_node.data == "range_arguments"
        if name[:1].isupper():
            if scope.kind != "equation":
                raise self.error(f"block {name} can only be applied in an equation", name_tok)
            self._check_name(name, "block", name_tok, lowercase=False)
            if name in self.declared:
                raise self.error(f"{name} is declared as a {self.declared[name][0]}, not a block", name_tok)
            if is_range or len(args_node.children) != 1:
                raise self.error(f"block {name} takes exactly one argument", name_tok)
            argument = self._expr(args_node.children[0], scope)
            if not _mentions_state(rebuild(argument), self.state_heads):
                raise self.error(f"block {name} must be applied to states, e.g. {name}(x_n)", args_node)
            return BlockCall(sympy.Symbol(name), n, argument)
        if name in ("sum", "cat"):
            if name == "sum":
                if not is_range:
                    raise self.error("sum takes a range first: sum(i=0..n, x_i)", name_tok)
                return self._sum(args_node, scope)
            if is_range or len(args_node.children) < 2:
                raise self.error("cat concatenates two or more states: cat(x_n, F(x_n))", name_tok)
            if scope.kind != "equation":
                raise self.error("cat can only be used in an equation", name_tok)
            return Concat(*(self._expr(a, scope) for a in args_node.children))
        if name in ELEMENTWISE:
            if is_range or len(args_node.children) != 1:
                raise self.error(f"{name} takes exactly one argument", name_tok)
            argument = self._expr(args_node.children[0], scope)
            self._check_argument(name, rebuild(argument), args_node)
            return ELEMENTWISE[name](argument, evaluate=False)
        if name in self.declared:
            raise self.error(f"{name} is a {self.declared[name][0]}, not a function", name_tok)
        hint = _suggest(name, list(ELEMENTWISE) + ["sum", "cat"])
        known = ", ".join(sorted(ELEMENTWISE))
        raise self.error(
            f"unknown function {name!r}{hint} (known: {known}, sum, cat; blocks are capitalised: F(x_n))",
            name_tok,
        )

    def _check_argument(self, name: str, value: sympy.Expr, where) -> None:
        """A function of a plain number: its value must exist and stay in range (no exp(exp(100)))."""
        if not value.is_number:
            return
        try:
            x = float(value)
        except (TypeError, ValueError, OverflowError):
            x = math.nan
        if math.isnan(x) and (value.has(sympy.I) or value.is_real is False):
            raise self.error(f"the argument of {name} is not a real number", where)
        if not math.isfinite(x) or abs(x) > 1e300:
            raise self.error(f"number out of range in {name}(...)", where)
        if name == "exp" and abs(x) > 700:
            raise self.error("number out of range: exp of a number beyond +-700", where)
        if name in ("log", "sqrt") and x < 0:
            raise self.error(f"{name} of a negative number is not a real number", where)
        if name == "log" and value == 0:
            raise self.error("log(0) is undefined", where)

    def _sum(self, args_node, scope):
        var_tok, low_node, _, high_node, body = args_node.children
        var = str(var_tok)
        if scope.bound:
            raise self.error("a sum inside another sum is not supported", var_tok)
        if var == "n" or var in self.declared:
            raise self.error(f"the sum's variable {var!r} is already a name; pick another letter", var_tok)
        if len(var) > MAX_NAME_CHARS or keyword.iskeyword(var) or hasattr(builtins, var):
            raise self.error(f"{var!r} cannot be a sum's variable", var_tok)
        bound_scope = _Scope(scope.kind if scope.kind != "equation" else "equation", state=scope.state)
        low = rebuild(self._expr(low_node, bound_scope))
        high = rebuild(self._expr(high_node, bound_scope))
        for limit, where in ((low, low_node), (high, high_node)):
            if not (limit.is_Integer or (limit - n).is_Integer):
                raise self.error("a sum's limits are whole numbers or n plus or minus a whole number", where)
        if high.is_Integer:
            raise self.error(
                "a sum's upper limit is n or n minus a whole number: sum(i=0..n, x_i)", high_node
            )
        if (high - n).is_positive:
            raise self.error("a sum cannot reach beyond step n", high_node)
        if low.is_Integer and low < 0:
            raise self.error("a sum starts at 0 or later", low_node)
        for limit, where in ((low, low_node), (high, high_node)):
            if (limit - n).is_Integer and limit - n < -MAX_LAG:
                raise self.error(f"a sum's limit reaches too far back (the limit is n-{MAX_LAG})", where)
        if (high - low).subs(n, 0) < -1:
            raise self.error(
                f"the range {var}={low}..{high} runs backwards at the first step (n = 0)", low_node
            )
        symbol = sympy.Symbol(var, integer=True)
        inner = _Scope(
            scope.kind,
            state=scope.state,
            bound={**scope.bound, var: (symbol, low, high)},
            same_step=scope.same_step,
        )
        return sympy.Sum(self._expr(body, inner), (symbol, low, high))

    def _e_range_arguments(self, node, scope):  # only reachable through _call
        raise self.error("a range belongs inside sum(...)", node)

    def _e_arguments(self, node, scope):
        raise self.error("unexpected argument list", node)


def _first_zero_step(expr: sympy.Expr) -> int | None:
    """The first step n >= 0 at which ``expr``, a polynomial in n, is zero (None if none or unknown)."""
    if expr.free_symbols != {n}:
        return None
    try:
        poly = sympy.Poly(expr, n)
        if poly.degree() > 8 or not (poly.domain.is_ZZ or poly.domain.is_QQ):
            return None
        steps = [int(r) for r in poly.ground_roots() if r.is_integer and r >= 0]
    except (sympy.PolynomialError, sympy.polys.polyerrors.DomainError):
        return None
    return min(steps, default=None)


def _chain(node: lark.Tree) -> tuple[lark.Tree, list[tuple[str, lark.Tree]]]:
    """``a + b - c`` -> ``(a, [("add", b), ("sub", c)])``, walking the left spine in a loop."""
    family = _CHAINS[node.data]
    links = []
    while isinstance(node, lark.Tree) and _CHAINS.get(node.data) == family:
        left, _, right = node.children
        links.append((node.data, right))
        node = left
    links.reverse()
    return node, links


def _negate(expr: sympy.Expr) -> sympy.Expr:
    if expr.is_Number:
        return -expr
    return sympy.Mul(sympy.Integer(-1), expr, evaluate=False)


def _mentions_state(expr: sympy.Expr, states) -> bool:
    return any(ref.base.label.name in states for ref in expr.atoms(sympy.Indexed))


def _block_names(expr: sympy.Expr) -> set[str]:
    return {c.block for c in expr.atoms(BlockCall)}


def _suggest(name: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
