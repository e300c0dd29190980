"""Facts about a compiled network: parameters, multiply-adds, states kept, stage layout."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from ..ir import Recurrence
from ..limits import DEFAULT_BACKBONE
from .backbones import get_backbone
from .emit import carried
from .plan import plan_step
from .streams import compact_form

__all__ = ["NetworkInfo", "network_info", "count_multiply_adds"]


@dataclass(frozen=True)
class NetworkInfo:
    parameters: int
    multiply_adds: int
    input_shape: tuple[int, ...]
    states_kept: list[str]
    stages: list[dict]
    #: stream state -> its number of streams (a ``stream h[4]`` formula keeps ``h_n`` stacked)
    streams: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "parameters": self.parameters,
            "multiply_adds": self.multiply_adds,
            "input_shape": list(self.input_shape),
            "states_kept": self.states_kept,
            "stages": self.stages,
            "streams": self.streams,
        }

    def to_text(self) -> str:
        lines = [
            f"parameters     {self.parameters:,}",
            f"multiply-adds  {self.multiply_adds:,} per example (input {'x'.join(map(str, self.input_shape))})",
            f"states kept    {', '.join(_kept_text(name, self.streams) for name in self.states_kept)}",
            "stages",
        ]
        for st in self.stages:
            lines.append(
                f"  {st['name']:<8} {st['steps']:>3} steps  width {st['width']:>5}  stride {st['stride']}"
                f"  parameters {st['parameters']:,}"
            )
        return "\n".join(lines)


def count_multiply_adds(model: nn.Module, example: torch.Tensor) -> int:
    """Multiply-adds per example of one forward pass of ``example``: every convolution, matrix
    product and attention the network runs, as ``torch.utils.flop_counter`` counts them
    (two floating-point operations per multiply-add)."""
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False, custom_mapping=_CPU_ATTENTION)
    try:
        with torch.no_grad(), counter:
            model(example)
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2 // example.shape[0]


def _cpu_attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


# the fused CPU attention kernel, which torch's counter does not know (its GPU kernels it does)
_CPU_ATTENTION = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention_flops}


def network_info(
    rec: Recurrence,
    model: nn.Module,
    input_size: int,
    in_channels: int,
    backbone: str = DEFAULT_BACKBONE,
    options: dict | None = None,
) -> NetworkInfo:
    """The facts of ``model`` (compiled from ``rec`` on ``backbone`` with ``options``), counted
    on the backbone's example input of one example."""
    example = get_backbone(backbone).example_input(1, in_channels, input_size, options=options)
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
    built = compact_form(rec)  # a stream formula keeps its streams stacked, as one tensor
    kept = carried(plan_step(built)).names()
    return NetworkInfo(
        parameters=sum(p.numel() for p in model.parameters()),
        multiply_adds=count_multiply_adds(model, example),
        input_shape=tuple(example.shape[1:]),
        states_kept=kept,
        stages=stages,
        streams=dict(built.streams),
    )


def _kept_text(name: str, streams) -> str:
    """``h_n (4 streams)`` for a stream state, the variable's name otherwise."""
    state = name.rpartition("_")[0]
    return f"{name} ({streams[state]} streams)" if state in streams else name


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
