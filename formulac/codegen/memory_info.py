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

from dataclasses import dataclass, field

import torch
from torch import nn

from ..ir import Recurrence, state
from ..limits import DEFAULT_BACKBONE
from . import memory_modes
from .backbones import get_backbone
from .memory_mode import MemoryEstimate
from .memory_modes import DEFAULT_MEMORY_MODE
from .plan import plan_step

__all__ = [
    "MemoryEstimate",
    "ActivationProfile",
    "activation_profile",
    "predict_memory",
    "saved_bytes_recorder",
]


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


def predict_memory(
    rec: Recurrence, profile: ActivationProfile, measured: dict | None = None
) -> list[MemoryEstimate]:
    """Per-image activation memory of every registered mode from a standard network's profile;
    ``measured`` maps a mode's name to what its :meth:`~.memory_mode.MemoryMode.measure` found
    (reversible: the float32 anchor interval a reversible copy settled on after a backward)."""
    measured = measured or {}
    return [
        mode.estimate(rec, profile, measured.get(name)) for name, mode in memory_modes.MEMORY_MODES.items()
    ]


def memory_estimates(
    rec: Recurrence, compile_options: dict, in_channels: int, input_size: int
) -> list[MemoryEstimate]:
    """Compile ``rec`` in standard mode, profile a training forward of two images (batch norm
    needs more than one), and predict every mode's activation memory per image."""
    from . import compile_network

    options = {**compile_options, "memory": DEFAULT_MEMORY_MODE}
    model = compile_network(rec, **options)
    backbone = get_backbone(compile_options.get("backbone", DEFAULT_BACKBONE))
    generator = torch.Generator().manual_seed(0)
    example = backbone.example_input(2, in_channels, input_size, generator=generator, options=compile_options)
    lags = dict(plan_step(rec).lags)
    x0 = state(rec.output, 0)
    aliases = sum(rec.initial_value(s, -k) == x0 for s, depth in lags.items() for k in range(depth))
    profile = activation_profile(model, example, sum(lags.values()), aliases)
    measured = {
        name: mode.measure(rec, options, model, example, compile_network)
        for name, mode in memory_modes.MEMORY_MODES.items()
    }
    return predict_memory(rec, profile, measured)


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
