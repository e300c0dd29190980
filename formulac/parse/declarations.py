"""The first pass over a file: what every name is, before any expression is read.

Names may be used above the line that declares them, so the statements are read twice: here,
for states (equation heads), constants, parameters, symbols (with their search domains),
``output`` and ``shared``; then :mod:`.expressions` builds the values. This module also holds
the rules for names and indices, and how a misspelt name is recognised.
"""

from __future__ import annotations

import builtins
import keyword
import re
from dataclasses import dataclass

import lark

from ..ir import CONSTRAINTS, ELEMENTWISE, default_output
from ..limits import MAX_LAG, MAX_NAME_CHARS, MAX_STATES, MAX_STREAMS
from .syntax import Source, too_many_states

__all__ = ["RESERVED_WORDS", "Index", "Declarations", "split", "split_pair", "check_name"]

#: Words of the language that cannot name anything.
RESERVED_WORDS = (
    frozenset(
        {"param", "symbol", "output", "shared", "sum", "cat", "n", "stream", "identity", "onehot", "dynamic"}
    )
    | frozenset(ELEMENTWISE)
    | frozenset(CONSTRAINTS)
)

_INDEX = re.compile(
    r"^\s*(?:(?P<var>[A-Za-z][A-Za-z0-9]*)\s*(?:(?P<sign>[+-])\s*(?P<off>[0-9]+))?|(?P<abs>[+-]?\s*[0-9]+))\s*$"
)


@dataclass(frozen=True)
class Index:
    """A parsed subscript: ``var + offset`` (var None for an absolute index)."""

    var: str | None
    offset: int


_PAIR = re.compile(r"^[<{]\s*(?P<first>[^,<>{}]*?)\s*,\s*(?P<second>[^,<>{}]*?)\s*[>}]$")


def split_pair(source: Source, tok: lark.Token) -> tuple[str, str, str] | None:
    """``w_<n,i>`` -> ``("w", "n", "i")`` (the two indices as written); None for one index."""
    base, _, sub = str(tok).partition("_")
    m = _PAIR.match(sub)
    if m is None:
        return None
    return base, m.group("first"), m.group("second")


def split(source: Source, tok: lark.Token) -> tuple[str, Index]:
    """``x_<n-1>`` -> ``("x", Index("n", -1))``; ``x_0`` -> ``("x", Index(None, 0))``."""
    text = str(tok)
    base, _, sub = text.partition("_")
    inner = sub[1:-1] if sub[:1] in "<{" else sub
    m = _INDEX.match(inner)
    if not m and "," in inner:
        raise source.error(
            f"{text} has two indices; only a pair parameter (param {base}_<n,i> = ...) takes two", tok
        )
    if not m:
        raise source.error(f"cannot read the index of {text}; write x_n, x_0, x_<n+1> or x_<n-2>", tok)
    if m.group("abs") is not None:
        index = Index(None, int(m.group("abs").replace(" ", "")))
    else:
        offset = int(m.group("off") or 0) * (-1 if m.group("sign") == "-" else 1)
        if sub[:1] not in "<{" and not sub.isdigit() and m.group("off"):
            raise source.error(f"write a shifted index in brackets: {base}_<{inner}>", tok)
        index = Index(m.group("var"), offset)
    if index.offset < -MAX_LAG:
        raise source.error(f"{text} reaches too far back (the limit is {MAX_LAG} steps)", tok)
    return base, index


def check_name(source: Source, name: str, kind: str, tok, lowercase: bool | None) -> None:
    """A name may name a ``kind``: not too long, not a keyword, builtin or reserved word;
    ``lowercase`` True or None: not capitalised (None: the message says capitals are blocks)."""
    if len(name) > MAX_NAME_CHARS:
        raise source.error(
            f"{kind} name too long ({len(name)} characters; the limit is {MAX_NAME_CHARS})", tok
        )
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        raise source.error(f"{name!r} is a Python keyword and cannot name a {kind}", tok)
    if name in RESERVED_WORDS:
        raise source.error(f"{name!r} is a reserved word of the language and cannot name a {kind}", tok)
    if hasattr(builtins, name):
        raise source.error(f"{name!r} is a Python builtin and cannot name a {kind}", tok)
    if lowercase is True and name[:1].isupper():
        raise source.error(
            f"capitalised names are blocks; a {kind} name starts with a lower-case letter", tok
        )
    if lowercase is None and name[:1].isupper():
        raise source.error(f"capitalised names are blocks and cannot name a {kind}", tok)


