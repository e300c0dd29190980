"""The second pass: expression trees -> SymPy, one small method per grammar rule (Lark's
``Interpreter`` style), with the checks on names, indices and causality at each token.

Expressions are built with ``evaluate=False``, so that they keep the user's term order for
printing (``Equation.display_rhs``); :func:`~formulac.ir.rebuild` gives the canonical form.
A lower-case name that nothing declares becomes a free symbol, unless it looks like a typo of
a declared name (:meth:`~.declarations.Declarations.slip_of`).
"""

from __future__ import annotations

import builtins
import difflib
import keyword
from dataclasses import dataclass, field

import lark
import sympy

from ..ir import (
    CONSTRAINTS,
    DEFAULT_DYNAMIC_MAP,
    DYNAMIC_MAPS,
    ELEMENTWISE,
    BlockCall,
    Concat,
    Dynamic,
    Mix,
    OneHot,
    StateRef,
    StreamIdentity,
    StreamSum,
    n,
    rebuild,
    rec_expr,
    references,
    state,
)
from ..limits import MAX_EXPONENT, MAX_LAG, MAX_NAME_CHARS
from .declarations import Declarations, Index, check_name, split, split_pair
from .syntax import Source, chain
from .values import check_argument, check_divisor, check_number, check_power

__all__ = ["Scope", "Expressions"]

#: Where an expression stands, and so what it may read.
#: equation: states relative to n, parameters, blocks;  initial: the input x_0;
#: constant: n and other constants;  param, domain: numbers and constants only.
_FREE_SYMBOLS_ALLOWED = frozenset({"equation", "initial", "constant"})


@dataclass
class Scope:
    """What an expression may refer to while it is being built."""

    kind: str  # "equation", "initial", "constant", "param" or "domain"
    state: str | None = None  # the state an equation defines
    bound: dict[str, tuple[sympy.Symbol, sympy.Expr, sympy.Expr]] = field(default_factory=dict)
    same_step: set[str] = field(default_factory=set)  # states read at n+1


