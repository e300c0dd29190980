"""The compact stream form (``stream h[4]``, ``param H_n[4,4]``, ``H_n @ h_n``) -> plain states.

A stream state holds k tensors (hyper-connections' residual streams); vector and matrix
parameters hold one learned number per stream or pair of streams at every step. This module
gives every sub-expression its kind (a number, one tensor, a vector or matrix of numbers, k
streams), refuses what does not fit (a block reading k streams, a k x k matrix applied to m
streams, a stream state assigned one tensor), and writes the formula twice:

- **lowered**: stream state ``h`` becomes the states ``h0 .. h{k-1}``, ``H_n`` the per-step
  parameters ``H00_n, H01_n, ...`` (``sinkhorn(H_n)``: ``sinkhornH00_n, ...``, whose initial
  values are the constraint's of the initial logits), so that every analysis (block weights,
  roots, ``learned``) reads an ordinary formula;
- **compact, typed**: ``@`` and ``*`` become :class:`~formulac.ir.Mix`, :class:`~formulac.ir.Read`,
  :class:`~formulac.ir.Spread` and :class:`~formulac.ir.Scale`, which code generation writes as
  one ``einsum`` each over the stacked streams (:attr:`~formulac.ir.Recurrence.compact`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import lark
import mpmath
import sympy

from ..ir import (
    CONSTRAINTS,
    ELEMENTWISE,
    BlockCall,
    Equation,
    Mix,
    OneHot,
    Param,
    Read,
    Recurrence,
    Scale,
    Spread,
    StateRef,
    StreamIdentity,
    StreamOp,
    Streams,
    StreamSum,
    entry_name,
    n,
    rebuild,
    rec_expr,
    references,
    shaped_initial,
    sinkhorn_matrix,
    softmax_vector,
    state,
)
from .syntax import Source
from .values import check_coefficients, check_result

__all__ = ["lower", "shaped_param"]

_DIGITS = 30  # digits of a constrained entry's initial value (a Float in the lowered form)


def shaped_param(name: str, init: sympy.Expr, shape: tuple[int, ...], source: Source, where) -> Param:
    """``param H_n[k,k] = identity`` / ``param pre_n[k] = onehot(j)`` / ``= NUMBER``."""
    if isinstance(init, StreamIdentity) and len(shape) != 2:
        raise source.error(f"identity is the initial value of a matrix parameter ({name}_n[k,k])", where)
    if isinstance(init, OneHot):
        if len(shape) != 1:
            raise source.error(f"onehot(j) is the initial value of a vector parameter ({name}_n[k])", where)
        if int(init.args[0]) >= shape[0]:
            raise source.error(
                f"onehot({init.args[0]}) is outside {name}_n[{shape[0]}] (entries 0 to {shape[0] - 1})", where
            )
    elif not isinstance(init, StreamIdentity) and not init.is_number:
        raise source.error(f"the initial value of {name} is identity, onehot(j) or a number", where)
    elif init.is_number:  # a double, as for a scalar parameter: -1e400 would start at -inf
        check_result(source, init, where)
        check_coefficients(source, init, where)
    return Param(name, init, per_step=True, shape=shape)


@dataclass(frozen=True)
class _Value:
    """A lowered sub-expression: its kind, its entries (one, k, or k x k) and its typed form."""

    kind: str  # "number", "tensor", "vector", "matrix" or "stream"
    entries: object  # sympy.Expr, list of them, or list of lists
    typed: sympy.Expr
    param: str | None = None  # the vector or matrix parameter it is (where its errors point)

    @property
    def size(self) -> int | None:
        return len(self.entries) if self.kind in ("vector", "matrix", "stream") else None


_WORDS = {
    "number": "a number",
    "tensor": "one tensor",
    "vector": "a vector parameter",
    "matrix": "a matrix parameter",
    "stream": "a stream state",
}


class _Lowering:
    def __init__(self, compact: Recurrence, source: Source, nodes: dict, declared: set[str]):
        self.rec = compact
        self.source = source
        self.nodes = nodes
        self.declared = declared
        self.params: dict[str, Param] = {}  # the lowered per-step parameters, in order of first use
        self.where = None

    def error(self, message: str, param: str | None = None):
        """An error at the equation, or at its first reading of the vector or matrix ``param``."""
        return self.source.error(message, self._reading(param) or self.where)

    def _reading(self, param: str | None) -> lark.Token | None:
        if param is None or not isinstance(self.where, lark.Tree):
            return None
        spelled = re.compile(rf"{re.escape(param)}_(?:n|<\s*n\s*>)")
        return next(
            (t for t in self.where.scan_values(lambda v: isinstance(v, lark.Token)) if spelled.fullmatch(t)),
            None,
        )

    # -- references -------------------------------------------------------------------------------
    def _indexed(self, expr: sympy.Indexed) -> _Value:
        ref = StateRef.of(expr)
        if ref.name in self.rec.streams:
            if ref.offset not in (0, 1):
                raise self.error(
                    f"a stream state is read at n (or at n+1 by a later equation), not as {rec_expr(expr)}"
                )
            k = self.rec.streams[ref.name]
            return _Value("stream", [state(f"{ref.name}{j}", ref.index) for j in range(k)], expr)
        p = self.rec.params.get(ref.name)
        if p is not None and p.shape is not None:
            return self._shaped(p, expr, None)
        tensor = ref.name in self.rec.states
        return _Value("tensor" if tensor else "number", expr, expr)

    def _shaped(self, p: Param, expr: sympy.Expr, constraint: str | None) -> _Value:
        """The entries of a vector or matrix parameter (or of its constraint) as lowered parameters."""
        initial = shaped_initial(p.init, p.shape)
        # an input-dependent parameter's entries are its static part's, which is its value at the
        # start (the map starts at 0), so a constraint's initial entries are the static part's too
        if constraint is not None:
            with mpmath.workdps(_DIGITS + 10):
                numbers = (
                    [[mpmath.mpf(str(sympy.Float(v, _DIGITS + 10))) for v in row] for row in initial]
                    if len(p.shape) == 2
                    else [mpmath.mpf(str(sympy.Float(v, _DIGITS + 10))) for v in initial]
                )
                if constraint == "sinkhorn":
                    if len(p.shape) != 2:
                        raise self.error(
                            f"sinkhorn(...) makes a square matrix doubly stochastic; {p.name} is a vector",
                            p.name,
                        )
                    values = sinkhorn_matrix(numbers, exp=mpmath.exp)
                elif len(p.shape) == 2:
                    values = [softmax_vector(row, exp=mpmath.exp) for row in numbers]
                else:
                    values = softmax_vector(numbers, exp=mpmath.exp)
            initial = _nested(values, lambda v: sympy.Float(mpmath.nstr(v, _DIGITS), _DIGITS))

        def entry(index: tuple[int, ...], init: sympy.Expr) -> sympy.Expr:
            name = entry_name(p.name, index, constraint)
            if name in self.declared:
                raise self.error(
                    f"{name} names entry {index} of {constraint + '(' if constraint else ''}{p.name}"
                    f"{')' if constraint else ''} in the lowered formula; rename the other {name}"
                )
            self.params.setdefault(name, Param(name, init, per_step=True, entry=(p.name, constraint, index)))
            return sympy.IndexedBase(name)[n]

        if len(p.shape) == 1:
            return _Value("vector", [entry((i,), v) for i, v in enumerate(initial)], expr, p.name)
        rows = [[entry((i, j), v) for j, v in enumerate(row)] for i, row in enumerate(initial)]
        return _Value("matrix", rows, expr, p.name)

    # -- expressions ------------------------------------------------------------------------------
    def lower(self, expr: sympy.Expr) -> _Value:
        if isinstance(expr, sympy.Indexed):
            return self._indexed(expr)
        if isinstance(expr, (sympy.Symbol, sympy.Number)) or not expr.args:
            return _Value("number", expr, expr)
        if isinstance(expr, sympy.Add):
            return self._add(expr)
        if isinstance(expr, sympy.Mul):
            values = [self.lower(a) for a in expr.args]
            result = values[0]
            for v in values[1:]:
                result = self._times(result, v)
            return result
        if isinstance(expr, sympy.Pow):
            base, exponent = self.lower(expr.args[0]), self.lower(expr.args[1])
            if exponent.kind != "number" or base.kind == "stream":
                raise self.error("a power's exponent is a number, and its base not a stream state")
            typed = sympy.Pow(base.typed, exponent.typed, evaluate=False)
            return _Value(base.kind, _nested(base.entries, lambda e: sympy.Pow(e, exponent.entries)), typed)
        if isinstance(expr, Mix):
            return self._matmul(*(self.lower(a) for a in expr.args))
        if isinstance(expr, StreamSum):
            (inner,) = (self.lower(a) for a in expr.args)
            if inner.kind != "stream":
                raise self.error(f"sum(...) adds the streams of a stream state, not {_WORDS[inner.kind]}")
            return _Value("tensor", sympy.Add(*inner.entries, evaluate=False), StreamSum(inner.typed))
        if isinstance(expr, tuple(CONSTRAINTS.values())):
            (argument,) = expr.args
            p = self.rec.params[StateRef.of(argument).name]
            constraint = next(name for name, cls in CONSTRAINTS.items() if isinstance(expr, cls))
            value = self._shaped(p, argument, constraint)
            return replace(value, typed=expr)
        if isinstance(expr, BlockCall):
            argument = self.lower(expr.argument)
            if argument.kind == "stream":
                raise self.error(
                    f"block {expr.block} reads one tensor, not {argument.size} streams: "
                    f"combine them first, as in {expr.block}(pre_n @ h_n)"
                )
            if argument.kind in ("vector", "matrix"):
                raise self.error(f"block {expr.block} reads states, not {_WORDS[argument.kind]}")
            lowered = BlockCall(expr.args[0], expr.step, argument.entries)
            return _Value("tensor", lowered, BlockCall(expr.args[0], expr.step, argument.typed))
        if isinstance(expr, sympy.Function) and type(expr) in ELEMENTWISE.values() and len(expr.args) == 1:
            (inner,) = (self.lower(a) for a in expr.args)
            if inner.kind == "stream" and type(expr).__name__ == "norm":
                raise self.error("norm(...) of a stream state is not supported; normalise one tensor")
            function = type(expr)
            return _Value(
                inner.kind,
                _nested(inner.entries, lambda e: function(e, evaluate=False)),
                function(inner.typed, evaluate=False),
            )
        if isinstance(expr, StreamOp) or any(self._has_streams(a) for a in expr.args):
            raise self.error(
                f"{type(expr).__name__.lower()}(...) does not take stream states or vector parameters"
            )
        tensor = next(references(expr, self.rec.states), None) is not None or bool(expr.atoms(BlockCall))
        return _Value("tensor" if tensor else "number", expr, expr)

    def _has_streams(self, expr: sympy.Expr) -> bool:
        shaped = {name for name, p in self.rec.params.items() if p.shape is not None}
        return next(references(expr, set(self.rec.streams) | shaped), None) is not None

    def _mixed_dynamic(self, values: list[_Value]) -> None:
        """Refuse combining an input-dependent coefficient (one value per token) with a static
        vector or matrix: their entries would not line up."""
        static_shaped = any(v.kind in ("vector", "matrix") and not self._is_dynamic(v) for v in values)
        # a dynamic vector, matrix or number (a gate) is one value per token: its shape is not k's
        # (a tensor computed with one, such as F(pre_n @ h_n), is one tensor like any other)
        if static_shaped and any(
            v.kind in ("vector", "matrix", "number") and self._is_dynamic(v) for v in values
        ):
            raise self.error(
                "an input-dependent parameter (dynamic(...)) does not combine with a static vector or "
                "matrix parameter: give both a dynamic part, or neither"
            )

    def _is_dynamic(self, value: _Value) -> bool:
        dynamic = {name for name, p in self.rec.params.items() if p.dynamic is not None}
        return next(references(value.typed, dynamic), None) is not None

    def _add(self, expr: sympy.Add) -> _Value:
        values = [self.lower(a) for a in expr.args]
        self._mixed_dynamic(values)
        kinds = {v.kind for v in values}
        shaped = kinds & {"vector", "matrix", "stream"}
        typed = sympy.Add(*(v.typed for v in values), evaluate=False)
        if not shaped:
            entries = sympy.Add(*(v.entries for v in values), evaluate=False)
            return _Value("tensor" if "tensor" in kinds else "number", entries, typed)
        if len(shaped) > 1 or "tensor" in kinds or len({v.size for v in values if v.size}) > 1:
            found = " and ".join(sorted({_described(v) for v in values}))
            raise self.error(f"cannot add {found}: the terms of a sum are all streams of one size, or none")
        (kind,) = shaped
        size = next(v.size for v in values if v.size)
        entries = _sum_entries([v.entries if v.size else _broadcast(v.entries, kind, size) for v in values])
        if "number" in kinds and kind == "stream":
            raise self.error(
                "cannot add a number to a stream state: scale the streams or write a tensor per stream"
            )
        return _Value(kind, entries, typed)

    def _times(self, a: _Value, b: _Value) -> _Value:
        self._mixed_dynamic([a, b])
        kinds = (a.kind, b.kind)
        if "number" in kinds:
            other, number = (b, a) if a.kind == "number" else (a, b)
            typed = sympy.Mul(a.typed, b.typed, evaluate=False)
            return _Value(
                other.kind,
                _nested(other.entries, lambda e: sympy.Mul(number.entries, e, evaluate=False)),
                typed,
            )
        if kinds == ("tensor", "tensor"):
            return _Value(
                "tensor",
                sympy.Mul(a.entries, b.entries, evaluate=False),
                sympy.Mul(a.typed, b.typed, evaluate=False),
            )
        if set(kinds) == {"vector"} and a.size == b.size:
            entries = [sympy.Mul(x, y, evaluate=False) for x, y in zip(a.entries, b.entries)]
            return _Value("vector", entries, sympy.Mul(a.typed, b.typed, evaluate=False))
        if set(kinds) == {"vector", "tensor"}:
            v, t = (a, b) if a.kind == "vector" else (b, a)
            return _Value(
                "stream",
                [sympy.Mul(e, t.entries, evaluate=False) for e in v.entries],
                Spread(v.typed, t.typed),
            )
        if set(kinds) == {"vector", "stream"} and a.size == b.size:
            v, s = (a, b) if a.kind == "vector" else (b, a)
            entries = [sympy.Mul(e, x, evaluate=False) for e, x in zip(v.entries, s.entries)]
            return _Value("stream", entries, Scale(v.typed, s.typed))
        hint = " (apply a matrix with @: H_n @ h_n)" if "matrix" in kinds else ""
        matrix = a if a.kind == "matrix" else b if b.kind == "matrix" else None
        raise self.error(f"cannot multiply {_described(a)} by {_described(b)}{hint}", matrix and matrix.param)

    def _matmul(self, a: _Value, b: _Value) -> _Value:
        if a.kind not in ("vector", "matrix") or b.kind != "stream":
            raise self.error(
                f"@ applies a vector or matrix parameter to a stream state (res_n @ h_n), not {_described(a)} "
                f"to {_described(b)}"
            )
        if a.size != b.size:
            shape = f"[{a.size},{a.size}]" if a.kind == "matrix" else f"[{a.size}]"
            raise self.error(
                f"{_described(a)} of shape {shape} cannot be applied to {b.size} streams", a.param
            )
        if a.kind == "vector":
            entries = sympy.Add(
                *(sympy.Mul(v, s, evaluate=False) for v, s in zip(a.entries, b.entries)), evaluate=False
            )
            return _Value("tensor", entries, Read(a.typed, b.typed))
        rows = [
            sympy.Add(*(sympy.Mul(m, s, evaluate=False) for m, s in zip(row, b.entries)), evaluate=False)
            for row in a.entries
        ]
        return _Value("stream", rows, Mix(a.typed, b.typed))

    # -- the formula ------------------------------------------------------------------------------
    def equation(self, eq: Equation) -> tuple[list[Equation], Equation]:
        self.where = self.nodes.get(eq.state, (eq.line, eq.column))
        value = self.lower(eq.display_rhs)
        k = self.rec.streams.get(eq.state)
        if k is not None:
            if value.kind != "stream" or value.size != k:
                raise self.error(f"{eq.state} is {k} streams, but the right side is {_described(value)}")
            lowered = [
                Equation(f"{eq.state}{j}", rebuild(e), e, eq.line, eq.column)
                for j, e in enumerate(value.entries)
            ]
        else:
            if value.kind not in ("tensor", "number"):
                stream = next(iter(self.rec.streams))
                hint = f": add the streams, as in sum({stream}_<n+1>)" if value.kind == "stream" else ""
                raise self.error(f"{eq.state} is one tensor, but the right side is {_described(value)}{hint}")
            lowered = [Equation(eq.state, rebuild(value.entries), value.entries, eq.line, eq.column)]
        typed = Equation(eq.state, rebuild(value.typed), value.typed, eq.line, eq.column)
        return lowered, typed


def lower(
    compact: Recurrence, source: Source, nodes: dict, stream_tokens: dict, declared: set[str]
) -> Recurrence:
    """The lowered formula of a compact stream formula, with the typed compact form attached.
    ``nodes``: state -> the tree of its equation (where errors point); ``stream_tokens``:
    stream state -> its declaration token; ``declared``: every name the file declares."""
    for name, tok in stream_tokens.items():
        if name not in compact.states:
            raise source.error(f"stream {name} has no equation: write {name}_<n+1> = ...", tok)
        if name == compact.output:
            raise source.error(
                f"the output is one tensor, not the stream state {name}: add x_<n+1> = sum({name}_<n+1>)", tok
            )
        for j in range(compact.streams[name]):
            if f"{name}{j}" in declared:
                raise source.error(
                    f"{name}{j} names stream {j} of {name} in the lowered formula; rename it", tok
                )
    lowering = _Lowering(compact, source, nodes, declared)
    equations, typed = [], []
    for eq in compact.equations:
        lowered, compact_eq = lowering.equation(eq)
        equations += lowered
        typed.append(compact_eq)
    initial = {}
    compact_initial = {}
    for (name, index), value in compact.initial.items():
        if name in compact.streams:
            if index != 0:
                raise source.error(f"a stream state starts at {name}_0 only", nodes.get(name, (1, 1)))
            initial.update({(f"{name}{j}", 0): value for j in range(compact.streams[name])})
            compact_initial[(name, 0)] = Streams(value, compact.streams[name])
        else:
            initial[(name, index)] = value
            compact_initial[(name, index)] = value
    for name, k in compact.streams.items():
        compact_initial.setdefault((name, 0), Streams(sympy.Integer(0), k))
    used = {name for name, p in compact.params.items() if p.shape is None}
    params = {name: p for name, p in compact.params.items() if name in used}
    params.update(lowering.params)
    typed_rec = replace(compact, equations=tuple(typed), initial=compact_initial, resolved=None)
    display = {
        key: v
        for key, v in compact.display_values.items()
        if not (isinstance(key, tuple) and key[0] in compact.streams)
    }
    return replace(
        compact,
        equations=tuple(equations),
        params=params,
        initial=initial,
        streams={},
        display_values=display,
        compact=typed_rec,
    )


def _nested(entries, function):
    if isinstance(entries, list):
        return [_nested(e, function) for e in entries]
    return function(entries)


def _broadcast(entry: sympy.Expr, kind: str, size: int):
    return [[entry] * size for _ in range(size)] if kind == "matrix" else [entry] * size


def _sum_entries(entries: list):
    if isinstance(entries[0], list):
        return [_sum_entries([e[i] for e in entries]) for i in range(len(entries[0]))]
    return sympy.Add(*entries, evaluate=False)


def _described(value: _Value) -> str:
    if value.kind == "stream":
        return f"{value.size} streams"
    if value.kind in ("vector", "matrix"):
        return f"{_WORDS[value.kind]} of size {value.size}"
    return _WORDS[value.kind]
