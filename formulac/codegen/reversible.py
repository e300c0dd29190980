"""Code for ``memory="reversible"`` and ``memory="checkpoint"`` (no torch here).

For every formula the step class gets two methods printed from the formula, ``advance`` (the
step, with each block call made through a callback) and ``retreat`` (the step run backward: the
solution of :func:`formulac.analysis.invertibility.invert`, printed as code); ``run_stage``
runs a stage's shape-changing first step as usual and hands the rest to ``run_reversible`` or
``run_checkpointed``, whose source (:mod:`.memory_runtime`, torch only) is copied into the file.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import sympy

from ..analysis.invertibility import UNIT_ROUNDOFF, Reconstruction, invert, reconstruction
from ..errors import UsageError
from ..ir import BlockCall, Recurrence, StateRef, rebuild, references
from .exact import exact_equations, exact_methods
from .plan import StepPlan, _ordered_block_calls, _TorchPrinter, var_name

__all__ = ["MEMORY_MODES", "MemoryPlan", "memory_plan", "RESERVED_NAMES", "ANCHOR_TOLERANCE"]

#: The values of ``memory=``.
MEMORY_MODES = ("standard", "reversible", "checkpoint")

#: Relative error a rebuilt state may have at an anchor, by dtype of the states; a segment whose
#: rebuilt states err more is recomputed exactly. Tighter than the analysis's 1e-3 for a reason:
#: rebuilt float32 states 5e-4 off gave gradients 0.6 % off (midpoint, mlp, 88 rebuilt steps),
#: at 1e-5 they stay within 1e-5 of standard's; the half precisions allow 4 of their roundings.
ANCHOR_TOLERANCE = {
    "float64": 1e-5,
    "float32": 1e-5,
    "float16": 4 * UNIT_ROUNDOFF["float16"],
    "bfloat16": 4 * UNIT_ROUNDOFF["bfloat16"],
}

#: Names the memory code uses on the step and network classes (a parameter is renamed instead).
RESERVED_NAMES = frozenset(
    {
        "call",
        "advance",
        "retreat",
        "advance_exact",
        "retreat_exact",
        "store",
        "anchor_steps",
        "anchor_tolerance",
        "rebuild_errors",
        "recomputed_segments",
        "preserve_rng_state",
        "checkpoint_segment",
        "run_reversible",
        "run_checkpointed",
        "advance_steps",
        "uses_randomness",
        "ReversibleSteps",
        "first",
    }
)

_INDENT = "    "
_RUNTIME = {
    "reversible": (
        "_RANDOM_MODULES",
        "uses_randomness",
        "_plain_call",
        "advance_steps",
        "_rng_state",
        "_set_rng_state",
        "_autocast_state",
        "_KeptBuffers",
        "_Rebuild",
        "ReversibleSteps",
        "_relative_error",
        "_accumulate",
        "_recompute_segment",
        "_step_backward",
        "_EXACT_BITS",
        "_FixedStore",
        "ExactSteps",
        "_add",
        "_grad",
        "run_reversible",
    ),
    "checkpoint": ("_plain_call", "advance_steps", "_KeptBuffers", "run_checkpointed"),
}


@dataclass(frozen=True)
class MemoryPlan:
    """How a network keeps its activations: the mode, and for ``reversible`` the anchor
    interval per dtype of the states (steps between states kept exactly)."""

    mode: str
    anchor_steps: dict  # dtype name -> steps; empty unless reversible
    reconstruction: Reconstruction | None = None
    exact: tuple = ()  # the equations of the exact rebuild (ExactEquation), when it applies


def memory_plan(rec: Recurrence, memory: str) -> MemoryPlan:
    """Check that ``rec`` can be compiled with ``memory`` and choose the anchor interval."""
    if memory not in MEMORY_MODES:
        raise UsageError(f"unknown memory mode {memory!r} (choose {', '.join(MEMORY_MODES)})")
    if memory == "standard":
        return MemoryPlan(memory, {})
    if memory == "checkpoint":
        check_supported(rec, memory)
        return MemoryPlan(memory, {})
    check_supported(rec, memory)  # first: what it refuses, checkpoint refuses too
    inverse = invert(rec)
    if not inverse.invertible:
        raise UsageError(
            f"memory='reversible' needs a formula whose steps can run backward, and {rec.name} "
            f"cannot: {inverse.reason}; use memory='checkpoint' instead"
        )
    rebuild_ = reconstruction(rec, inverse=inverse)
    if rebuild_ is None or rebuild_.growth is None:
        why = "; ".join(rebuild_.notes) if rebuild_ is not None else "not determined"
        raise UsageError(
            f"memory='reversible': the error growth of rebuilding {rec.name}'s states is unknown ({why}), "
            "so no anchor interval can be chosen; use memory='checkpoint' instead"
        )
    run32 = rebuild_.max_run("float32", ANCHOR_TOLERANCE["float32"])
    if run32 < 2:
        raise UsageError(
            f"memory='reversible' is useless for {rec.name}: rebuilding a state multiplies rounding "
            f"errors by about {float(rebuild_.growth):.3g} per step, so float32 cannot rebuild even two "
            f"steps within {ANCHOR_TOLERANCE['float32']:g} and every state would have to be kept; use "
            "memory='checkpoint' instead"
        )
    # float64 states use float32's interval (far more accurate); lower precisions their own
    anchors = {"float64": run32, "float32": run32}
    for fmt in ("bfloat16", "float16"):
        anchors[fmt] = max(1, rebuild_.max_run(fmt, ANCHOR_TOLERANCE[fmt]))
    assert set(anchors) <= set(UNIT_ROUNDOFF) == set(ANCHOR_TOLERANCE)
    from .plan import plan_step

    exact, _ = exact_equations(inverse, plan_step(rec))
    return MemoryPlan(memory, anchors, rebuild_, tuple(exact or ()))


def check_supported(rec: Recurrence, memory: str) -> None:
    """Refuse what ``memory`` cannot run: history sums (neither mode), reads of a fixed state
    at every step (reversible; checkpoint takes a start ``s_0`` such as x0-mixing's ``x_0``,
    kept for the whole stage and handed to every segment as it is)."""
    for eq in rec.equations:
        if eq.rhs.has(sympy.Sum):
            raise UsageError(
                f"memory={memory!r}: {rec.name} sums over the whole history, which every step keeps; "
                "use memory='standard'"
            )
        for ref in references(eq.rhs):
            if ref.variable is None and not (memory == "checkpoint" and ref.shift == 0):
                index = ref.shift if ref.shift >= 0 else f"<{ref.shift}>"
                instead = (
                    "memory='checkpoint'"
                    if memory == "reversible" and ref.shift == 0
                    else "memory='standard'"
                )
                raise UsageError(
                    f"memory={memory!r} does not support formulas that read {ref.name}_{index} at every "
                    f"step yet; use {instead}"
                )


# -- the step's methods ----------------------------------------------------------------------------


def kept_names(lags: dict[str, int]) -> tuple[list[str], list[str]]:
    """Names of the kept states before a step (``x_n, x_nm1``) and after it (``x_next, x_n``)."""
    before = [var_name(s, -k) for s, depth in lags.items() for k in range(depth)]
    after = [var_name(s, 1 - k) for s, depth in lags.items() for k in range(depth)]
    return before, after


def step_methods(rec: Recurrence, plan: StepPlan, lags: dict[str, int], memory: str) -> list[str]:
    """The ``advance`` (and, when reversible, ``retreat``) methods of the step class."""
    by_equation = _block_calls_by_equation(plan)
    calls = [c for group in by_equation.values() for c in group]
    subs = rec.substitutions()
    index = {}
    locals_: dict = {}
    counts: dict[str, int] = {}
    for i, call in enumerate(calls):
        counts[call.block] = counts.get(call.block, 0) + 1
        local = f"out_{call.block}" if counts[call.block] == 1 else f"out_{call.block}_{counts[call.block]}"
        for key in (rebuild(call), rebuild(call).xreplace(subs)):
            index[key] = i
            locals_[key] = local
    before, after = kept_names(lags)
    # the starts (x_0, ...) as the stage holds them, then the shared parameters: by keyword
    shared = [f"{s}_0" for s in plan.starts] + [attr for attr, _ in plan.shared_params.values()]
    keyword = ["*", *shared] if shared else []

    printer = _TorchPrinter(rec, plan, subs)
    printer.block_vars = dict(locals_)
    body = []
    defined: set[str] = set()
    for state_name, expr in _step_equations(plan):
        for call in by_equation[state_name]:
            key = rebuild(call)
            if locals_[key] not in defined:
                defined.add(locals_[key])
                body.append(
                    f"{locals_[key]} = call({index[key]}, self.{call.block}, {printer.emit(call.argument)})"
                )
        body.append(f"{var_name(state_name, 1)} = {printer.emit(expr)}")
    lines = [
        f"{_INDENT}def advance({', '.join(['self', 'call', *before, *keyword])}):",
        f'{_INDENT * 2}"""The step on the states it keeps; each block call goes through'
        f" call(index, block, argument).\"\"\"",
    ]
    lines += [f"{_INDENT * 2}{line}" for line in body]
    lines.append(f"{_INDENT * 2}return {_tuple(after)}")
    if memory != "reversible":
        return lines

    inverse = invert(rec).inverse
    body = []
    defined = set()
    for ref, expr in inverse.solution:
        for call in _innermost_first(expr):
            key = rebuild(call)
            local = locals_[key]
            if local not in defined:
                defined.add(local)
                body.append(f"{local} = call({index[key]}, self.{call.block}, {printer.emit(call.argument)})")
        target = StateRef.of(ref)
        name = var_name(target.name, target.shift)
        body.append(f"{name} = {printer.emit(expr)}")
    lines.append("")
    lines.append(f"{_INDENT}def retreat({', '.join(['self', 'call', *after, *keyword])}):")
    lines.append(
        f'{_INDENT * 2}"""The step run backward (the formula solved for the oldest states): the kept states'
    )
    lines.append(f'{_INDENT * 2}before the step from those after it."""')
    lines += [f"{_INDENT * 2}{line}" for line in body]
    lines.append(f"{_INDENT * 2}return {_tuple(before)}")
    equations, _ = exact_equations(invert(rec), plan)
    if equations is not None:  # the inverse divides by a constant: rebuild exactly instead
        lines.append("")
        lines += exact_methods(equations, before, after, keyword, printer, locals_, index, _INDENT)
    return lines


