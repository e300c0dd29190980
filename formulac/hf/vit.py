"""``transformers.ViTForImageClassification`` keys -> a network compiled on the ``vit`` backbone.

Hugging Face's layer ``i`` becomes step ``i`` of the formula: its attention (``layernorm_before``,
``query``/``key``/``value`` joined into one ``qkv``, ``attention.output.dense``) goes to the
step's one attention sublayer, its MLP (``layernorm_after``, ``intermediate.dense``,
``output.dense``) to the step's one MLP sublayer, wherever the formula put them (blocks ``A``
and ``M``, or the two halves of ``F``).
"""

from __future__ import annotations

import torch

from .keys import take, take_modules
from .steps import step_sublayers

__all__ = ["convert"]

# outside the layers, Hugging Face's -> ours: parameters, and modules (their weight and bias)
_PARAMETERS = {"vit.embeddings.cls_token": "cls_token", "vit.embeddings.position_embeddings": "position"}
_MODULES = {
    "vit.embeddings.patch_embeddings.projection": "patch_embed",
    "vit.layernorm": "norm",
    "classifier": "classifier",
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
    rest = dict(state_dict)
    out = take(rest, _PARAMETERS) | take_modules(rest, _MODULES)
    for i, (attention, mlp) in enumerate(step_sublayers(net, "ViTAttention", "ViTMLP", "ViT")):
        for prefix in (p.format(i=i) for p in _LAYER_PREFIXES):
            for part in ("weight", "bias"):
                for names in _QKV:
                    keys = [f"{prefix}{name}.{part}" for name in names]
                    if all(key in rest for key in keys):
                        out[f"{attention}.qkv.{part}"] = torch.cat([rest.pop(key) for key in keys], dim=0)
            for module, table in ((attention, _ATTENTION), (mlp, _MLP)):
                renames = {
                    prefix + theirs: f"{module}.{ours}" for ours, names in table.items() for theirs in names
                }
                out.update(take_modules(rest, renames))
    out.update(rest)
    return out
