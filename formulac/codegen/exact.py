"""Exact rebuilding for formulas whose inverse divides by a constant (no torch here).

Rebuilding ``v_n = (v_<n+1> - (1 - gamma)*F(x_n)) / gamma`` in floating point multiplies the
rounding errors by ``1/gamma`` per step, so such formulas need an anchor every few steps. The
exact scheme (Maclaurin, Duvenaud & Adams 2015, as momentumnet uses it) keeps the states as
fixed-point integers during the stage and each equation's step as
``S_<n+1> = times(U_n, p, q) + fixed(rest)`` for the coefficient ``p/q`` of the rebuilt state
``U_n``: ``times`` multiplies by ``p/q`` exactly, pushing the remainder its division drops into
a bit store and popping the bits its multiplication needs; ``divide`` undoes it. ``rest`` is
computed in floating point from values the backward step knows too, so both compute the same
number. The step class gets ``advance_exact``/``retreat_exact``, run by the runtime's
``ExactSteps`` (:mod:`.memory_runtime`) with no anchor but the stage's first states.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy

from ..analysis.invertibility import Invertibility
from ..ir import StateRef, block_calls_innermost_first, rebuild
from .plan import StepPlan, var_name

__all__ = ["ExactEquation", "exact_equations", "exact_methods", "LARGEST_TERM"]

#: Numerators and denominators of an exactly multiplied coefficient stay below this.
LARGEST_TERM = 2**16


@dataclass(frozen=True)
class ExactEquation:
    """``state_<n+1> = (p/q)*rebuilt + rest``, one equation of the step."""

    state: str
    rebuilt: object  # the reference solved for (sympy Indexed)
    p: int
    q: int
    rest: sympy.Expr


def exact_equations(inverse: Invertibility, plan: StepPlan) -> tuple[list[ExactEquation] | None, str]:
    """The step's equations in forward order when the exact scheme applies, else None and why."""
    inv = inverse.inverse
    if not inverse.invertible or inv is None:
        return None, "the step is not invertible"
    if len(inv.affine) != len(inv.solution):
        return None, "the backward step recomputes a state the step does not keep"
    if all(c == 1 for _, _, c, _ in inv.affine):
        return None, "the backward step divides by nothing"
    equations = []
    for state, ref, c, rest in inv.affine:
        c = sympy.sympify(c)
        if not c.is_Rational:
            return None, f"the coefficient {c} of the rebuilt state is not a rational constant"
        p, q = int(c.p), int(c.q)
        if not (0 < abs(p) < LARGEST_TERM and q < LARGEST_TERM and abs(c) <= 4):
            return None, f"the coefficient {c} is too large or has too long a fraction"
        equations.append(ExactEquation(state, ref, p, q, rest))
    forward = [state for state, _ in plan.equations]
    solved = [e.state for e in equations]
    if solved != [s for s in reversed(forward) if s in solved]:
        return None, "the backward step does not solve the equations in the reverse of their order"
    return list(reversed(equations)), ""


def exact_methods(
    equations: list[ExactEquation],
    before: list[str],
    after: list[str],
    keyword: list[str],
    printer,
    locals_: dict,
    index: dict,
    indent: str,
) -> list[str]:
    """``advance_exact`` and ``retreat_exact``: the step and its inverse on fixed-point states
    (``name_fixed``), with ``store`` (the runtime's ``_FixedStore``) doing the arithmetic; each
    state's floating-point value is ``name`` (what the expressions read)."""

    def calls_in(expr, defined: set, body: list):
        for call in block_calls_innermost_first(expr):
            key = rebuild(call)
            if locals_[key] not in defined:
                defined.add(locals_[key])
                body.append(
                    f"{locals_[key]} = call({index[key]}, self.{call.block}, {printer.emit(call.argument)})"
                )

    def plus_rest(rest) -> str:
        return "" if rest == 0 else f" + store.fixed({printer.emit(rest)})"

    def minus_rest(rest) -> str:
        return "" if rest == 0 else f" - store.fixed({printer.emit(rest)})"

    def ref_name(ref) -> str:
        target = StateRef.of(ref)
        return var_name(target.name, target.shift)

    slots = {e.state: k for k, e in enumerate(equations)}

    def advance(e) -> tuple[str, str]:
        new = var_name(e.state, 1)
        rebuilt = ref_name(e.rebuilt)
        return (
            new,
            f"{new}_fixed = store.times({rebuilt}_fixed, {e.p}, {e.q}, {slots[e.state]}){plus_rest(e.rest)}",
        )

    def retreat(e) -> tuple[str, str]:
        old, new = ref_name(e.rebuilt), var_name(e.state, 1)
        return (
            old,
            f"{old}_fixed = store.divide({new}_fixed{minus_rest(e.rest)}, {e.p}, {e.q}, {slots[e.state]})",
        )

    def method(name: str, doc: str, inputs: list[str], order, assign, outputs: list[str]) -> list[str]:
        # the fixed-point inputs' real values, then per equation its block calls, its fixed-point
        # assignment and the real value of what it assigned
        body = [f"{n} = store.real({n}_fixed)" for n in inputs]
        defined: set = set()
        for e in order:
            calls_in(e.rest, defined, body)
            target, assignment = assign(e)
            body += [assignment, f"{target} = store.real({target}_fixed)"]
        signature = ", ".join(["self", "call", "store", *(f"{n}_fixed" for n in inputs), *keyword])
        return [
            f"{indent}def {name}({signature}):",
            f'{indent * 2}"""{doc}"""',
            *(f"{indent * 2}{line}" for line in body),
            f"{indent * 2}return {_tuple([f'{n}_fixed' for n in outputs])}",
        ]

    forward_doc = "The step on fixed-point states, exactly invertible by retreat_exact."
    backward_doc = "advance_exact run backward: the fixed-point states before the step, exactly."
    return [
        *method("advance_exact", forward_doc, before, equations, advance, after),
        "",
        *method("retreat_exact", backward_doc, after, list(reversed(equations)), retreat, before),
    ]


def _tuple(names: list[str]) -> str:
    return f"({names[0]},)" if len(names) == 1 else ", ".join(names)
