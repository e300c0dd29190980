"""What a memory mode is (no torch here): one object per mode, registered in :mod:`.memory_modes`.

A memory mode decides how a compiled network keeps its activations for the backward pass. It
carries everything the generator, the stream step of ``transform``, the CLI and
``info --memory`` ask of it:

* its plan (:meth:`MemoryMode.plan`), with the reasons it refuses a formula;
* the names it reserves on the step and network classes, the runtime definitions copied from
  :mod:`.memory_runtime` into the file (``runtime_names``) and the runtime function that runs a
  stage's steps (``runner``, given ``runner_attributes`` of the network or stack);
* what it adds to the step class (``advance``, ``retreat``), to ``FormulaNet`` (class attributes,
  ``__init__`` lines) and to ``run_stage``;
* its predicted activation memory from a profiled standard forward (:meth:`MemoryMode.estimate`).

:class:`MemoryMode` itself is ``standard``: autograd keeps every activation, the steps run in
the plain loop and nothing is added.
"""

from __future__ import annotations

import ast
import inspect
from dataclasses import asdict, dataclass

import sympy

from ..analysis.invertibility import Invertibility, Reconstruction
from ..errors import UsageError
from ..ir import Recurrence, rebuild, references, windows_written_out
from ..limits import DEFAULT_MEMORY_MODE
from .plan import StepPlan, TorchPrinter, ordered_block_calls, var_name
from .source_format import INDENT

__all__ = [
    "MemoryMode",
    "MemoryPlan",
    "MemoryEstimate",
    "RESERVED_NAMES",
    "StepCalls",
    "advance_method",
    "history_refusal",
    "kept_names",
    "peak_memory",
    "split_first_step",
    "states_tuple",
]

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


@dataclass(frozen=True)
class MemoryPlan:
    """How a network keeps its activations: the mode, and for ``reversible`` the anchor
    interval per dtype of the states (steps between states kept exactly), the error growth of
    rebuilding, the exact rebuild's equations when it applies, and the formula's inverse
    (``invert(rec)``, computed once per compile and read by the step's ``retreat``)."""

    mode: str
    anchor_steps: dict  # dtype name -> steps; empty unless reversible
    reconstruction: Reconstruction | None = None
    exact: tuple = ()  # the equations of the exact rebuild (ExactEquation), when it applies
    inverse: Invertibility | None = None


@dataclass(frozen=True)
class MemoryEstimate:
    mode: str
    bytes_per_image: int | None  # None: the mode does not apply (note says why)
    resident: int = 0  # per image, kept at the end of the forward
    transient: int = 0  # per image, how far the backward's peak rises above it
    detail: str = ""  # anchor interval, segment length
    note: str | None = None

    def to_json(self) -> dict:
        return asdict(self)


def peak_memory(profile, stage_memory) -> tuple[float, float]:
    """(resident at the backward's start, peak) when stage ``s`` of ``profile`` (an
    ``ActivationProfile``) keeps ``stage_memory(s)[0]`` and needs ``stage_memory(s)[1]`` more
    while its backward runs; the backward runs the stages last to first."""
    kept = [stage_memory(s) for s in range(len(profile.steps))]
    resident = sum(profile.between) + sum(k for k, _ in kept)
    peak = resident
    below = profile.between[0]
    for s, (k, extra) in enumerate(kept):
        peak = max(peak, below + k + extra)
        below += k + profile.between[s + 1]
    return resident, peak


def split_first_step(profile, s: int) -> tuple[float, list]:
    """(saved bytes of stage ``s``'s shape-changing first step, or 0; the other steps' list):
    every mode runs a first step that changes shape as standard does."""
    saved = profile.steps[s]
    start = 1 if profile.first_standard[s] else 0
    return sum(saved[:start]), saved[start:]


