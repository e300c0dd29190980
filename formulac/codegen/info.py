"""Facts about a compiled network: parameters, multiply-adds, states kept, stage layout."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..ir import Recurrence
from .emit import _carry
from .plan import plan_step

__all__ = ["NetworkInfo", "network_info", "count_multiply_adds"]


@dataclass(frozen=True)
class NetworkInfo:
    parameters: int
    multiply_adds: int
    input_shape: tuple[int, ...]
    states_kept: list[str]
    stages: list[dict]

    def to_json(self) -> dict:
        return {
            "parameters": self.parameters,
            "multiply_adds": self.multiply_adds,
            "input_shape": list(self.input_shape),
            "states_kept": self.states_kept,
            "stages": self.stages,
        }

    def to_text(self) -> str:
        lines = [
            f"parameters     {self.parameters:,}",
            f"multiply-adds  {self.multiply_adds:,} per image (input {'x'.join(map(str, self.input_shape))})",
            f"states kept    {', '.join(self.states_kept)}",
            "stages",
        ]
        for st in self.stages:
            lines.append(
                f"  {st['name']:<8} {st['steps']:>3} steps  width {st['width']:>5}  stride {st['stride']}"
                f"  parameters {st['parameters']:,}"
            )
        return "\n".join(lines)


def count_multiply_adds(model: nn.Module, example: torch.Tensor) -> int:
    """Multiply-adds of convolutions and linear layers for one forward pass of ``example``."""
    total = 0

    def conv_hook(module: nn.Conv2d, inputs, output):
        nonlocal total
        kernel = module.weight[0].numel()  # in_channels/groups * kh * kw
        total += output.numel() * kernel

    def linear_hook(module: nn.Linear, inputs, output):
        nonlocal total
        total += output.numel() * module.in_features

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(example)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return total // example.shape[0]


def network_info(rec: Recurrence, model: nn.Module, input_size: int, in_channels: int) -> NetworkInfo:
    example = torch.zeros(1, in_channels, input_size, input_size)
    stages = []
    for name, child in model.named_children():
        if isinstance(child, nn.ModuleList) and len(child) and type(child[0]).__name__ == "FormulaStep":
            first = child[0]
            stages.append(
                {
                    "name": name,
                    "steps": len(child),
                    "width": _out_width(first),
                    "stride": _stride(first),
                    "parameters": sum(p.numel() for p in child.parameters()),
                }
            )
    kept = _carry(plan_step(rec)).names()
    return NetworkInfo(
        parameters=sum(p.numel() for p in model.parameters()),
        multiply_adds=count_multiply_adds(model, example),
        input_shape=(in_channels, input_size, input_size),
        states_kept=kept,
        stages=stages,
    )


def _layers(step: nn.Module):
    return [m for m in step.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def _out_width(step: nn.Module) -> int:
    layers = _layers(step)
    if not layers:
        return 0
    last = [m for m in layers if m is not getattr(step, "downsample", None)][-1]
    return last.out_channels if isinstance(last, nn.Conv2d) else last.out_features


def _stride(step: nn.Module) -> int:
    convs = [m for m in step.modules() if isinstance(m, nn.Conv2d)]
    return max((c.stride[0] for c in convs), default=1)