def _step_equations(plan: StepPlan) -> list[tuple[str, sympy.Expr]]:
    """(state, the expression the step's forward computes), in evaluation order: the user's
    terms, so that ``advance`` computes exactly what ``forward`` does."""
    return plan.equations


def _block_calls_by_equation(plan: StepPlan) -> dict[str, list[BlockCall]]:
    """Distinct block calls of each equation, innermost first, as the forward makes them."""
    return _ordered_block_calls(plan.equations)


def _tuple(names: list[str]) -> str:
    return f"({names[0]},)" if len(names) == 1 else ", ".join(names)


def _innermost_first(expr) -> list[BlockCall]:
    found: list[BlockCall] = []

    def visit(e):
        for a in e.args:
            visit(a)
        if isinstance(e, BlockCall) and e not in found:
            found.append(e)

    visit(expr)
    return found


# -- the network ------------------------------------------------------------------------------------


def stage_lines(plan: StepPlan, lags: dict[str, int], indent: str, loop_lines, memory: str) -> list[str]:
    """The steps of ``run_stage`` under ``memory``: a shape-changing first step as usual (through
    ``loop_lines(steps_expression)``, the standard loop), the rest rebuilt or checkpointed."""
    before, _ = kept_names(lags)
    # the starts (x_0, ...) are kept for the whole stage: each segment reads them, never rebuilds them
    shared = ", ".join(
        [f"{s}_0={s}_0" for s in plan.starts]
        + [f"{attr}=self.{attr}" for attr, _ in plan.shared_params.values()]
    )
    lines = [
        f"{indent}first = 0 if steps[0].downsample is None else 1  # a shape-changing first step runs as usual"
    ]
    lines += loop_lines("steps[:first]")
    states = ", ".join(before) + ("," if len(before) == 1 else "")
    if memory == "reversible":
        function = "run_reversible"
        arguments = [
            f"steps[first:], ({states}), dict({shared}),",
            "self.anchor_steps, self.anchor_tolerance, self.rebuild_errors, self.preserve_rng_state,",
            "self.recomputed_segments,",
        ]
    else:
        function = "run_checkpointed"
        arguments = [f"steps[first:], ({states}), dict({shared}), self.checkpoint_segment,"]
    lines.append(f"{indent}{states} = {function}(")
    lines += [f"{indent}{_INDENT}{a}" for a in arguments]
    lines.append(f"{indent})")
    return lines