class Expressions(lark.visitors.Interpreter):
    """Builds the SymPy form of expression trees, in a :class:`Scope`."""

    def __init__(self, names: Declarations, source: Source):
        self.names = names
        self.source = source
        self.scope = Scope("constant")
        self.implicit: dict[str, lark.Token] = {}  # free symbols used without a declaration
        self.sum_variables: dict[str, lark.Token] = {}
        self.in_iverson = False  # inside [a == b], where % is allowed
        self.sum_high: lark.Tree | None = None  # the upper limit of the sum being read
        self.values: dict[sympy.Symbol, sympy.Expr] = {}  # the constants, once resolved
        # pair parameter -> (low, high, token) of the sum it is read in (one range per parameter)
        self.pair_ranges: dict[str, tuple[sympy.Expr, sympy.Expr, lark.Token]] = {}

    def build(self, tree: lark.Tree, scope: Scope) -> sympy.Expr:
        """The expression as written (``evaluate=False``)."""
        outer, self.scope = self.scope, scope
        try:
            return self.visit(tree)
        finally:
            self.scope = outer

    def error(self, message: str, where):
        return self.source.error(message, where)

    def _resolved(self, expr: sympy.Expr) -> sympy.Expr:
        """The canonical value, with the constants written out once they are known."""
        value = rebuild(expr)
        return value.xreplace(self.values) if self.values else value

    # -- numbers and operators ----------------------------------------------------------------
    def number(self, tree):
        (tok,) = tree.children
        text = str(tok)
        exponent = text.lower().partition("e")[2]
        if exponent and abs(int(exponent)) > MAX_EXPONENT:
            raise self.error(f"number out of range: {text}", tok)
        return sympy.Rational(text)

    def add(self, tree):  # also sub: a chain a + b - c is built flat, without recursion
        first, links = chain(tree)
        value = self.visit(first)
        terms = list(value.args) if isinstance(value, sympy.Add) and first.data != "parens" else [value]
        for kind, operand in links:
            term = self.visit(operand)
            terms.append(_negate(term) if kind == "sub" else term)
        return sympy.Add(*terms, evaluate=False)

    sub = add

    def mul(self, tree):  # also div: a chain a*b/c is built flat
        first, links = chain(tree)
        value = self.visit(first)
        factors = list(value.args) if isinstance(value, sympy.Mul) and first.data != "parens" else [value]
        for kind, operand in links:
            factor = self.visit(operand)
            if kind == "div":
                check_divisor(self.source, self._resolved(factor), operand)
            if len(factors) == 1 and factors[0].is_Number and factor.is_Number:
                folded = factors[0] / factor if kind == "div" else factors[0] * factor
                factors[0] = check_number(self.source, folded, operand)
                continue
            if kind == "div":
                factor = sympy.Pow(factor, -1, evaluate=False)
                if factors == [1]:
                    factors = [factor]
                    continue
            factors.append(factor)
        return factors[0] if len(factors) == 1 else sympy.Mul(*factors, evaluate=False)

    div = mul

    def matmul(self, tree):
        """``a @ b``: a matrix or vector parameter applied to a stream state (``H_n @ h_n``,
        ``pre_n @ h_n``); which of the two, and whether the sizes agree, is decided when the
        stream form is lowered (:mod:`.streams`)."""
        left, at, right = tree.children
        if not self.names.streams:
            raise self.error(
                "@ applies a vector or matrix parameter to a stream state (declare: stream h[4])", at
            )
        return Mix(self.visit(left), self.visit(right))

    def parens(self, tree):
        return self.visit(tree.children[1])

    def neg(self, tree):
        return _negate(self.visit(tree.children[1]))

    def pos(self, tree):
        return self.visit(tree.children[1])

    def pow(self, tree):
        a, _, b = tree.children
        base, exponent = self.visit(a), self.visit(b)
        check_power(self.source, self._resolved(base), self._resolved(exponent), tree, b)
        return sympy.Pow(base, exponent, evaluate=False)

    # -- names ------------------------------------------------------------------------------------
    def name(self, tree):
        (tok,) = tree.children
        name = str(tok)
        scope = self.scope
        if name in scope.bound:
            return scope.bound[name][0]
        if name == "n":
            if scope.kind in ("initial", "domain"):
                raise self.error(f"n has no value in {_WHERE[scope.kind]}", tok)
            return n
        kind = self.names.kind_of(name)
        if kind in ("constant", "symbol"):
            return sympy.Symbol(name)
        if kind == "parameter":
            if name in self.names.pair_variables:
                raise self.error(_pair_use(name), tok)
            if self.names.param_nodes[name][1]:
                raise self.error(f"{name} is a per-step parameter: write {name}_n", tok)
            if scope.kind != "equation":
                raise self.error(f"parameter {name} can only be used in equations", tok)
            return sympy.Symbol(name)
        if kind == "state":
            raise self.error(f"state {name} needs an index: {name}_n, {name}_<n-1>, ...", tok)
        if name == "identity" and scope.kind == "param":
            return StreamIdentity()
        if name[:1].isupper():
            raise self.error(f"block {name} must be applied to an argument, e.g. {name}(x_n)", tok)
        if name in ELEMENTWISE or name in ("sum", "cat"):
            raise self.error(f"{name} is a function: write {name}(...)", tok)
        return self._free_symbol(name, tok)

    def _free_symbol(self, name: str, tok) -> sympy.Symbol:
        """An undeclared lower-case name: a free symbol, as if ``symbol NAME`` were written."""
        slip = self.names.slip_of(name)
        if slip is not None:
            what = self.names.kind_of(slip)
            declared = (
                f"the {what} declared on line {self.names.kinds[slip][1].line}" if what else "a function"
            )
            raise self.error(
                f"undefined name {name!r}: did you mean {slip!r} ({declared})? A new name one letter "
                f"away from a declared one is taken for a typo; declare it (symbol {name}) to use both",
                tok,
            )
        if self.scope.kind not in _FREE_SYMBOLS_ALLOWED:
            raise self.error(f"undefined symbol {name!r}: {_WHERE[self.scope.kind]} must be a number", tok)
        check_name(self.source, name, "symbol", tok, lowercase=None)
        self.implicit.setdefault(name, tok)
        return sympy.Symbol(name)

    def subscripted(self, tree):
        (tok,) = tree.children
        scope = self.scope
        if str(tok).partition("_")[0] in self.names.pair_variables:
            return self._pair_parameter(tok)
        base, index = split(self.source, tok)
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
        kind = self.names.kind_of(base)
        if kind == "parameter":
            if not self.names.param_nodes[base][1]:
                raise self.error(f"{base} is one parameter shared by all steps: write {base}, not {tok}", tok)
            if index.var is None or index.offset != 0:
                raise self.error(f"a per-step parameter is read at its own step: {base}_n", tok)
            return sympy.IndexedBase(base)[var]
        if kind == "state":
            return self._state(base, index, var, tok)
        if base[:1].isupper():
            raise self.error(f"block {base} must be applied to an argument, e.g. {base}(x_n)", tok)
        if kind is not None:
            raise self.error(f"{base} is a {kind}, not a state; it takes no index", tok)
        hint = _suggest(base, list(self.names.state_heads))
        raise self.error(f"undefined state {base!r}{hint}: no equation defines {base}_<n+1>", tok)

    def _pair_parameter(self, tok) -> sympy.Indexed:
        """``w_<n,i>`` inside ``sum(i=..., ...)``: the weight of step ``i`` at step ``n``."""
        pair = split_pair(self.source, tok)
        base = str(tok).partition("_")[0]
        scope = self.scope
        if scope.kind != "equation" or not scope.bound:
            raise self.error(_pair_use(base), tok)
        (var, (symbol, low, high)) = next(iter(scope.bound.items()))
        if pair is None or pair[1] != "n" or pair[2] != var:
            raise self.error(f"inside sum({var}=...), the pair parameter is read as {base}_<n,{var}>", tok)
        used = self.pair_ranges.setdefault(base, (low, high, tok))
        if (used[0], used[1]) != (low, high):
            raise self.error(
                f"pair parameter {base} is read in sums over different ranges ({var}={low}..{high} here, "
                f"{used[0]}..{used[1]} on line {used[2].line}); one range gives each step one vector",
                tok,
            )
        return sympy.IndexedBase(base)[n, symbol]

    def iverson(self, tree):
        """``[a == b]``: 1 when the two sides are equal, else 0: a pair parameter's start, or in an
        equation a condition on the step and a sum's variable (``[(n+1) % 2 == 0]``)."""
        left, right = tree.children[1], tree.children[3]
        in_pair_start = self.scope.kind == "param" and self.scope.bound
        if not in_pair_start and self.scope.kind != "equation":
            raise self.error(
                "[a == b] is for the initial value of a pair parameter (param w_<n,i> = [i == n]) "
                "or a condition in an equation ([(n+1) % 2 == 0]*...)",
                tree.children[0],
            )
        outer, self.in_iverson = self.in_iverson, True
        try:
            a, b = rebuild(self.visit(left)), rebuild(self.visit(right))
        finally:
            self.in_iverson = outer
        indices = [n] + [symbol for symbol, _, _ in self.scope.bound.values()]
        for side, node in ((a, left), (b, right)):
            inner = side.args[0] if isinstance(side, sympy.Mod) else side
            if not (inner.is_Integer or any((inner - index).is_Integer for index in indices)):
                raise self.error(
                    "each side of [a == b] is n or a sum's (or the pair's) index plus or minus a whole "
                    "number, or a whole number, optionally % a whole number",
                    node,
                )
        return sympy.KroneckerDelta(a, b)

    def mod(self, tree):
        """``a % m``, the remainder of a step index by a positive whole number (inside ``[a == b]``)."""
        left, _, right = tree.children
        if not self.in_iverson:
            raise self.error(
                "% (the remainder) is only for the sides of a condition [a % m == b]", tree.children[1]
            )
        value, modulus = rebuild(self.visit(left)), rebuild(self.visit(right))
        if not (modulus.is_Integer and modulus > 0):
            raise self.error("the remainder is taken by a positive whole number: (n+1) % 4", right)
        return sympy.Mod(value, modulus)

    def _state(self, base: str, index: Index, var, tok) -> sympy.Indexed:
        scope = self.scope
        if scope.kind not in ("equation", "initial"):
            raise self.error(f"a state ({tok}) cannot appear in {_WHERE[scope.kind]}", tok)
        if scope.kind == "initial":
            output = self.names.output_name
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
            reach = high + index.offset - n
            if reach == 1 and base != scope.state:  # another state, computed earlier in the step
                scope.same_step.add(base)
            elif reach == 1 and high - n == 1:  # the limit reaches too far, not the read
                raise self.error(
                    f"a sum cannot reach beyond step n for {base}, the state this equation defines "
                    f"({tok} reaches {base}_<n+1>)",
                    self.sum_high,
                )
            elif reach.is_positive:
                raise self.error(f"reference to the future: {tok} reaches beyond step n", tok)
            first = low + index.offset - (n if (low - n).is_Integer else 0)
            if first < -MAX_LAG:
                raise self.error(f"{tok} reaches too far back (the limit is {MAX_LAG} steps)", tok)
        return state(base, var + index.offset)

    # -- calls ----------------------------------------------------------------------------------
    def call(self, tree):
        name_tok, args = tree.children
        return self._call(str(name_tok), name_tok, args)

    def subscripted_call(self, tree):
        name_tok, args = tree.children
        base, index = split(self.source, name_tok)
        if not base[:1].isupper() or index != Index("n", 0):
            raise self.error(f"only a block may be written with its step, as {base}_n(...)", name_tok)
        return self._call(base, name_tok, args)

    def arguments(self, tree):  # only reachable through a call
        raise self.error("unexpected argument list", tree)

    def range_arguments(self, tree):
        raise self.error("a range belongs inside sum(...)", tree)

    def _call(self, name: str, name_tok, args: lark.Tree):
        if name[:1].isupper():
            return self._block(name, name_tok, args)
        if name == "sum" and self.names.streams and args.data != "range_arguments":
            if len(args.children) != 1:
                raise self.error("sum(h_n) adds the streams of one stream state", name_tok)
            return StreamSum(self.visit(args.children[0]))
        if name in CONSTRAINTS or name == "onehot":
            return self._stream_function(name, name_tok, args)
        if name == "dynamic":
            return self._dynamic(name_tok, args)
        if name == "sum":
            if args.data != "range_arguments":
                raise self.error("sum takes a range first: sum(i=0..n, x_i)", name_tok)
            return self._sum(args)
        if name == "cat":
            if args.data == "range_arguments" or len(args.children) < 2:
                raise self.error("cat concatenates two or more states: cat(x_n, F(x_n))", name_tok)
            if self.scope.kind != "equation":
                raise self.error("cat can only be used in an equation", name_tok)
            return Concat(*(self.visit(a) for a in args.children))
        if name in ELEMENTWISE:
            if args.data == "range_arguments" or len(args.children) != 1:
                raise self.error(f"{name} takes exactly one argument", name_tok)
            argument = self.visit(args.children[0])
            if name == "norm" and not any(references(argument, self.names.state_heads)):
                # one number (or a coefficient) normalises to 0/0: norm has a value for states only
                raise self.error(
                    f"norm normalises a state over its features: its argument must contain a state "
                    f"(norm(x_n), norm(x_n + F(x_n))), not norm({rec_expr(rebuild(argument))})",
                    name_tok,
                )
            check_argument(self.source, name, rebuild(argument), args)
            return ELEMENTWISE[name](argument, evaluate=False)
        kind = self.names.kind_of(name)
        if kind is not None:
            raise self.error(f"{name} is a {kind}, not a function", name_tok)
        hint = _suggest(name, list(ELEMENTWISE) + ["sum", "cat"])
        known = ", ".join(sorted(ELEMENTWISE))
        raise self.error(
            f"unknown function {name!r}{hint} (known: {known}, sum, cat; blocks are capitalised: F(x_n))",
            name_tok,
        )

    def _dynamic(self, name_tok, args: lark.Tree) -> Dynamic:
        """``dynamic(s_n)``: the input-dependent part of a parameter's initial value, a learned
        map of the state ``s`` at the parameter's step; ``dynamic(s_n, linear)`` names the map
        (:data:`~formulac.ir.DYNAMIC_MAPS`)."""
        if self.scope.kind != "param" or self.scope.bound:
            raise self.error(
                "dynamic(s_n) is the input-dependent part of a per-step parameter's initial value: "
                "param pre_n[4] = onehot(0) + dynamic(h_n)",
                name_tok,
            )
        if args.data == "range_arguments" or len(args.children) not in (1, 2):
            raise self.error(
                "dynamic takes exactly one state at step n, and optionally its map: dynamic(h_n), "
                "dynamic(h_n, linear)",
                name_tok,
            )
        (argument, *named_map) = args.children
        map_arguments = [self._dynamic_map(m) for m in named_map]
        if isinstance(argument, lark.Tree) and argument.data == "subscripted":
            (tok,) = argument.children
            base, index = split(self.source, tok)
            if self.names.kind_of(base) == "state" and index.var == "n" and index.offset == 0:
                return Dynamic(state(base, n), *map_arguments)
        raise self.error(
            "dynamic(...) maps a state at the parameter's step: dynamic(h_n), dynamic(x_n)", argument
        )

    def _dynamic_map(self, node) -> sympy.Symbol:
        """The second argument of ``dynamic(h_n, MAP)``: the name of a map."""
        if isinstance(node, lark.Tree) and node.data == "name" and str(node.children[0]) in DYNAMIC_MAPS:
            return sympy.Symbol(str(node.children[0]))
        known = " or ".join(DYNAMIC_MAPS)
        raise self.error(
            f"the second argument of dynamic(h_n, MAP) names its map: {known} "
            f"({DEFAULT_DYNAMIC_MAP}, the default: {DYNAMIC_MAPS[DEFAULT_DYNAMIC_MAP]})",
            node,
        )

    def _stream_function(self, name: str, name_tok, args: lark.Tree):
        """``sinkhorn(H_n)``, ``softmax(pre_n)`` in equations; ``onehot(j)`` as an initial value."""
        if args.data == "range_arguments" or len(args.children) != 1:
            raise self.error(f"{name} takes exactly one argument", name_tok)
        if name == "onehot":
            if self.scope.kind != "param":
                raise self.error(
                    "onehot(j) is the initial value of a vector parameter: param pre_n[4] = onehot(0)",
                    name_tok,
                )
            entry = rebuild(self.visit(args.children[0]))
            if not (entry.is_Integer and entry >= 0):
                raise self.error("onehot(j) takes the entry j as a whole number from 0", args)
            return OneHot(entry)
        if self.scope.kind != "equation":
            raise self.error(f"{name}(...) constrains a parameter in an equation", name_tok)
        argument = self.visit(args.children[0])
        shaped = isinstance(argument, sympy.Indexed) and StateRef.of(argument).name in self.names.shapes
        if not shaped:
            raise self.error(
                f"{name}(...) constrains a vector or matrix parameter: write {name}(res_n) with param res_n[4,4]",
                args,
            )
        return CONSTRAINTS[name](argument)

    def _block(self, name: str, name_tok, args: lark.Tree) -> BlockCall:
        if self.scope.kind != "equation":
            raise self.error(f"block {name} can only be applied in an equation", name_tok)
        check_name(self.source, name, "block", name_tok, lowercase=False)
        kind = self.names.kind_of(name)
        if kind is not None:
            raise self.error(f"{name} is declared as a {kind}, not a block", name_tok)
        if args.data == "range_arguments" or len(args.children) != 1:
            raise self.error(f"block {name} takes exactly one argument", name_tok)
        argument = self.visit(args.children[0])
        if not any(True for _ in references(rebuild(argument), self.names.state_heads)):
            raise self.error(f"block {name} must be applied to states, e.g. {name}(x_n)", args)
        return BlockCall(sympy.Symbol(name), n, argument)

    def _sum(self, args: lark.Tree) -> sympy.Sum:
        var_tok, low_node, _, high_node, body = args.children
        var = str(var_tok)
        scope = self.scope
        if scope.bound:
            raise self.error("a sum inside another sum is not supported", var_tok)
        if var == "n" or var in self.names.kinds or var in self.implicit:
            raise self.error(f"the sum's variable {var!r} is already a name; pick another letter", var_tok)
        if len(var) > MAX_NAME_CHARS or keyword.iskeyword(var) or hasattr(builtins, var):
            raise self.error(f"{var!r} cannot be a sum's variable", var_tok)
        self.sum_variables.setdefault(var, var_tok)
        limits = Scope(scope.kind, state=scope.state)
        low = rebuild(self.build(low_node, limits))
        high = rebuild(self.build(high_node, limits))
        for limit, where in ((low, low_node), (high, high_node)):
            if not (limit.is_Integer or (limit - n).is_Integer):
                raise self.error("a sum's limits are whole numbers or n plus or minus a whole number", where)
        if high.is_Integer:
            raise self.error(
                "a sum's upper limit is n or n minus a whole number: sum(i=0..n, x_i)", high_node
            )
        if (high - n - 1).is_positive:  # n+1: other states of the same step (checked per read)
            raise self.error(
                "a sum cannot reach beyond step n (n+1 for states computed earlier in the step)", high_node
            )
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
        self.sum_high = high_node
        inner = Scope(
            scope.kind, state=scope.state, bound={var: (symbol, low, high)}, same_step=scope.same_step
        )
        return sympy.Sum(self.build(body, inner), (symbol, low, high))


_WHERE = {
    "initial": "an initial condition",
    "constant": "a constant's value",
    "param": "the initial value of a parameter",
    "domain": "a domain's bound",
}


def _pair_use(name: str) -> str:
    return (
        f"{name} is a pair parameter (one weight per step n and earlier step i): read it inside a "
        f"history sum, as in sum(i=0..n, {name}_<n,i>*x_i)"
    )


def _negate(expr: sympy.Expr) -> sympy.Expr:
    """``-expr`` as written: a number negated, a product with -1 as its first factor."""
    if expr.is_Number:
        return -expr
    if isinstance(expr, sympy.Mul):
        first, rest = expr.args[0], expr.args[1:]
        if not first.is_Number:
            return sympy.Mul(sympy.Integer(-1), *expr.args, evaluate=False)
        if first == -1:
            return rest[0] if len(rest) == 1 else sympy.Mul(*rest, evaluate=False)
        return sympy.Mul(-first, *rest, evaluate=False)
    return sympy.Mul(sympy.Integer(-1), expr, evaluate=False)


def _suggest(name: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
