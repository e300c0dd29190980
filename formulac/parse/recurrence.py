"""A file's declarations and expressions -> :class:`~formulac.ir.Recurrence`.

The order matters: constants first (resolved once, in dependency order, so that later values
are checked with their constants written out), then parameters, symbols' domains, equations
and initial conditions, and finally the evaluation order of same-step references.
"""

from __future__ import annotations

from dataclasses import replace

import lark
import sympy

from ..floats import coefficient_problem
from ..ir import (
    CycleError,
    Domain,
    Equation,
    Param,
    Recurrence,
    StateRef,
    block_calls,
    evaluation_order,
    n,
    rebuild,
    rec_expr,
    resolve_values,
)
from ..limits import CHECKED_STEPS
from .declarations import Declarations
from .dynamic import split_dynamic
from .expressions import Expressions, Scope
from .streams import lower, shaped_param
from .syntax import Source
from .values import check_coefficients, check_result, check_size

__all__ = ["build"]


def build(tree: lark.Tree, source: Source) -> Recurrence:
    names = Declarations(source).read(tree)
    exprs = Expressions(names, source)
    constants, display = _constants(names, exprs, source)
    params = _params(names, exprs, source)
    domains = {name: _domain(node, exprs, source) for name, node in names.domain_nodes.items()}
    equations, same_step, initial = _equations(names, exprs, source, display)
    try:
        order = evaluation_order(list(equations), same_step)
    except CycleError as exc:
        raise source.error(
            "same-step references form a cycle: " + " -> ".join(f"{c}_<n+1>" for c in exc.cycle),
            names.state_heads[exc.cycle[0]],
        ) from None
    used = {call.block for eq in equations.values() for call in block_calls(eq.rhs)}
    for block, tok in names.shared_blocks.items():
        if block not in used:
            raise source.error(f"shared block {block} is not used by any equation", tok)
    for name in names.pair_variables:
        if name not in exprs.pair_ranges:
            raise source.error(
                f"pair parameter {name} is not read in any sum: write sum(i=0..n, {name}_<n,i>*x_i)",
                names.param_nodes[name][0],
            )
        _check_pair_init(params[name], exprs.pair_ranges[name], names.param_nodes[name][2], source)
    for var, tok in exprs.sum_variables.items():
        if var in exprs.implicit:
            line = exprs.implicit[var].line
            raise source.error(
                f"the sum's variable {var!r} is also used as a free symbol (line {line}); pick another letter",
                tok,
            )
    implicit = sorted(exprs.implicit, key=lambda s: (exprs.implicit[s].line, exprs.implicit[s].column))
    rec = Recurrence(
        equations=tuple(equations[s] for s in order),
        output=names.output_name,
        constants=constants,
        params=params,
        symbols=tuple(names.symbol_names) + tuple(implicit),
        domains=domains,
        initial=initial,
        shared_blocks=frozenset(names.shared_blocks),
        name=source.path,
        display_values=display,
        resolved=exprs.values,
        streams={name: k for name, (k, _) in names.streams.items()},
    )
    if not names.streams:
        return rec
    nodes = {base: node for _, base, index, node in names.heads if index.var is not None}
    tokens = {name: tok for name, (_, tok) in names.streams.items()}
    lowered = lower(rec, source, nodes, tokens, set(names.kinds))
    for name, (_, node) in names.shapes.items():
        if name not in used_params(rec):
            raise source.error(f"parameter {name} is not used by any equation", node)
    return lowered


def used_params(rec: Recurrence) -> set[str]:
    """The parameters the equations read (by name)."""
    found = set()
    for eq in rec.equations:
        for node in eq.rhs.atoms(sympy.Indexed, sympy.Symbol):
            name = StateRef.of(node).name if isinstance(node, sympy.Indexed) else node.name
            if name in rec.params:
                found.add(name)
    return found


def _constants(names: Declarations, exprs: Expressions, source: Source):
    constants: dict[str, sympy.Expr] = {}
    display: dict = {}
    for name, (_, node) in names.constant_nodes.items():
        display[name] = exprs.build(node, Scope("constant"))
        constants[name] = rebuild(display[name])  # checked once resolved, below

    def check(name: str, value: sympy.Expr) -> None:
        check_size(source, value, names.constant_nodes[name][1], f"constant {name}")

    try:
        exprs.values = resolve_values(constants, check)
    except CycleError as exc:
        raise source.error(
            f"constant {exc.cycle[0]} is defined through itself: " + " -> ".join(exc.cycle),
            names.constant_nodes[exc.cycle[0]][0],
        ) from None
    return constants, display


def _params(names: Declarations, exprs: Expressions, source: Source) -> dict[str, Param]:
    params: dict[str, Param] = {}
    for name, (_, per_step, node) in names.param_nodes.items():
        pair = names.pair_variables.get(name)
        if pair is not None:
            params[name] = _pair_param(name, pair, node, exprs, source)
            continue
        init = rebuild(exprs.build(node, Scope("param")))
        init, dynamic, dynamic_map = split_dynamic(name, init, per_step, names, source, node)
        if name in names.shapes:
            params[name] = replace(
                shaped_param(name, init, names.shapes[name][0], source, node),
                dynamic=dynamic,
                dynamic_map=dynamic_map,
            )
            continue
        check_result(source, init, node)
        if init.free_symbols:
            raise source.error(f"the initial value of parameter {name} must be a number", node)
        check_coefficients(source, init, node)  # a double: 1e-400 would start at 0
        params[name] = Param(name, init, per_step=per_step, dynamic=dynamic, dynamic_map=dynamic_map)
    return params