def history_refusal(rec: Recurrence, mode: str, *, starts: bool = False) -> str | None:
    """Why a mode that runs a stage's steps from the states they keep cannot run ``rec``: a sum
    over the whole history, or a read of a fixed state at every step; None when it can. With
    ``starts`` the mode takes reads of a start ``s_0`` (x0-mixing's ``x_0``): the stage keeps it
    and hands it to every segment as it is."""
    for eq in rec.equations:
        # a window (limits that follow n) is lags the step keeps, like x_<n-2>
        if windows_written_out(eq.rhs).has(sympy.Sum):
            return (
                f"memory={mode!r}: {rec.name} sums over the whole history, which every step keeps; "
                "use memory='standard'"
            )
        for ref in references(eq.rhs):
            if ref.variable is None and not (starts and ref.shift == 0):
                index = ref.shift if ref.shift >= 0 else f"<{ref.shift}>"
                instead = "memory='checkpoint'" if ref.shift == 0 else "memory='standard'"
                return (
                    f"memory={mode!r} does not support formulas that read {ref.name}_{index} at every "
                    f"step yet; use {instead}"
                )
    return None


# -- the step's advance method ----------------------------------------------------------------------


def kept_names(lags: dict[str, int]) -> tuple[list[str], list[str]]:
    """Names of the kept states before a step (``x_n, x_nm1``) and after it (``x_next, x_n``)."""
    before = [var_name(s, -k) for s, depth in lags.items() for k in range(depth)]
    after = [var_name(s, 1 - k) for s, depth in lags.items() for k in range(depth)]
    return before, after


@dataclass
class StepCalls:
    """What ``advance`` names and a mode's further methods reuse: the printer, each block
    call's local variable and index in ``call(index, ...)``, the kept states before and after
    a step, and the keyword-only shared parameters."""

    printer: TorchPrinter
    locals_: dict
    index: dict
    before: list[str]
    after: list[str]
    keyword: list[str]


def advance_method(rec: Recurrence, plan: StepPlan, lags: dict[str, int]) -> tuple[list[str], StepCalls]:
    """The step class's ``advance`` method: the step on the states it keeps, each block call
    made through a callback ``call(index, block, argument)``; and what it named."""
    by_equation = ordered_block_calls(plan.equations)
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

    printer = TorchPrinter(rec, plan, subs)
    printer.block_vars = dict(locals_)
    body = list(plan.prologue)  # input-dependent coefficients of the step (codegen/dynamic.py)
    defined: set[str] = set()
    # the user's terms in evaluation order, so that advance computes exactly what forward does
    for state_name, expr in plan.equations:
        for call in by_equation[state_name]:
            key = rebuild(call)
            if locals_[key] not in defined:
                defined.add(locals_[key])
                body.append(
                    f"{locals_[key]} = call({index[key]}, self.{call.block}, {printer.emit(call.argument)})"
                )
        body.append(f"{var_name(state_name, 1)} = {printer.emit(expr)}")
    lines = [
        f"{INDENT}def advance({', '.join(['self', 'call', *before, *keyword])}):",
        f'{INDENT * 2}"""The step on the states it keeps; each block call goes through'
        f" call(index, block, argument).\"\"\"",
    ]
    lines += [f"{INDENT * 2}{line}" for line in body]
    lines.append(f"{INDENT * 2}return {states_tuple(after)}")
    return lines, StepCalls(printer, locals_, index, before, after, keyword)


def states_tuple(names: list[str]) -> str:
    """The kept states as a returned tuple (a one-element tuple keeps its comma)."""
    return f"({names[0]},)" if len(names) == 1 else ", ".join(names)


# -- the mode -----------------------------------------------------------------------------------------


