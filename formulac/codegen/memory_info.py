"""Predicted activation memory of a compiled network under each memory mode.

One instrumented training forward of the standard network on a small batch records the bytes
autograd saves for backward (each storage once, parameters excluded) and which step saved them,
and the bytes of the states each step hands on. The modes then differ only in what they keep:

* ``standard``: everything saved;
* ``checkpoint``: outside the checkpointed steps as standard, the states at each segment
  boundary, and during backward one segment's saved bytes at a time;
* ``reversible``: outside the rebuilt steps as standard, the last states and the anchors of each
  stage, and during backward one step's saved bytes at a time.

The prediction is resident bytes at the end of the forward plus the largest transient during the
backward, per image (activation memory grows linearly with the batch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from ..analysis.invertibility import invert
from ..errors import UsageError
from ..ir import Recurrence
from .reversible import memory_plan

__all__ = ["MemoryEstimate", "ActivationProfile", "activation_profile", "predict_memory"]


@dataclass(frozen=True)
class MemoryEstimate:
    mode: str
    bytes_per_image: int | None  # None: the mode does not apply (note says why)
    resident: int = 0  # per image, kept from the end of the forward into the backward
    transient: int = 0  # per image, the largest extra during the backward
    detail: str = ""  # anchor interval, segment length
    note: str | None = None

    def to_json(self) -> dict:
        return {
            "mode": self.mode,
            "bytes_per_image": self.bytes_per_image,
            "resident": self.resident,
            "transient": self.transient,
            "detail": self.detail,
            "note": self.note,
        }


@dataclass
class ActivationProfile:
    """Saved bytes per image: outside the stages' steps, and per stage, per step."""

    outside: float = 0.0
    steps: list = field(default_factory=list)  # per stage: [saved bytes of step 0, 1, ...]
    carried: list = field(default_factory=list)  # per stage: bytes of the states a step hands on
    first_standard: list = field(default_factory=list)  # per stage: the first step changes shape
    kept: int = 1  # how many states a step hands on (x_n, x_nm1, v_n, ...)

    @property
    def total(self) -> float:
        return self.outside + sum(sum(s) for s in self.steps)


def _step_lists(model: nn.Module) -> list[nn.ModuleList]:
    return [
        child
        for child in model.children()
        if isinstance(child, nn.ModuleList) and len(child) and type(child[0]).__name__ == "FormulaStep"
    ]


def activation_profile(model: nn.Module, example: torch.Tensor, kept_states: int) -> ActivationProfile:
    """Instrument one training forward of a standard-mode ``model`` on ``example``."""
    stages = _step_lists(model)
    owner = [None]
    profile = ActivationProfile(
        steps=[[0.0] * len(s) for s in stages],
        carried=[0.0] * len(stages),
        first_standard=[s[0].downsample is not None for s in stages],
        kept=kept_states,
    )
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: set[int] = set()
    batch = example.shape[0]

    def pack(t):
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in seen and ptr not in params:
            seen.add(ptr)
            size = storage.nbytes() / batch
            if owner[0] is None:
                profile.outside += size
            else:
                s, i = owner[0]
                profile.steps[s][i] += size
        return t

    handles = []
    for s, steps in enumerate(stages):
        for i, step in enumerate(steps):

            def pre(module, args, where=(s, i)):
                owner[0] = where

            def post(module, args, output, where=(s, i)):
                owner[0] = None
                outs = output if isinstance(output, tuple) else (output,)
                state = outs[-1] if outs else None
                if isinstance(state, torch.Tensor):
                    profile.carried[where[0]] = kept_states * state.numel() * state.element_size() / batch

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


def _runs(profile: ActivationProfile) -> tuple[float, list]:
    """Bytes kept as in standard mode (outside the steps, and shape-changing first steps), and
    per stage the saved bytes of the steps a memory mode runs, with the bytes of their states."""
    kept = profile.outside
    runs = []
    for saved, carried, first in zip(profile.steps, profile.carried, profile.first_standard):
        start = 1 if first else 0
        kept += sum(saved[:start])
        if saved[start:]:
            runs.append((saved[start:], carried))
    return kept, runs


def predict_memory(
    rec: Recurrence, profile: ActivationProfile, segment: int | None = None
) -> list[MemoryEstimate]:
    """Per-image activation memory of each mode from a standard network's profile."""
    out = [MemoryEstimate("standard", round(profile.total), round(profile.total), 0)]
    # checkpoint: the states at each segment's start; backward, one segment's saved bytes
    resident, runs = _runs(profile)
    transient = 0.0
    sizes = set()
    for rest, carried in runs:
        size = segment or max(1, round(math.sqrt(len(rest))))
        sizes.add(size)
        segments = [rest[j : j + size] for j in range(0, len(rest), size)]
        resident += carried * len(segments)
        transient = max(transient, max(sum(seg) for seg in segments))
    detail = "segments of " + ", ".join(map(str, sorted(sizes))) + " steps" if sizes else ""
    out.append(
        MemoryEstimate("checkpoint", round(resident + transient), round(resident), round(transient), detail)
    )
    inverse = invert(rec)
    if not inverse.invertible:
        out.append(MemoryEstimate("reversible", None, note=f"not invertible: {inverse.reason}"))
        return out
    try:
        plan = memory_plan(rec, "reversible")
    except UsageError as exc:  # rebuilding is useless, or its growth unknown: say why
        out.append(MemoryEstimate("reversible", None, note=exc.message))
        return out
    # reversible: the last states and the anchors (the first states among them); backward, one step
    resident, runs = _runs(profile)
    transient = 0.0
    for rest, carried in runs:
        if len(rest) < profile.kept:  # too short to rebuild: run as usual
            resident += sum(rest)
            continue
        resident += carried * (1 + math.ceil(len(rest) / plan.anchor_steps["float32"]))
        transient = max(transient, max(rest))
    a = plan.anchor_steps
    detail = f"anchors every {a['float32']} steps in float32 ({a['bfloat16']} in bfloat16)"
    out.append(
        MemoryEstimate("reversible", round(resident + transient), round(resident), round(transient), detail)
    )
    return out


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
    example = torch.randn(2, in_channels, input_size, input_size, generator=torch.Generator().manual_seed(0))
    kept = sum(_carry(plan_step(rec)).lags.values())
    return predict_memory(rec, activation_profile(model, example, kept))


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
