"""Apply a formula to a model the user already has: ``formulac.transform(model, formula)``.

The model is copied (or its weights shared, ``weights="share"``); each residual stack of the
copy (:mod:`.stacks`) is replaced by a :class:`~.stack.FormulaStack` that runs the formula with
the user's blocks as its block functions (:mod:`.branches`), in the memory mode asked for. The
copy keeps its class (a subclass of it, which adds :meth:`Transformed.info`) and every key of
its state_dict; the formula's learned coefficients are added under ``<stack>.formula.``.
"""

from __future__ import annotations

import copy

from torch import nn

from ..callable_package import make_callable
from ..codegen.stream import stream_code
from ..errors import UsageError
from ..formula import Formula
from ..parse import as_recurrence
from .branches import PRESETS, branch_specs, check_paths
from .report import StackInfo, TransformInfo, transform_info
from .stack import BlockCall, FormulaStack
from .stacks import find_stacks, stack_candidates

__all__ = [
    "transform",
    "Transformed",
    "TransformInfo",
    "StackInfo",
    "FormulaStack",
    "BlockCall",
    "PRESETS",
    "stack_candidates",
]

WEIGHTS = ("copy", "share")


class Transformed:
    """Added to a transformed model's class: what the transform did, and its figures."""

    def info(self, *example, **example_kwargs) -> TransformInfo:
        """Stacks, parameters added (with their state_dict keys) and, given an example call of
        the model (``model.info(input_ids)``), the predicted activation memory per sample of
        each memory mode (one training forward, in standard mode, is profiled)."""
        record = self.formulac_transform
        example = (example, example_kwargs) if example or example_kwargs else None
        return transform_info(self, record["rec"], record, example)

    @property
    def formula_stacks(self) -> list[FormulaStack]:
        """The stacks that run the formula."""
        return [m for m in self.modules() if isinstance(m, FormulaStack)]


_CLASSES: dict[type, type] = {}


def _transformed_class(cls: type) -> type:
    if cls not in _CLASSES:
        _CLASSES[cls] = type(f"Transformed{cls.__name__}", (Transformed, cls), {"__module__": __name__})
    return _CLASSES[cls]


def _copy(model: nn.Module, weights: str) -> nn.Module:
    if weights not in WEIGHTS:
        raise UsageError(f"transform: weights={weights!r}; choose 'copy' or 'share'")
    memo = {}
    if weights == "share":  # the copy's parameters and buffers are the model's own tensors
        memo = {id(t): t for t in (*model.parameters(), *model.buffers())}
    return copy.deepcopy(model, memo)


def _replace(root: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, name, module)


def transform(
    model: nn.Module,
    formula,
    stacks=None,
    *,
    blocks="residual",
    memory: str = "standard",
    weights: str = "copy",
    **values,
) -> nn.Module:
    """A new model in which each residual stack of ``model`` runs ``formula``.

    ``formula``: a ``Formula``, a ``Recurrence``, formula text, or a ``.rec`` file as a
    :class:`~pathlib.Path` (a ``str`` is always formula text; :func:`formulac.parse.as_recurrence`).
    ``stacks``: a dotted path (``"transformer.h"``) or a list of them; None finds them (the
    outermost ``nn.ModuleList``/``nn.Sequential`` of two or more blocks of one class; an error
    lists the candidates when they hold blocks of different classes). ``blocks``: how each of the
    formula's block functions comes from a user's block, ``"residual"`` (``block(x) - x``), a
    submodule path or a sequence of them, a function ``fn(block, x)``, a mapping block name ->
    one of these, or a preset (``"gpt2"``, ``"vit"``); see :mod:`formulac.transform.branches`.
    ``memory``: a registered memory mode (``formulac.codegen.memory_modes``: "standard",
    "reversible", "checkpoint", ...). ``weights``: "copy" (the new model
    owns a deep copy; the default) or "share" (its parameters and buffers are ``model``'s own
    tensors: training one trains the other). ``values`` bind the formula's free symbols. The
    user's model is never modified.
    """
    if not isinstance(model, nn.Module):
        raise UsageError(f"transform: the model must be an nn.Module, not {type(model).__name__}")
    rec = as_recurrence(formula)
    if values:
        rec = rec.bind(**values)
    rec.require_bound("transform")
    code = stream_code(rec, memory)
    paths = find_stacks(model, stacks)
    kinds = branch_specs(blocks, code.blocks, model.get_submodule(paths[0])[0])
    for path in paths:  # refuse a missing submodule before copying anything
        for i, block in enumerate(model.get_submodule(path)):
            check_paths(kinds, block, f"{path}.{i}")
    new = _copy(model, weights)
    for path in paths:
        _replace(new, path, FormulaStack(list(new.get_submodule(path)), kinds, code, path))
    base = type(model)
    new.__class__ = _transformed_class(base)
    new.formulac_transform = {
        "rec": rec,
        "formula": Formula(rec).to_rec(),
        "stacks": paths,
        "memory": memory,
        "weights": weights,
        "kept": list(code.kept),
    }
    return new


make_callable(__name__, transform)