class MemoryMode:
    """A memory mode; this base is ``standard`` (autograd keeps every activation). A new mode
    subclasses it, overrides what it changes and is registered in :mod:`.memory_modes`."""

    name = DEFAULT_MEMORY_MODE
    #: One phrase for ``--memory``'s help.
    description = "autograd keeps every activation"
    #: Names of the step and network classes this mode's code uses (a parameter is renamed).
    reserved_names: frozenset = frozenset()
    #: Definitions of :mod:`.memory_runtime` copied, in this order, into a compiled file.
    runtime_names: tuple = ()
    #: The runtime function that runs a stage's steps after its first (None: the plain loop),
    #: called with the steps, the kept states, the shared parameters and these attributes.
    runner: str | None = None
    runner_attributes: tuple = ()

    # -- the plan ---------------------------------------------------------------------------
    def refusal(self, rec: Recurrence) -> str | None:
        """Why this mode cannot run ``rec`` (one message), or None."""
        return None

    def plan(self, rec: Recurrence, inverse: Invertibility | None = None) -> MemoryPlan:
        """Check that ``rec`` can run under this mode (a ``UsageError`` saying why not) and
        plan it; ``inverse`` is ``invert(rec)`` when the caller has it already."""
        reason = self.refusal(rec)
        if reason is not None:
            raise UsageError(reason)
        return MemoryPlan(self.name, {})

    # -- the code ---------------------------------------------------------------------------
    def step_methods(self, rec: Recurrence, plan: StepPlan, lags: dict, mplan: MemoryPlan) -> list[str]:
        """The step class's methods that the runtime (or a transformed stack) calls."""
        return advance_method(rec, plan, lags)[0]

    def step_class_lines(self, rec: Recurrence, plan: StepPlan, lags: dict, mplan: MemoryPlan) -> list[str]:
        """What this mode adds to a compiled network's step class (nothing in the plain loop)."""
        if self.runner is None:
            return []
        return ["", *self.step_methods(rec, plan, lags, mplan)]

    def network_attribute_lines(self, mplan: MemoryPlan, indent: str) -> list[str]:
        """Class attributes of ``FormulaNet`` that steer the mode."""
        return []

    def init_lines(self, mplan: MemoryPlan, indent: str) -> list[str]:
        """Lines of ``FormulaNet.__init__`` that give each network its own settings."""
        return []

    def stage_lines(self, plan: StepPlan, lags: dict, indent: str, loop_lines) -> list[str]:
        """The steps of ``run_stage``; ``loop_lines(steps_expression)`` is the plain loop. A mode
        with a runner runs a shape-changing first step as usual and hands the rest to it."""
        if self.runner is None:
            return loop_lines("steps")
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
        lines.append(f"{indent}{states} = {self.runner}(")
        lines += [f"{indent}{INDENT}{a}" for a in self.runner_argument_lines(states, shared)]
        lines.append(f"{indent})")
        return lines

    def runner_argument_lines(self, states: str, shared: str) -> list[str]:
        """The runner's arguments in ``run_stage``, one line each ending in a comma."""
        attributes = "".join(f" self.{a}," for a in self.runner_attributes)
        return [f"steps[first:], ({states}), dict({shared}),{attributes}"]

    def runtime_lines(self) -> list[str]:
        """The torch-only runtime definitions this mode needs, copied from :mod:`.memory_runtime`."""
        if not self.runtime_names:
            return []
        from . import memory_runtime

        lines = [f"# --- memory={self.name!r}: running a stage's steps with less activation memory ---", ""]
        for name in self.runtime_names:
            value = getattr(memory_runtime, name)
            if isinstance(value, (tuple, dict)):
                source = _assignment_source(memory_runtime, name)
            else:
                source = inspect.getsource(value)
            lines += source.rstrip("\n").splitlines() + ["", ""]
        return lines

    def stream_attributes(self, mplan: MemoryPlan) -> dict:
        """Attributes a transformed stack (``transform``) holds for this mode, fresh values."""
        return {}

    # -- predicted memory -------------------------------------------------------------------
    def measure(self, rec: Recurrence, options: dict, standard, example, compile_network):
        """Something this mode's estimate needs from a real network (``standard``, compiled with
        ``options``, and an ``example`` input), or None."""
        return None

    def estimate(self, rec: Recurrence, profile, measured=None) -> MemoryEstimate:
        """Per-image activation memory from a standard network's ``ActivationProfile``."""
        return MemoryEstimate(self.name, round(profile.total), round(profile.total), 0)


def _assignment_source(module, name: str) -> str:
    text = inspect.getsource(module)
    for node in ast.parse(text).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return ast.get_source_segment(text, node)
    raise KeyError(name)
