"""Hugging Face weights in compiled networks: ``load(net, state_dict)``.

A compiled network (``formulac.compile``) on a backbone that has a Hugging Face counterpart
takes that model's weights: :func:`load` finds the backbone from the network's classes, maps
every key of the Hugging Face ``state_dict`` to the network's own, and copies the tensors.
Keys that have no place, places that get no key, and shapes that differ are refused in one
:class:`HFLoadError` that lists them. A backbone's mapping is one module of this package and
one line of :data:`MAPPINGS` (the net class it maps to -> the module).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping

from ..errors import UsageError

__all__ = ["load", "MAPPINGS", "HFLoadError"]

#: net class of a backbone file -> the module of this package that maps Hugging Face keys to it
MAPPINGS: dict[str, str] = {
    "ViTNet": __name__ + ".vit",
    "GPTNet": __name__ + ".gpt2",
}


class HFLoadError(UsageError):
    """A Hugging Face state_dict that does not fit the compiled network."""


def load(net, state_dict: Mapping) -> None:
    """Copy the Hugging Face ``state_dict`` into the compiled network ``net`` (in place).

    The mapping is chosen by the backbone ``net`` was compiled on (e.g. ``ViTNet`` for
    ``transformers.ViTForImageClassification``). Every key must map to a tensor of the same
    shape, and every tensor of ``net`` must receive one; otherwise :class:`HFLoadError` says
    which keys and shapes do not fit.
    """
    module = _mapping_for(net)
    if not isinstance(state_dict, Mapping):  # e.g. the Hugging Face model itself
        raise HFLoadError(
            f"hf.load: give a state_dict (a mapping of names to tensors, model.state_dict()), "
            f"not a {type(state_dict).__name__}"
        )
    mapped = module.convert(net, dict(state_dict))
    own = net.state_dict()
    unknown = sorted(set(mapped) - set(own))
    missing = sorted(set(own) - set(mapped))
    shapes = [
        f"{key}: {tuple(mapped[key].shape)} for {tuple(own[key].shape)}"
        for key in sorted(set(mapped) & set(own))
        if tuple(mapped[key].shape) != tuple(own[key].shape)
    ]
    problems = []
    if unknown:
        problems.append("keys with no place in the network: " + ", ".join(unknown))
    if missing:
        problems.append("tensors of the network that no key fills: " + ", ".join(missing))
    if shapes:
        problems.append("shapes that differ (Hugging Face's for the network's): " + "; ".join(shapes))
    if problems:
        raise HFLoadError("hf.load: the state_dict does not fit the network: " + "; ".join(problems))
    net.load_state_dict(mapped, strict=True)


def _mapping_for(net):
    for cls in type(net).__mro__:
        if cls.__name__ in MAPPINGS:
            return importlib.import_module(MAPPINGS[cls.__name__])
    bases = ", ".join(c.__name__ for c in type(net).__mro__[:-1])
    raise HFLoadError(
        f"hf.load: no Hugging Face mapping for a network of classes {bases} "
        f"(mappings exist for: {', '.join(MAPPINGS)})"
    )
