"""``transformers.ViTForImageClassification`` keys -> a network compiled on the ``vit`` backbone.

Hugging Face's layer ``i`` becomes step ``i`` of the formula: its attention (``layernorm_before``,
``query``/``key``/``value`` joined into one ``qkv``, ``attention.output.dense``) goes to the
step's one attention sublayer, its MLP (``layernorm_after``, ``intermediate.dense``,
``output.dense``) to the step's one MLP sublayer, wherever the formula put them (blocks ``A``
and ``M``, or the two halves of ``F``).
"""

from __future__ import annotations

import torch

from ..errors import UsageError

__all__ = ["convert"]

_EMBEDDINGS = {
    "vit.embeddings.cls_token": "cls_token",
    "vit.embeddings.position_embeddings": "position",
    "vit.embeddings.patch_embeddings.projection.weight": "patch_embed.weight",
    "vit.embeddings.patch_embeddings.projection.bias": "patch_embed.bias",
    "vit.layernorm.weight": "norm.weight",
    "vit.layernorm.bias": "norm.bias",
    "classifier.weight": "classifier.weight",
    "classifier.bias": "classifier.bias",
}
_ATTENTION = {
    "layernorm_before": "norm",
    "attention.output.dense": "out",
}
_MLP = {
    "layernorm_after": "norm",
    "intermediate.dense": "fc1",
    "output.dense": "fc2",
}


def convert(net, state_dict: dict) -> dict:
    """The network's state_dict built from Hugging Face's; keys it cannot place are kept as
    they are (so that :func:`formulac.hf.load` names them)."""
    out, rest = {}, dict(state_dict)
    for theirs, ours in _EMBEDDINGS.items():
        if theirs in rest:
            out[ours] = rest.pop(theirs)
    for i, (attention, mlp) in enumerate(_sublayers(net)):
        prefix = f"vit.encoder.layer.{i}."
        for part in ("weight", "bias"):
            names = [f"{prefix}attention.attention.{q}.{part}" for q in ("query", "key", "value")]
            if all(name in rest for name in names):
                out[f"{attention}.qkv.{part}"] = torch.cat([rest.pop(name) for name in names], dim=0)
            for theirs, ours in _ATTENTION.items():
                if f"{prefix}{theirs}.{part}" in rest:
                    out[f"{attention}.{ours}.{part}"] = rest.pop(f"{prefix}{theirs}.{part}")
            for theirs, ours in _MLP.items():
                if f"{prefix}{theirs}.{part}" in rest:
                    out[f"{mlp}.{ours}.{part}"] = rest.pop(f"{prefix}{theirs}.{part}")
    out.update(rest)
    return out


def _sublayers(net) -> list[tuple[str, str]]:
    """(attention, MLP) module paths of every step, in order; each step must have one of each."""
    pairs = []
    for stage, steps in net.named_children():
        if not isinstance(steps, torch.nn.ModuleList) or not len(steps):
            continue
        if type(steps[0]).__name__ != "FormulaStep":
            continue
        for i, step in enumerate(steps):
            kinds = {"ViTAttention": [], "ViTMLP": []}
            for name, module in step.named_modules():
                for cls in type(module).__mro__:
                    if cls.__name__ in kinds:
                        kinds[cls.__name__].append(name)
                        break
            if len(kinds["ViTAttention"]) != 1 or len(kinds["ViTMLP"]) != 1:
                raise UsageError(
                    f"hf.load: step {i} of the network has {len(kinds['ViTAttention'])} attention and "
                    f"{len(kinds['ViTMLP'])} MLP sublayers; a Hugging Face ViT layer has one of each"
                )
            path = f"{stage}.{i}"
            pairs.append(
                tuple(
                    f"{path}.{name}" if name else path
                    for name in (kinds["ViTAttention"][0], kinds["ViTMLP"][0])
                )
            )
    return pairs
