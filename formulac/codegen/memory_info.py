"""Predicted activation memory of a compiled network under each memory mode.

One instrumented training forward of the standard network on a small batch records the bytes
autograd saves for backward (each storage once, parameters excluded): which step saved them, or
which stretch between stages (stem, projections, head), and the bytes of the states each step
hands on. The modes differ only in what a stage keeps for its backward:

* ``standard``: everything its steps saved;
* ``checkpoint``: its shape-changing first step's saved bytes, the states at each segment's
  start, and while its backward runs, one segment's saved bytes at a time;
* ``reversible``: its first step's saved bytes, the last states and the anchors, and while its
  backward runs, one step's saved bytes at a time. The anchor interval is the planned one, or
  the shorter one a reversible copy settles on after one backward (the blocks' drift); a
  segment that drifts later is recomputed as ``checkpoint`` would (not counted here).

The backward runs the stages from the last to the first and frees what each kept, so the peak
is the largest, over the stages, of what everything up to a stage keeps plus that stage's
transient (and, at the backward's start, of all that is kept). Figures are per image: activation
memory grows linearly with the batch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from ..analysis.invertibility import invert
from ..errors import UsageError
from ..ir import Recurrence
from ..limits import DEFAULT_BACKBONE
from .backbones import get_backbone
from .reversible import check_supported, memory_plan

__all__ = [
    "MemoryEstimate",
    "ActivationProfile",
    "activation_profile",
    "predict_memory",
    "saved_bytes_recorder",
]


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


@dataclass
class ActivationProfile:
    """Saved bytes per image, in forward order: ``between[k]`` before stage ``k`` (after stage
    ``k - 1``; the last entry is the head), and per stage, per step."""

    between: list = field(default_factory=list)
    steps: list = field(default_factory=list)  # per stage: [saved bytes of step 0, 1, ...]
    state: list = field(default_factory=list)  # per stage: bytes of one state (x_n)
    first_standard: list = field(default_factory=list)  # per stage: the first step changes shape
    kept: int = 1  # how many states a step hands on (x_n, x_nm1, v_n, ...)
    aliases: int = 1  # how many of them start as the stage input itself (x_n = x_0, x_nm1 = x_0)

    def fresh(self, s: int, start: bool = False, end: bool = False) -> float:
        """Bytes of the states kept at one point of stage ``s`` that nothing else keeps: at the
        end the output state is the next stage's (or the head's) saved input; at the start, when
        the stage runs from its input, the states that are that input."""
        shared = 1 if end else (self.aliases if start and not self.first_standard[s] else 0)
        return (self.kept - shared) * self.state[s]

    @property
    def total(self) -> float:
        return sum(self.between) + sum(sum(s) for s in self.steps)


def _step_lists(model: nn.Module) -> list[nn.ModuleList]:
    return [
        child
        for child in model.children()
        if isinstance(child, nn.ModuleList) and len(child) and type(child[0]).__name__ == "FormulaStep"
    ]


def activation_profile(
    model: nn.Module, example: torch.Tensor, kept_states: int, aliases: int = 1
) -> ActivationProfile:
    """Instrument one training forward of a standard-mode ``model`` on ``example``; a step
    hands on ``kept_states`` states, ``aliases`` of which start as the stage input."""
    stages = _step_lists(model)
    owner = [None]  # (stage, step) while a step runs
    done = [-1]  # the last stage whose step has run
    profile = ActivationProfile(
        between=[0.0] * (len(stages) + 1),
        steps=[[0.0] * len(s) for s in stages],
        state=[0.0] * len(stages),
        first_standard=[s[0].downsample is not None for s in stages],
        kept=kept_states,
        aliases=aliases,
    )
    batch = example.shape[0]
    pack = saved_bytes_recorder(profile, model, batch, owner, done)

    handles = []
    for s, steps in enumerate(stages):
        for i, step in enumerate(steps):

            def pre(module, args, where=(s, i)):
                owner[0] = where

            def post(module, args, output, where=(s, i)):
                owner[0] = None
                done[0] = where[0]
                outs = output if isinstance(output, tuple) else (output,)
                state = outs[-1] if outs else None
                if isinstance(state, torch.Tensor):
                    profile.state[where[0]] = state.numel() * state.element_size() / batch

            handles.append(step.register_forward_pre_hook(pre))
            handles.append(step.register_forward_hook(post))
    was = model.training
    model.train()
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(example)
    finally:
        model.train(was)
        for h in handles:
            h.remove()
    return profile


def _peak(profile: ActivationProfile, stage_memory) -> tuple[float, float]:
    """(resident at the backward's start, peak) when stage ``s`` keeps ``stage_memory(s)[0]``
    and needs ``stage_memory(s)[1]`` more while its backward runs."""
    kept = [stage_memory(s) for s in range(len(profile.steps))]
    resident = sum(profile.between) + sum(k for k, _ in kept)
    peak = resident
    below = profile.between[0]
    for s, (k, extra) in enumerate(kept):
        peak = max(peak, below + k + extra)
        below += k + profile.between[s + 1]
    return resident, peak


def predict_memory(
    rec: Recurrence, profile: ActivationProfile, segment: int | None = None, measured: int | None = None
) -> list[MemoryEstimate]:
    """Per-image activation memory of each mode from a standard network's profile; ``measured``
    is the float32 anchor interval a reversible network settled on after a backward (its blocks'
    drift), used in place of the planned one when shorter."""
    out = [MemoryEstimate("standard", round(profile.total), round(profile.total), 0)]

    def split(s):
        saved = profile.steps[s]
        start = 1 if profile.first_standard[s] else 0
        return sum(saved[:start]), saved[start:]

    sizes = set()

    def checkpointed(s):  # the states at each segment's start; backward, one segment at a time
        first, rest = split(s)
        if not rest:
            return first, 0.0
        size = segment or max(1, round(math.sqrt(len(rest))))
        sizes.add(size)
        segments = [rest[j : j + size] for j in range(0, len(rest), size)]
        starts = profile.fresh(s, start=True) + (len(segments) - 1) * profile.fresh(s)
        return first + starts, max(sum(seg) for seg in segments)

    refused = {}
    for mode in ("checkpoint", "reversible"):  # what checkpoint refuses, reversible refuses too
        try:
            check_supported(rec, mode)
        except UsageError as exc:
            refused[mode] = exc.message
    if "checkpoint" in refused:
        return out + [MemoryEstimate(mode, None, note=note) for mode, note in refused.items()]
    resident, peak = _peak(profile, checkpointed)
    detail = "segments of " + ", ".join(map(str, sorted(sizes))) + " steps" if sizes else ""
    out.append(MemoryEstimate("checkpoint", round(peak), round(resident), round(peak - resident), detail))
    if "reversible" in refused:  # it reads a start (x_0) at every step
        return out + [MemoryEstimate("reversible", None, note=refused["reversible"])]
    inverse = invert(rec)
    if not inverse.invertible:
        out.append(MemoryEstimate("reversible", None, note=f"not invertible: {inverse.reason}"))
        return out
    try:
        plan = memory_plan(rec, "reversible")
    except UsageError as exc:  # rebuilding is useless, or its growth unknown: say why
        out.append(MemoryEstimate("reversible", None, note=exc.message))
        return out

    planned = plan.anchor_steps["float32"]
    interval = planned if measured is None else min(planned, measured)

    def rebuilt(s):  # the last states and the anchors (the first states among them); one step
        first, rest = split(s)
        if len(rest) < profile.kept:  # too short to rebuild: run as usual
            return first + sum(rest), 0.0
        anchors = math.ceil(len(rest) / interval)
        kept = profile.fresh(s, end=True) + profile.fresh(s, start=True) + (anchors - 1) * profile.fresh(s)
        return first + kept, max(rest)

    if plan.exact:
        return out + [_exact_estimate(profile, plan.exact, split)]
    resident, peak = _peak(profile, rebuilt)
    a = plan.anchor_steps
    detail = f"anchors every {interval} steps in float32 ({a['bfloat16']} in bfloat16)"
    if interval < planned:
        detail += (
            f"; planned {planned} from the formula, shortened by the drift its blocks showed in a"
            " first backward (the interval follows the drift each backward measures)"
        )
    out.append(MemoryEstimate("reversible", round(peak), round(resident), round(peak - resident), detail))
    return out


def _exact_estimate(profile: ActivationProfile, equations, split) -> MemoryEstimate:
    """Exact rebuilding: a stage keeps its first states, its last states in fixed point (int64:
    twice a float32 state) and the bit store's words (one per divided equation, plus one for
    every 62 bits its coefficient p/q drops over the stage's steps); backward, one step."""
    divided = [abs(math.log2(e.q / abs(e.p))) for e in equations if e.q != 1]

    def rebuilt(s):
        first, rest = split(s)
        if len(rest) < profile.kept:
            return first + sum(rest), 0.0
        words = sum(1 + int(len(rest) * bits // 62) for bits in divided)
        fixed = 2 * (profile.kept + words) * profile.state[s]
        return first + profile.fresh(s, start=True) + fixed, max(rest)

    resident, peak = _peak(profile, rebuilt)
    detail = "exact rebuild: fixed-point states and a bit store for the division, no anchors"
    return MemoryEstimate("reversible", round(peak), round(resident), round(peak - resident), detail)


def memory_estimates(
    rec: Recurrence, compile_options: dict, in_channels: int, input_size: int
) -> list[MemoryEstimate]:
    """Compile ``rec`` in standard mode, profile a training forward of two images (batch norm
    needs more than one), and predict every mode's activation memory per image."""
    from . import compile_network
    from .emit import _carry
    from .plan import plan_step

    options = {**compile_options, "memory": "standard"}
    model = compile_network(rec, **options)
    backbone = get_backbone(compile_options.get("backbone", DEFAULT_BACKBONE))
    generator = torch.Generator().manual_seed(0)
    example = backbone.example_input(2, in_channels, input_size, generator=generator, options=compile_options)
    from ..ir import state

    lags = _carry(plan_step(rec)).lags
    x0 = state(rec.output, 0)
    aliases = sum(rec.initial_value(s, -k) == x0 for s, depth in lags.items() for k in range(depth))
    profile = activation_profile(model, example, sum(lags.values()), aliases)
    return predict_memory(rec, profile, measured=_measured_interval(rec, options, model, example))


def _measured_interval(rec: Recurrence, options: dict, standard: nn.Module, example: torch.Tensor):
    """The float32 anchor interval a reversible copy of ``standard`` settles on after one
    training backward on ``example`` (None when reversible does not apply)."""
    from . import compile_network

    try:
        plan = memory_plan(rec, "reversible")
    except UsageError:
        return None
    if plan.exact:  # rebuilt exactly: no anchors to measure
        return None
    net = compile_network(rec, **{**options, "memory": "reversible"}).float()
    net.load_state_dict(standard.state_dict())
    net.train()(example.float()).sum().backward()
    return int(net.anchor_steps["float32"])


def memory_text(estimates: list[MemoryEstimate]) -> str:
    """The table ``formulac info --memory`` prints."""
    lines = ["activation memory per image (predicted from a profiled training forward)"]
    for e in estimates:
        if e.bytes_per_image is None:
            lines.append(f"  {e.mode:<11} -  ({e.note})")
        else:
            extra = f"  {e.detail}" if e.detail else ""
            lines.append(f"  {e.mode:<11} {_size(e.bytes_per_image):>10}{extra}")
    return "\n".join(lines)


def _size(n: float) -> str:
    for unit, scale in (("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{int(n)} B"


def saved_bytes_recorder(profile, model, batch: int, owner: list, done: list):
    """A ``saved_tensors_hooks`` pack function that adds the bytes per example of each tensor
    autograd saves (each storage once, parameters not) to ``profile``: to the step
    ``owner[0] = (stage, step)`` while one runs, else to the gap after step ``done[0]``."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: set[int] = set()

    def pack(t):
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in seen and ptr not in params:
            seen.add(ptr)
            size = storage.nbytes() / batch
            if owner[0] is None:
                profile.between[done[0] + 1] += size
            else:
                s, i = owner[0]
                profile.steps[s][i] += size
        return t

    return pack
