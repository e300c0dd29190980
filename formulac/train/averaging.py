"""Weight averaging: an exponential moving average (EMA) of a model's weights, evaluated in
place of the weights the optimizer left (Polyak averaging; timm's ``ModelEmaV2`` idea)."""

from __future__ import annotations

import copy

import torch
import torch.nn as nn

__all__ = ["WeightAverage"]


class WeightAverage:
    """``model`` holds ``decay``-weighted averages of a network's parameters and floating-point
    buffers (batch-norm statistics); integer buffers are copied.

    The decay warms up as ``min(decay, (1 + t) / (10 + t))`` after ``t`` updates, so that the
    first averages are not dominated by the random initial weights in a short run."""

    def __init__(self, net: nn.Module, decay: float):
        if not 0 < decay < 1:
            raise ValueError(f"decay must be in (0, 1), not {decay}")
        self.decay = decay
        self.updates = 0
        self.model = copy.deepcopy(net).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self._pairs = self._match(net)

    def _match(self, net: nn.Module):
        ours = dict(self.model.named_parameters()) | dict(self.model.named_buffers())
        theirs = dict(net.named_parameters()) | dict(net.named_buffers())
        averaged = [(ours[k], v) for k, v in theirs.items() if v.is_floating_point()]
        copied = [(ours[k], v) for k, v in theirs.items() if not v.is_floating_point()]
        return averaged, copied

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self) -> None:
        """Move the average towards the network's present weights by one step."""
        self.updates += 1
        weight = 1.0 - self.current_decay()
        averaged, copied = self._pairs
        if averaged:
            torch._foreach_lerp_([a for a, _ in averaged], [b.detach() for _, b in averaged], weight)
        for a, b in copied:
            a.copy_(b)

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "updates": self.updates, "decay": self.decay}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.updates = int(state["updates"])
