"""``transformers.GPT2LMHeadModel`` keys -> a network compiled on the ``gpt`` backbone.

Hugging Face's layer ``i`` becomes step ``i`` of the formula: its attention (``ln_1``,
``attn.c_attn``, ``attn.c_proj``) goes to the step's one attention sublayer, its MLP (``ln_2``,
``mlp.c_fc``, ``mlp.c_proj``) to the step's one MLP sublayer, wherever the formula put them
(blocks ``A`` and ``M``, or the two halves of ``F``). GPT-2's ``Conv1D`` stores its weight as
``(in, out)``: it is transposed into ``nn.Linear``'s ``(out, in)``. The LM head is tied to the
token embedding in both models: ``lm_head.weight`` must equal ``transformer.wte.weight`` and
has no key of its own in the network. The causal-mask buffers of older versions
(``attn.bias``, ``attn.masked_bias``) are dropped: the network masks through
``scaled_dot_product_attention(is_causal=True)``.
"""

from __future__ import annotations

import torch

from ..errors import UsageError
from .keys import take_modules
from .steps import step_sublayers

__all__ = ["convert"]

# Hugging Face's modules outside the layers -> ours
_OUTSIDE = {
    "transformer.wte": "token_embedding",
    "transformer.wpe": "position_embedding",
    "transformer.ln_f": "final_norm",
}
# Hugging Face's module within layer i -> (the sublayer's module, a Conv1D whose weight is transposed?)
_ATTENTION = {"ln_1": ("ln", False), "attn.c_attn": ("c_attn", True), "attn.c_proj": ("c_proj", True)}
_MLP = {"ln_2": ("ln", False), "mlp.c_fc": ("c_fc", True), "mlp.c_proj": ("c_proj", True)}
_MASK_BUFFERS = ("attn.bias", "attn.masked_bias")


def convert(net, state_dict: dict) -> dict:
    """The network's state_dict built from Hugging Face's; keys it cannot place are kept as
    they are (so that :func:`formulac.hf.load` names them)."""
    rest = {key.removeprefix("module."): value for key, value in state_dict.items()}
    head = rest.pop("lm_head.weight", None)
    embedding = rest.get("transformer.wte.weight")
    if head is not None and (embedding is None or not torch.equal(head, embedding)):
        raise UsageError(
            "hf.load: lm_head.weight differs from transformer.wte.weight; the gpt backbone ties its "
            "LM head to the token embedding (GPT2Config(tie_word_embeddings=True))"
        )
    out = take_modules(rest, _OUTSIDE)
    for i, (attention, mlp) in enumerate(step_sublayers(net, "GPTAttention", "GPTMLP", "GPT-2")):
        prefix = f"transformer.h.{i}."
        for buffer in _MASK_BUFFERS:
            rest.pop(prefix + buffer, None)
        for table, module in ((_ATTENTION, attention), (_MLP, mlp)):
            for theirs, (ours, transposed) in table.items():
                for key, value in take_modules(rest, {prefix + theirs: f"{module}.{ours}"}).items():
                    out[key] = value.t().contiguous() if transposed and key.endswith(".weight") else value
    out.update(rest)
    return out