def network_attribute_lines(mplan: MemoryPlan, indent: str) -> list[str]:
    """Class attributes of ``FormulaNet`` that steer the memory mode."""
    if mplan.mode == "reversible":
        r = mplan.reconstruction
        table = ", ".join(f'"{k}": {int(v)}' for k, v in mplan.anchor_steps.items())
        tolerances = "{" + ", ".join(f'"{k}": {float(v)!r}' for k, v in ANCHOR_TOLERANCE.items()) + "}"
        return [
            f"{indent}# memory='reversible': steps between anchor states (kept exactly), by dtype of the states,",
            f"{indent}# planned from the formula so that a rebuilt state errs by at most anchor_tolerance",
            f"{indent}# (relative): its linear part makes errors grow {float(r.growth):.4g}x per rebuilt step. Each",
            f"{indent}# backward checks the rebuilt states at each anchor and records the largest error in",
            f"{indent}# self.rebuild_errors; a segment above the tolerance (the blocks add to the growth) is",
            f"{indent}# recomputed exactly from its anchor instead (counted in self.recomputed_segments), and",
            f"{indent}# self.anchor_steps is shortened to the drift measured there.",
            f"{indent}anchor_steps = {{{table}}}",
            f"{indent}anchor_tolerance = {tolerances}",
            f"{indent}# replay the forward's random state in each recomputed block: None = when dropout is active",
            f"{indent}preserve_rng_state = None",
            "",
        ]
    if mplan.mode == "checkpoint":
        return [
            f"{indent}# memory='checkpoint': steps per checkpointed segment (None: about the square root of a stage's)",
            f"{indent}checkpoint_segment = None",
            "",
        ]
    return []


