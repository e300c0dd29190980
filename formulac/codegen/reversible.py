"""``memory="reversible"``: states rebuilt backward from the formula's inverse (no torch here).

The step class gets ``advance`` (the step, with each block call made through a callback) and
``retreat`` (the step run backward: the solution of
:func:`formulac.analysis.invertibility.invert`, computed once per compile and carried by the
:class:`MemoryPlan`, printed as code); ``run_stage`` runs a stage's shape-changing first step as
usual and hands the rest to ``run_reversible``, whose source (:mod:`.memory_runtime`, torch only)
is copied into the file.
"""

from __future__ import annotations

import math

from ..analysis.invertibility import UNIT_ROUNDOFF, invert, reconstruction
from ..errors import UsageError
from ..ir import Recurrence, StateRef, block_calls_innermost_first, rebuild
from .dynamic import dynamic_refusal
from .exact import exact_equations, exact_methods
from .memory_mode import (
    RESERVED_NAMES,
    MemoryEstimate,
    MemoryMode,
    MemoryPlan,
    advance_method,
    history_refusal,
    peak_memory,
    split_first_step,
    states_tuple,
)
from .plan import StepPlan, plan_step, var_name
from .source_format import INDENT

__all__ = ["ReversibleMode", "ANCHOR_TOLERANCE"]

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

_RUNTIME_NAMES = (
    "_RANDOM_MODULES",
    "uses_randomness",
    "_plain_call",
    "advance_steps",
    "_rng_state",
    "_set_rng_state",
    "_recording",
    "_replay_rng",
    "_replaying",
    "_autocast_state",
    "_stage_inputs",
    "_remember",
    "_backward_start",
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
)


