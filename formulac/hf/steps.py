"""Where each step of a compiled transformer keeps its attention and MLP sublayers, which is
where a Hugging Face layer's weights go, wherever the formula put the blocks."""

from __future__ import annotations

import torch

from ..errors import UsageError

__all__ = ["step_sublayers"]


def step_sublayers(net, attention_class: str, mlp_class: str, hf_model: str) -> list[tuple[str, str]]:
    """(attention, MLP) module paths of every step, in order: the modules of classes named
    ``attention_class`` and ``mlp_class`` (or subclasses); each step must have one of each, as
    a layer of Hugging Face's ``hf_model`` has."""
    pairs = []
    for stage, steps in net.named_children():
        if (
            not isinstance(steps, torch.nn.ModuleList)
            or not len(steps)
            or type(steps[0]).__name__ != "FormulaStep"
        ):
            continue
        for i, step in enumerate(steps):
            kinds: dict[str, list[str]] = {attention_class: [], mlp_class: []}
            for name, module in step.named_modules():
                kind = next((c.__name__ for c in type(module).__mro__ if c.__name__ in kinds), None)
                if kind is not None:
                    kinds[kind].append(name)
            if len(kinds[attention_class]) != 1 or len(kinds[mlp_class]) != 1:
                raise UsageError(
                    f"hf.load: step {i} of the network has {len(kinds[attention_class])} attention and "
                    f"{len(kinds[mlp_class])} MLP sublayers; a Hugging Face {hf_model} layer has one of each"
                )
            path = f"{stage}.{i}"
            pairs.append(
                tuple(
                    f"{path}.{name}" if name else path
                    for name in (kinds[attention_class][0], kinds[mlp_class][0])
                )
            )
    return pairs