def init_lines(mplan: MemoryPlan, indent: str) -> list[str]:
    """Lines of ``FormulaNet.__init__`` that give each network its own memory settings."""
    if mplan.mode != "reversible":
        return []
    return [
        f"{indent}self.anchor_steps = dict(self.anchor_steps)  # this network's own, adjusted as it runs",
        f"{indent}self.rebuild_errors = {{}}  # dtype -> largest relative error of a rebuilt state seen",
        f"{indent}self.recomputed_segments = {{}}  # dtype -> segments recomputed because they drifted",
    ]


def runtime_lines(memory: str) -> list[str]:
    """The torch-only runtime definitions this mode needs, copied from :mod:`.memory_runtime`."""
    if memory == "standard":
        return []
    from . import memory_runtime

    lines = [f"# --- memory={memory!r}: running a stage's steps with less activation memory ---", ""]
    for name in _RUNTIME[memory]:
        value = getattr(memory_runtime, name)
        if isinstance(value, (tuple, dict)):
            source = _assignment_source(memory_runtime, name)
        else:
            source = inspect.getsource(value)
        lines += source.rstrip("\n").splitlines() + ["", ""]
    return lines


def _assignment_source(module, name: str) -> str:
    import ast

    text = inspect.getsource(module)
    for node in ast.parse(text).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return ast.get_source_segment(text, node)
    raise KeyError(name)