class Declarations(lark.visitors.Interpreter):
    """Pass 1: every declared name with its kind and token, and the statements to build.

    One method per statement rule of the grammar. The output state is resolved once, after all
    statements are read (:meth:`resolve_output`).
    """

    def __init__(self, source: Source):
        self.source = source
        self.kinds: dict[str, tuple[str, lark.Token]] = {}  # name -> (kind, declaring token)
        self.state_heads: dict[str, lark.Token] = {}
        # equations and initial conditions in file order: (head, state, index, value)
        self.heads: list[tuple[lark.Token, str, Index, lark.Tree]] = []
        self.constant_nodes: dict[str, tuple[lark.Token, lark.Tree]] = {}
        self.param_nodes: dict[str, tuple[lark.Token, bool, lark.Tree]] = {}
        self.pair_variables: dict[str, str] = {}  # pair parameter -> its second index (w_<n,i>: i)
        self.symbol_names: list[str] = []
        self.domain_nodes: dict[str, lark.Tree] = {}
        self.shared_blocks: dict[str, lark.Token] = {}
        self.streams: dict[str, tuple[int, lark.Token]] = {}  # stream state -> (k, its token)
        self.shapes: dict[str, tuple[tuple[int, ...], lark.Tree]] = {}  # shaped parameter -> shape
        self.output_token: lark.Token | None = None
        self.output_name: str | None = None
        self._slips: dict[str, list[str]] | None = None

    def read(self, tree: lark.Tree) -> Declarations:
        self.visit_children(tree)
        if not self.state_heads:
            where = next((s for s in tree.children if isinstance(s, lark.Tree)), (1, 1))
            raise self.source.error("no equation: a formula needs a line like x_<n+1> = x_n + F(x_n)", where)
        self.output_name = self.resolve_output()
        return self

    def kind_of(self, name: str) -> str | None:
        entry = self.kinds.get(name)
        return entry[0] if entry else None

    # -- statements ---------------------------------------------------------------------------
    def equation(self, st: lark.Tree) -> None:
        head, expr = st.children
        base, index = split(self.source, head)
        check_name(self.source, base, "state", head, lowercase=True)
        if index.var is None:
            if index.offset > 0:
                raise self.source.error(
                    f"{head} sets a state after the start; initial conditions are x_0, x_<-1>, ...", head
                )
            self.heads.append((head, base, index, expr))
            return
        if index.var != "n" or index.offset != 1:
            raise self.source.error(f"an equation defines the next state: write {base}_<n+1> = ...", head)
        if base in self.state_heads:
            first = self.state_heads[base]
            raise self.source.error(
                f"duplicate equation for {base} (first defined on line {first.line})", head
            )
        self._claim(base, "state", head)
        self.state_heads[base] = head
        if len(self.state_heads) > MAX_STATES:
            raise self.source.error(too_many_states(), head)
        self.heads.append((head, base, index, expr))

    def constant(self, st: lark.Tree) -> None:
        tok, expr = st.children
        check_name(self.source, str(tok), "constant", tok, lowercase=None)
        self._claim(str(tok), "constant", tok)
        self.constant_nodes[str(tok)] = (tok, expr)

    def param(self, st: lark.Tree) -> None:
        tok, *shape, expr = st.children
        if shape:
            self._shape(tok, shape[0])
        per_step = tok.type == "SUBSCRIPTED"
        pair = split_pair(self.source, tok) if per_step else None
        if pair is not None:
            base, first, second = pair
            if first != "n" or not re.fullmatch(r"[a-z][A-Za-z0-9]*", second) or second == "n":
                raise self.source.error(
                    f"a pair parameter is declared with the step and a new index letter: {base}_<n,i>", tok
                )
            check_name(self.source, second, "index", tok, lowercase=True)
            self.pair_variables[base] = second
        elif per_step:
            base, index = split(self.source, tok)
            if index != Index("n", 0):
                raise self.source.error(f"a per-step parameter is declared as {base}_n", tok)
        else:
            base = str(tok)
        check_name(self.source, base, "parameter", tok, lowercase=None)
        self._claim(base, "parameter", tok)
        self.param_nodes[base] = (tok, per_step, expr)

    def _shape(self, tok, node: lark.Tree) -> None:
        """``param H_n[4,4]``: a per-step vector or square matrix over the streams."""
        if tok.type != "SUBSCRIPTED":
            raise self.source.error(f"a vector or matrix parameter is one per step: param {tok}_n[...]", tok)
        sizes = tuple(_count(self.source, c) for c in node.children if c.type == "NUMBER")
        if len(sizes) == 2 and sizes[0] != sizes[1]:
            raise self.source.error(
                f"a matrix parameter mixes k streams into k: its shape is [k,k], not [{sizes[0]},{sizes[1]}]",
                node,
            )
        self.shapes[str(tok).partition("_")[0]] = (sizes, node)

    def stream_states(self, st: lark.Tree) -> None:
        tok, _, count, _ = st.children
        check_name(self.source, str(tok), "stream", tok, lowercase=True)
        if str(tok) in self.streams:
            raise self.source.error(
                f"stream {tok} is already declared on line {self.streams[str(tok)][1].line}", tok
            )
        self.streams[str(tok)] = (_count(self.source, count), tok)

    def symbols(self, st: lark.Tree) -> None:
        for item in st.children:
            tok, *domain = item.children
            name = str(tok)
            check_name(self.source, name, "symbol", tok, lowercase=None)
            self._claim(name, "symbol", tok, with_domain=bool(domain))
            self.symbol_names.append(name)
            if domain:
                self.domain_nodes[name] = domain[-1]

    def output(self, st: lark.Tree) -> None:
        (tok,) = st.children
        if self.output_token is not None:
            raise self.source.error(f"the output is already declared on line {self.output_token.line}", tok)
        self.output_token = tok

    def shared(self, st: lark.Tree) -> None:
        for tok in st.children:
            if not str(tok)[:1].isupper():
                raise self.source.error(f"only blocks (capitalised names) can be shared, not {tok}", tok)
            check_name(self.source, str(tok), "block", tok, lowercase=False)
            self.shared_blocks[str(tok)] = tok

    # -- rules across statements -----------------------------------------------------------------
    def _claim(self, name: str, kind: str, tok, with_domain: bool = False) -> None:
        if name in self.kinds:
            other_kind, other = self.kinds[name]
            if kind != other_kind and (with_domain or name in self.domain_nodes):
                raise self.source.error(
                    f"{name} is already declared as a {other_kind} on line {other.line}; only a free "
                    "symbol can have a domain",
                    tok,
                )
            raise self.source.error(f"{name} is already declared as a {other_kind} on line {other.line}", tok)
        self.kinds[name] = (kind, tok)

    def resolve_output(self) -> str:
        """The output state: declared with ``output NAME``, else :func:`~formulac.ir.default_output`."""
        if self.output_token is not None:
            name = str(self.output_token)
            if name not in self.state_heads:
                known = ", ".join(self.state_heads)
                raise self.source.error(
                    f"output {name} is not a state (the states are {known})", self.output_token
                )
            return name
        output = default_output(list(self.state_heads))
        if output is None:
            first = next(iter(self.state_heads.values()))
            raise self.source.error("several states and none is x: name the output with `output NAME`", first)
        return output

    def slip_of(self, name: str) -> str | None:
        """A declared name (or a function of the language) that ``name`` looks like a typo of."""
        if len(name) < 4:
            return None
        if self._slips is None:
            self._slips = {}
            for known in list(self.kinds) + sorted(ELEMENTWISE):
                if len(known) >= 4 and known[:1].islower():
                    for variant in _deletions(known) | {known}:
                        self._slips.setdefault(variant, []).append(known)
        candidates = {c for v in _deletions(name) | {name} for c in self._slips.get(v, ())}
        return next((c for c in sorted(candidates) if _one_slip(name, c)), None)


def _count(source: Source, tok: lark.Token) -> int:
    """A number of streams: a whole number from 1 to :data:`~formulac.limits.MAX_STREAMS`."""
    text = str(tok)
    if not text.isdigit() or not 1 <= int(text) <= MAX_STREAMS:
        raise source.error(f"a number of streams is a whole number from 1 to {MAX_STREAMS}, not {text}", tok)
    return int(text)


def _deletions(word: str) -> set[str]:
    return {word[:i] + word[i + 1 :] for i in range(len(word))}


def _one_slip(a: str, b: str) -> bool:
    """One letter inserted, left out, changed, or two neighbours swapped; differing digits are
    deliberate (``a1`` and ``a2`` are two names)."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        changed = {a[i] for i in diff} | {b[i] for i in diff}
        if any(c.isdigit() for c in changed):
            return False
        if len(diff) == 1:
            return True
        i, j = diff[0], diff[-1]
        return len(diff) == 2 and j == i + 1 and a[i] == b[j] and a[j] == b[i]
    short, long = (a, b) if len(a) < len(b) else (b, a)
    i = next((k for k in range(len(short)) if short[k] != long[k]), len(short))
    return long[:i] + long[i + 1 :] == short and not long[i].isdigit()
