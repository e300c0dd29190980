"""The step class that runs a formula over a user's blocks one step at a time (``transform``).

:func:`stream_source` is the source of ``formulac.wire`` (a ``FormulaStep`` holding the blocks
as children) with two additions: ``StreamStep``, the step with the ``advance`` (and, for
``memory="reversible"``, ``retreat``) method that the memory runtime calls, and
``initial_states(x_0)``, the states kept before the first step. A model's own loop calls its
blocks one by one, so the caller carries the kept states between calls instead of a loop.
"""

from __future__ import annotations

from ..errors import UsageError
from ..ir import Concat, Recurrence, walk
from .dynamic import refuse_dynamic
from .emit import wire_source
from .memory_mode import MemoryPlan, kept_names
from .memory_modes import get_memory_mode
from .plan import StepPlan, plan_step, var_name
from .streams import refuse_streams

__all__ = ["StreamCode", "stream_code"]


class StreamCode:
    """The generated source and what its caller needs to know about it: the kept states'
    names (``x_n, x_nm1, v_n``), the per-step and shared parameters (formula name ->
    (attribute, initial value)), the blocks, the output state and the memory plan."""

    def __init__(self, source: str, plan: StepPlan, memory_plan: MemoryPlan):
        self.source = source
        self.kept = kept_names(dict(plan.lags))[0]
        self.per_step_params = {
            name: (attr, float(init)) for name, (attr, init) in plan.per_step_params.items()
        }
        self.shared_params = {name: (attr, float(init)) for name, (attr, init) in plan.shared_params.items()}
        self.blocks = list(plan.blocks)
        self.output = plan.output
        self.memory_plan = memory_plan


def stream_code(rec: Recurrence, memory: str) -> StreamCode:
    """Plan and write the stream step of ``rec`` for ``memory`` (a registered memory mode's
    name); a :class:`UsageError` for what a stream cannot run."""
    refuse_streams(rec, "transform")
    refuse_dynamic(rec, "transform")
    widened = [eq for eq in rec.equations if any(isinstance(node, Concat) for node in walk(eq.rhs))]
    if widened:
        # the model's blocks and whatever follows the stack read the width they were built for
        raise UsageError(
            f"transform: {rec.name} joins states with cat in {widened[0].state}_<n+1>, which widens "
            "the stream past the width the model's blocks take; transform runs formulas that keep it"
        )
    mode = get_memory_mode(memory)
    mplan = mode.plan(rec)
    plan = plan_step(rec, stages=False)
    if plan.history or plan.starts:
        read = [f"{s}_0" for s in plan.starts] + [f"the history of {h}" for h in plan.history]
        raise UsageError(
            f"transform runs formulas whose steps read the latest states only (x_n, x_<n-1>, v_n, ...); "
            f"{rec.name} reads {', '.join(read)} at every step, which transform does not support yet"
        )
    if not plan.blocks:
        raise UsageError(f"transform: {rec.name} calls no block, so no block of the model would run")
    lags = dict(plan.lags)
    methods = mode.step_methods(rec, plan, lags, mplan)
    output = plan.output
    lines = [
        "",
        "",
        "class StreamStep(FormulaStep):",
        '    """One step of the formula on the states it keeps (advance; retreat when reversible)."""',
        "",
        *methods,
        "",
        "",
        f"def initial_states({output}_0):",
        '    """The states kept before the first step, from the input."""',
    ]
    before = kept_names(lags)[0]
    for s, depth in lags.items():
        for k in range(depth):
            value = f"{output}_0" if (s, -k) == (output, 0) else plan.initial[(s, -k)]
            lines.append(f"    {var_name(s, -k)} = {value}")
    lines.append(f"    return ({', '.join(before)},)")
    # the wire module imports only what its own body uses; the additions may use torch
    source = wire_source(rec) + "\nimport torch  # noqa: E402\nfrom torch import nn  # noqa: E402\n"
    source += "\n".join(lines) + "\n"
    return StreamCode(source, plan, mplan)
