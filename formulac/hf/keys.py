"""Hugging Face keys moved to a compiled network's names, as every mapping module moves them."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["take", "take_modules"]


def take(rest: dict, renames: Mapping[str, str]) -> dict:
    """The tensors of ``rest`` under the keys ``renames`` names (theirs -> ours), removed from
    ``rest``, under our names; a key ``rest`` lacks is passed over (where two of theirs have one
    name of ours, the later found wins)."""
    return {ours: rest.pop(theirs) for theirs, ours in renames.items() if theirs in rest}


def take_modules(rest: dict, renames: Mapping[str, str]) -> dict:
    """:func:`take` for whole modules (theirs -> ours, module paths): each one's ``weight`` and
    ``bias``."""
    return take(
        rest,
        {
            f"{theirs}.{part}": f"{ours}.{part}"
            for theirs, ours in renames.items()
            for part in ("weight", "bias")
        },
    )
