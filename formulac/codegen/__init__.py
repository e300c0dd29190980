"""Formulas -> PyTorch: wire user blocks by a formula, or build a whole network on a backbone.

Both paths generate Python source (:mod:`.emit`) and execute it, so the module in memory is
exactly the module that ``formulac compile -o model.py`` writes.
"""

from __future__ import annotations

import itertools
import linecache
import types

from ..errors import UsageError
from ..ir import Recurrence
from ..limits import DEFAULT_BACKBONE, DEFAULT_MEMORY_MODE
from .backbones import BACKBONES, get_backbone
from .dynamic import require_width
from .emit import (
    is_generated_module,
    network_dynamic_attributes,
    network_layout,
    network_parameter_attributes,
    network_source,
    require_blocks,
    wire_source,
)
from .plan import PlanError, plan_step
from .streams import compact_form

__all__ = [
    "compile_source",
    "compile_network",
    "parameter_attributes",
    "dynamic_parameter_attributes",
    "check_buildable",
    "wire",
    "load_source",
    "is_generated_module",
    "get_backbone_info",
    "BACKBONES",
    "PlanError",
]

_counter = itertools.count()


def load_source(source: str, name: str) -> types.ModuleType:
    """Execute generated source as a fresh module (tracebacks show its lines)."""
    filename = f"<formulac:{name}:{next(_counter)}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    module = types.ModuleType(f"formulac_generated_{name}")
    module.__file__ = filename
    exec(compile(source, filename, "exec"), module.__dict__)
    return module


def get_backbone_info(name: str):
    """The registered backbone, or a :class:`BackboneError` naming the known ones."""
    return get_backbone(name)


def compile_source(
    rec: Recurrence,
    backbone: str = DEFAULT_BACKBONE,
    depth: int | None = None,
    num_classes: int | None = None,
    in_channels: int | None = None,
    transition: str = "reset",
    memory: str = DEFAULT_MEMORY_MODE,
    **options,
) -> str:
    """The standalone source of the network (``FormulaNet``) for a formula on a backbone;
    ``memory`` names a registered memory mode (:mod:`.memory_modes`)."""
    info = get_backbone_info(backbone)
    resolved = info.resolve(depth=depth, **options)
    return network_source(
        rec,
        info,
        resolved,
        transition=transition,
        num_classes=info.default_num_classes if num_classes is None else num_classes,
        in_channels=info.default_in_channels if in_channels is None else in_channels,
        memory=memory,
    )


def parameter_attributes(
    rec: Recurrence,
    backbone: str = DEFAULT_BACKBONE,
    depth: int | None = None,
    memory: str = DEFAULT_MEMORY_MODE,
    **options,
) -> dict[str, str]:
    """Formula parameter name -> the attribute of :func:`compile_source`'s network that holds
    it (``k``, or ``k_param`` where the backbone or the memory mode uses the name)."""
    info = get_backbone_info(backbone)
    return network_parameter_attributes(rec, info, info.resolve(depth=depth, **options), memory)


def dynamic_parameter_attributes(
    rec: Recurrence,
    backbone: str = DEFAULT_BACKBONE,
    depth: int | None = None,
    memory: str = DEFAULT_MEMORY_MODE,
    **options,
) -> dict[str, dict[str, str]]:
    """Input-dependent parameter (``+ dynamic(s_n)``) -> the attributes of :func:`compile_source`'s
    steps that hold its static part (``static``), projection (``map``), scale (``scale``) and the
    norm gain of the state it reads (``gain``)."""
    info = get_backbone_info(backbone)
    return network_dynamic_attributes(rec, info, info.resolve(depth=depth, **options), memory)


def check_buildable(rec: Recurrence) -> None:
    """Plan the network of ``rec`` without torch, as ``compile`` does: a :class:`PlanError`
    (with the statement's line and column) for anything ``compile`` would refuse on every
    backbone. Free symbols are allowed: they are given values later (``--set``)."""
    rec = compact_form(rec)
    plan = plan_step(rec, free_symbols=True)
    require_blocks(rec, plan)
    # widths on a small two-stage layout: every rule about them shows in the first steps
    nominal = get_backbone_info("mlp")
    depth = (rec.order or 1) + 2
    network_layout(rec, plan, nominal, nominal.resolve(depth=depth, stages=[8, 16]), "reset")


def compile_network(rec: Recurrence, **kwargs):
    """Build the network in memory: ``FormulaNet()`` from :func:`compile_source`."""
    source = compile_source(rec, **kwargs)
    return load_source(source, "net").FormulaNet()


def wire(rec: Recurrence, blocks: dict, width: int | None = None):
    """An ``nn.Module`` mapping x_0 to x_N by the formula, with the user's modules as blocks.
    ``width``: the states' features (dimension 1), needed by input-dependent coefficients only."""
    names = list(rec.blocks)
    missing = [b for b in names if b not in blocks]
    if missing:
        raise UsageError(f"wire: no modules for block{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    extra = [b for b in blocks if b not in names]
    if extra:
        raise UsageError(
            f"wire: the formula has no block {', '.join(map(str, extra))} (its blocks: {', '.join(names)})"
        )
    lengths = {b: len(blocks[b]) for b in names}
    if len(set(lengths.values())) > 1:
        raise UsageError(f"wire: every block needs one module per step; got {lengths}")
    sizes = require_width(compact_form(rec), width, "wire")
    module = load_source(wire_source(rec), "wire")
    return module.Recurrence({b: list(blocks[b]) for b in names}, **sizes)
