"""The activation memory a forward pass keeps for backward, measured by autograd's own hooks
(an independent check of what formulac predicts and saves)."""

import torch


def saved_bytes(model, forward) -> int:
    """Bytes autograd saves for backward in ``forward()`` (each storage once, ``model``'s
    parameters excluded)."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        forward()
    return sum(seen.values())