def _pair_param(name: str, pair: str, node: lark.Tree, exprs: Expressions, source: Source) -> Param:
    """``param w_<n,i> = INIT``: INIT is a number, or depends on n and i (``[i == n]``)."""
    param = Param(name, sympy.Integer(0), per_step=True, pair=pair)
    index = param.pair_symbol
    init = rebuild(exprs.build(node, Scope("param", bound={pair: (index, sympy.Integer(0), n)})))
    check_result(source, init.xreplace({index: n}), node)
    if init.free_symbols - {n, index}:
        raise source.error(
            f"the initial value of pair parameter {name} is a number or depends on n and {pair} only", node
        )
    for edge in (n, sympy.Integer(0)):  # the newest and the oldest state of each step's sum
        check_coefficients(source, init.xreplace({index: edge}), node)  # a double, as for param k
    return Param(name, init, per_step=True, pair=pair)


#: How many pairs next to each end of a sum's range a pair parameter's initial value is checked at
#: over every step (besides i = n and i = 0): DenseFormer's i = n+1, every entry of a window.
PAIR_EDGE_CHECKS = 8


def _check_pair_init(param: Param, pair_range, node: lark.Tree, source: Source) -> None:
    """The initial value a finite real double at the pairs (n, i) next to each end of the range
    the sums read it over, at every step that has them (a window: every entry at every step)."""
    low, high, _ = pair_range
    index = param.pair_symbol
    if (high - low).is_Integer:
        entries = [(low + k, 0) for k in range(int(high - low) + 1)]
    else:  # low..n+d over the history: entry low+k and n+d-k exist from step n = low+k-d on
        reach = int(high - n)
        entries = []
        for k in range(PAIR_EDGE_CHECKS):
            first = max(0, int(low) + k - reach)
            entries += [(low + k, first), (high - k, first)]
    for entry, first in entries:
        value = param.init.xreplace({index: entry}).xreplace({n: n + first})
        problem = coefficient_problem(value, n, CHECKED_STEPS - first)
        if problem is not None:
            at = f" at step n = {problem.step + first}" if problem.step is not None else ""
            what = "its value" if problem.expr.is_number else rec_expr(problem.expr)  # zoo, I: say why
            raise source.error(
                f"the initial value {rec_expr(param.init)} of {param.name}_<n,{index}> at {index} = "
                f"{rec_expr(entry)}{at}: {what} {problem.reason}",
                node,
            )


def _equations(names: Declarations, exprs: Expressions, source: Source, display: dict):
    equations: dict[str, Equation] = {}
    same_step: dict[str, set[str]] = {}
    initial: dict[tuple[str, int], sympy.Expr] = {}
    for head, base, index, node in names.heads:
        if index.var is None:
            key = (base, index.offset)
            if base not in names.state_heads:
                raise source.error(f"initial condition for {base}, which no equation defines", head)
            if base == names.output_name and index.offset == 0:
                raise source.error(f"{head} is the network's input and cannot be set", head)
            if key in initial:
                raise source.error(f"duplicate initial condition for {head}", head)
            display[key] = exprs.build(node, Scope("initial"))
            initial[key] = rebuild(display[key])
            check_result(source, initial[key].xreplace(exprs.values), node)
            check_coefficients(source, initial[key], node, exprs.values)
            continue
        scope = Scope("equation", state=base)
        shown = exprs.build(node, scope)
        rhs = rebuild(shown)
        check_result(source, rhs.xreplace(exprs.values), node)
        # the exact form (what the analyses use) and the form as written (what the code computes)
        check_coefficients(source, rhs, node, exprs.values)
        if shown != rhs:
            check_coefficients(source, shown, node, exprs.values)
        equations[base] = Equation(base, rhs, shown, head.line, head.column)
        same_step[base] = scope.same_step
    return equations, same_step, initial


def _domain(node: lark.Tree, exprs: Expressions, source: Source) -> Domain:
    """``[low, high]``, ``[low, high] log`` or ``{a, b, ...}``: exact real numbers."""
    values = []
    for child in node.children:
        if isinstance(child, lark.Tree):
            value = rebuild(exprs.build(child, Scope("domain"))).xreplace(exprs.values)
            check_result(source, value, child)
            if not value.is_number or value.is_real is False:
                raise source.error("a domain's bounds and choices are real numbers", child)
            values.append((value, child))
    if node.data == "choices":
        seen: list[sympy.Expr] = []
        for value, child in values:
            if any(_same(value, other) for other in seen):
                raise source.error(f"duplicate choice {rec_expr(value)} in the set", child)
            seen.append(value)
        return Domain(choices=tuple(seen))
    (low, low_node), (high, _) = values
    log = isinstance(node.children[-1], lark.Token) and node.children[-1].type == "LOG"
    if not _less(low, high):
        raise source.error(
            f"empty interval [{rec_expr(low)}, {rec_expr(high)}]: the low end must be below the high end",
            node,
        )
    if log and not _less(sympy.Integer(0), low):
        raise source.error("a log interval needs numbers above 0 (its low end is not)", low_node)
    return Domain(low=low, high=high, log=log)


def _same(a: sympy.Expr, b: sympy.Expr) -> bool:
    return a == b or abs(float((a - b).evalf(30))) < 1e-25


def _less(a: sympy.Expr, b: sympy.Expr) -> bool:
    difference = sympy.sympify(b - a)
    if difference.is_Number:
        return bool(difference > 0)
    return float(difference.evalf(30)) > 0