class ReversibleMode(MemoryMode):
    """States rebuilt backward from the formula's inverse, with anchors kept exactly."""

    name = "reversible"
    description = "states rebuilt backward from the formula's inverse; invertible formulas only"
    reserved_names = RESERVED_NAMES
    runtime_names = _RUNTIME_NAMES
    runner = "run_reversible"
    runner_attributes = (
        "anchor_steps",
        "anchor_tolerance",
        "rebuild_errors",
        "preserve_rng_state",
        "recomputed_segments",
    )

    def refusal(self, rec: Recurrence) -> str | None:
        return history_refusal(rec, self.name) or dynamic_refusal(rec, self.name)

    def plan(self, rec: Recurrence, inverse=None) -> MemoryPlan:
        """Check that ``rec`` can run backward and choose the anchor interval; ``inverse`` is
        ``invert(rec)`` when the caller has it (it is computed here otherwise, once)."""
        reason = self.refusal(rec)  # first: what it refuses, checkpoint refuses too
        if reason is not None:
            raise UsageError(reason)
        inverse = invert(rec) if inverse is None else inverse
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
        exact, _ = exact_equations(inverse, plan_step(rec))
        return MemoryPlan(self.name, anchors, rebuild_, tuple(exact or ()), inverse)

    def step_methods(self, rec: Recurrence, plan: StepPlan, lags: dict, mplan: MemoryPlan) -> list[str]:
        """``advance``, ``retreat`` (the formula solved for the oldest states) and, when the
        inverse divides by a constant, ``advance_exact``/``retreat_exact``."""
        lines, names = advance_method(rec, plan, lags)
        printer, locals_, index = names.printer, names.locals_, names.index
        body = []
        defined = set()
        for ref, expr in mplan.inverse.inverse.solution:
            for call in block_calls_innermost_first(expr):
                key = rebuild(call)
                local = locals_[key]
                if local not in defined:
                    defined.add(local)
                    body.append(
                        f"{local} = call({index[key]}, self.{call.block}, {printer.emit(call.argument)})"
                    )
            target = StateRef.of(ref)
            name = var_name(target.name, target.shift)
            body.append(f"{name} = {printer.emit(expr)}")
        lines.append("")
        lines.append(f"{INDENT}def retreat({', '.join(['self', 'call', *names.after, *names.keyword])}):")
        lines.append(
            f'{INDENT * 2}"""The step run backward (the formula solved for the oldest states): the kept states'
        )
        lines.append(f'{INDENT * 2}before the step from those after it."""')
        lines += [f"{INDENT * 2}{line}" for line in body]
        lines.append(f"{INDENT * 2}return {states_tuple(names.before)}")
        equations, _ = exact_equations(mplan.inverse, plan)
        if equations is not None:  # the inverse divides by a constant: rebuild exactly instead
            lines.append("")
            lines += exact_methods(
                equations, names.before, names.after, names.keyword, printer, locals_, index, INDENT
            )
        return lines

    def runner_argument_lines(self, states: str, shared: str) -> list[str]:
        return [
            f"steps[first:], ({states}), dict({shared}),",
            "self.anchor_steps, self.anchor_tolerance, self.rebuild_errors, self.preserve_rng_state,",
            "self.recomputed_segments,",
        ]

    def network_attribute_lines(self, mplan: MemoryPlan, indent: str) -> list[str]:
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

    def init_lines(self, mplan: MemoryPlan, indent: str) -> list[str]:
        return [
            f"{indent}self.anchor_steps = dict(self.anchor_steps)  # this network's own, adjusted as it runs",
            f"{indent}self.rebuild_errors = {{}}  # dtype -> largest relative error of a rebuilt state seen",
            f"{indent}self.recomputed_segments = {{}}  # dtype -> segments recomputed because they drifted",
        ]

    def stream_attributes(self, mplan: MemoryPlan) -> dict:
        return {
            "anchor_steps": dict(mplan.anchor_steps),
            # a segment whose rebuilt anchor errs more is recomputed exactly (the generated networks' rule)
            "anchor_tolerance": dict(ANCHOR_TOLERANCE),
            "rebuild_errors": {},  # dtype -> largest relative error of a rebuilt state
            "recomputed_segments": {},  # dtype -> segments recomputed because they drifted
            "preserve_rng_state": None,  # None: replay random states when dropout is active
        }

    # -- predicted memory -------------------------------------------------------------------------
    def measure(self, rec: Recurrence, options: dict, standard, example, compile_network):
        """The float32 anchor interval a reversible copy of ``standard`` settles on after one
        training backward on ``example`` (None when reversible does not apply or is exact)."""
        try:
            plan = self.plan(rec)
        except UsageError:
            return None
        if plan.exact:  # rebuilt exactly: no anchors to measure
            return None
        net = compile_network(rec, **{**options, "memory": self.name}).float()
        net.load_state_dict(standard.state_dict())
        net.train()(example.float()).sum().backward()
        return int(net.anchor_steps["float32"])

    def estimate(self, rec: Recurrence, profile, measured=None) -> MemoryEstimate:
        """A stage keeps its first step's saved bytes, the last states and the anchors; while its
        backward runs, one step's saved bytes at a time. The anchor interval is the planned one,
        or ``measured`` (what a reversible copy settled on after one backward) when shorter."""
        reason = self.refusal(rec)
        if reason is not None:
            return MemoryEstimate(self.name, None, note=reason)
        inverse = invert(rec)
        if not inverse.invertible:
            return MemoryEstimate(self.name, None, note=f"not invertible: {inverse.reason}")
        try:
            plan = self.plan(rec, inverse=inverse)
        except UsageError as exc:  # rebuilding is useless, or its growth unknown: say why
            return MemoryEstimate(self.name, None, note=exc.message)
        if plan.exact:
            return _exact_estimate(self.name, profile, plan.exact)
        planned = plan.anchor_steps["float32"]
        interval = planned if measured is None else min(planned, measured)

        def rebuilt(s):  # the last states and the anchors (the first states among them); one step
            first, rest = split_first_step(profile, s)
            if len(rest) < profile.kept:  # too short to rebuild: run as usual
                return first + sum(rest), 0.0
            anchors = math.ceil(len(rest) / interval)
            kept = (
                profile.fresh(s, end=True) + profile.fresh(s, start=True) + (anchors - 1) * profile.fresh(s)
            )
            return first + kept, max(rest)

        resident, peak = peak_memory(profile, rebuilt)
        a = plan.anchor_steps
        detail = f"anchors every {interval} steps in float32 ({a['bfloat16']} in bfloat16)"
        if interval < planned:
            detail += (
                f"; planned {planned} from the formula, shortened by the drift its blocks showed in a"
                " first backward (the interval follows the drift each backward measures)"
            )
        return MemoryEstimate(self.name, round(peak), round(resident), round(peak - resident), detail)


def _exact_estimate(mode: str, profile, equations) -> MemoryEstimate:
    """Exact rebuilding: a stage keeps its first states, its last states in fixed point (int64:
    twice a float32 state) and the bit store's words (one per divided equation, plus one for
    every 62 bits its coefficient p/q drops over the stage's steps); backward, one step."""
    divided = [abs(math.log2(e.q / abs(e.p))) for e in equations if e.q != 1]

    def rebuilt(s):
        first, rest = split_first_step(profile, s)
        if len(rest) < profile.kept:
            return first + sum(rest), 0.0
        words = sum(1 + int(len(rest) * bits // 62) for bits in divided)
        fixed = 2 * (profile.kept + words) * profile.state[s]
        return first + profile.fresh(s, start=True) + fixed, max(rest)

    resident, peak = peak_memory(profile, rebuilt)
    detail = "exact rebuild: fixed-point states and a bit store for the division, no anchors"
    return MemoryEstimate(mode, round(peak), round(resident), round(peak - resident), detail)
