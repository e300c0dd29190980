"""``transformers.ViTForImageClassification`` keys -> a network compiled on the ``vit`` backbone.

Hugging Face's layer ``i`` becomes step ``i`` of the formula: its attention (``layernorm_before``,
``query``/``key``/``value`` joined into one ``qkv``, ``attention.output.dense``) goes to the
step's one attention sublayer, its MLP (``layernorm_after``, ``intermediate.dense``,
``output.dense``) to the step's one MLP sublayer, wherever the formula put them (blocks ``A``
and ``M``, or the two halves of ``F``).
"""

from __future__ import annotations

import torch

from .steps import step_sublayers

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
# the names of transformers 4 (encoder.layer.i, query/key/value, intermediate/output) and of
# transformers 5 (layers.i, q/k/v/o_proj, mlp.fc1/fc2), each: ours -> theirs
_LAYER_PREFIXES = ("vit.encoder.layer.{i}.", "vit.layers.{i}.")
_QKV = (
    ("attention.attention.query", "attention.attention.key", "attention.attention.value"),
    ("attention.q_proj", "attention.k_proj", "attention.v_proj"),
)
_ATTENTION = {"norm": ("layernorm_before",), "out": ("attention.output.dense", "attention.o_proj")}
_MLP = {
    "norm": ("layernorm_after",),
    "fc1": ("intermediate.dense", "mlp.fc1"),
    "fc2": ("output.dense", "mlp.fc2"),
}


def convert(net, state_dict: dict) -> dict:
    """The network's state_dict built from Hugging Face's; keys it cannot place are kept as
    they are (so that :func:`formulac.hf.load` names them)."""
    out, rest = {}, dict(state_dict)
    for theirs, ours in _EMBEDDINGS.items():
        if theirs in rest:
            out[ours] = rest.pop(theirs)
    for i, (attention, mlp) in enumerate(step_sublayers(net, "ViTAttention", "ViTMLP", "ViT")):
        for prefix in (p.format(i=i) for p in _LAYER_PREFIXES):
            for part in ("weight", "bias"):
                for names in _QKV:
                    keys = [f"{prefix}{name}.{part}" for name in names]
                    if all(key in rest for key in keys):
                        out[f"{attention}.qkv.{part}"] = torch.cat([rest.pop(key) for key in keys], dim=0)
                for module, table in ((attention, _ATTENTION), (mlp, _MLP)):
                    for ours, candidates in table.items():
                        for theirs in candidates:
                            if f"{prefix}{theirs}.{part}" in rest:
                                out[f"{module}.{ours}.{part}"] = rest.pop(f"{prefix}{theirs}.{part}")
    out.update(rest)
    return out
