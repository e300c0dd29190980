"""What a transform built: the stacks, the parameters it added, predicted activation memory.

The memory figures come from :mod:`formulac.codegen.memory_info`: one training forward of the
transformed model, in standard mode, on the user's example records the bytes autograd saves
(each storage once, parameters excluded), by step of each stack or outside the stacks; each
mode's peak is predicted from that profile as for a compiled network. Figures are per sample
(the first dimension of the example's first tensor).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..codegen.memory_info import (
    ActivationProfile,
    MemoryEstimate,
    memory_text,
    predict_memory,
    saved_bytes_recorder,
)
from ..codegen.memory_modes import DEFAULT_MEMORY_MODE
from ..ir import Recurrence, state
from .stack import FormulaStack

__all__ = ["TransformInfo", "StackInfo", "transform_info"]


@dataclass(frozen=True)
class StackInfo:
    path: str
    blocks: int
    steps: int  # blocks the formula runs (those after the leading shape-changing ones)
    coefficient_keys: tuple[str, ...]  # state_dict keys of the formula's learned coefficients


@dataclass(frozen=True)
class TransformInfo:
    formula: str
    memory: str
    weights: str  # "copy" or "share"
    stacks: tuple[StackInfo, ...]
    parameters: int  # of the transformed model
    parameters_added: int
    memory_estimates: tuple[MemoryEstimate, ...] | None = None  # per sample; None without an example
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"formula: {'; '.join(self.formula.strip().splitlines())}"]
        lines.append(f"memory={self.memory!r}, weights {'copied' if self.weights == 'copy' else 'shared'}")
        for s in self.stacks:
            ran = f"{s.steps} steps" + (
                f" after {s.blocks - s.steps} shape-changing" if s.steps < s.blocks else ""
            )
            lines.append(f"  {s.path}: {s.blocks} blocks, {ran}")
        lines.append(f"parameters: {self.parameters:,} ({self.parameters_added:,} added by the formula)")
        keys = [k for s in self.stacks for k in s.coefficient_keys]
        if keys:
            shown = ", ".join(keys[:6]) + (f", ... ({len(keys)} keys)" if len(keys) > 6 else "")
            lines.append(f"added state_dict keys: {shown}")
        if self.memory_estimates is not None:
            lines.append(memory_text(list(self.memory_estimates)).replace("per image", "per sample"))
        return "\n".join(lines)


def _stacks(model: nn.Module) -> list[FormulaStack]:
    return [m for m in model.modules() if isinstance(m, FormulaStack)]


def transform_info(model: nn.Module, rec: Recurrence, record: dict, example=None) -> TransformInfo:
    """The figures of a transformed ``model``; with ``example`` (``(args, kwargs)`` of one call
    of the model) also the predicted activation memory of each mode."""
    stacks = _stacks(model)
    infos = []
    added = 0
    for stack in stacks:
        keys = tuple(f"{stack.path}.formula.{name}" for name, _ in stack.formula.named_parameters())
        added += sum(p.numel() for p in stack.formula.parameters())
        infos.append(StackInfo(stack.path, len(stack), len(stack.steps), keys))
    total = sum(p.numel() for p in model.parameters())
    estimates = None
    if example is not None:
        estimates = tuple(predict_memory(rec, _profile(model, stacks, rec, record["kept"], *example)))
    return TransformInfo(
        record["formula"], record["memory"], record["weights"], tuple(infos), total, added, estimates
    )


def _first_tensor(args, kwargs):
    for value in (*args, *kwargs.values()):
        if isinstance(value, torch.Tensor):
            return value
    raise TypeError("info(example): the example has no tensor")


def _profile(model, stacks, rec: Recurrence, kept: list, args: tuple, kwargs: dict) -> ActivationProfile:
    x0 = state(rec.output, 0)
    lags: dict[str, int] = {}
    for name in kept:  # x_n, x_nm1, v_n: the state before the last underscore
        lags[name.rpartition("_")[0]] = lags.get(name.rpartition("_")[0], 0) + 1
    aliases = sum(rec.initial_value(s, -k) == x0 for s, depth in lags.items() for k in range(depth))
    profile = ActivationProfile(
        between=[0.0] * (len(stacks) + 1),
        steps=[[0.0] * len(s.steps) for s in stacks],
        state=[0.0] * len(stacks),
        first_standard=[False] * len(stacks),
        kept=len(kept),
        aliases=aliases,
    )
    batch = _first_tensor(args, kwargs).shape[0]
    owner = [None]
    done = [-1]
    pack = saved_bytes_recorder(profile, model, batch, owner, done)

    def watcher(s, stack):
        def watch(j, states=None):
            if j is not None:
                owner[0] = (s, j)
                return
            owner[0] = None
            done[0] = s
            out = states[stack.output_index] if states else None
            if isinstance(out, torch.Tensor):
                profile.state[s] = out.numel() * out.element_size() / batch

        return watch

    modes = [stack.memory for stack in stacks]
    was = model.training
    model.train()
    try:
        for s, stack in enumerate(stacks):
            stack.memory = DEFAULT_MEMORY_MODE
            stack.watch = watcher(s, stack)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(*args, **kwargs)
    finally:
        model.train(was)
        for stack, mode in zip(stacks, modes):
            stack.memory = mode
            stack.watch = None
    return profile
