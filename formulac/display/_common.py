"""What the display functions accept: formulas in any form, or analyses; labels; depths."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..ir import Recurrence
from ..limits import DEFAULT_DISPLAY_DEPTH as DEFAULT_DEPTH
from ..parse import as_recurrence


def analysis_module():
    from .. import analysis  # loaded when something is analysed, not when formulac is imported

    return analysis


def _is_analysis(item: Any) -> bool:
    return isinstance(item, analysis_module().Analysis)


def label_of(item: Any) -> str:
    """A short name: the file's stem for loaded formulas."""
    name = getattr(item, "name", None)
    if not isinstance(name, str):
        try:
            name = as_recurrence(item).name
        except TypeError:
            name = None
    if isinstance(item, Path):
        name = str(item)
    if not name or name.startswith("<"):
        return "formula"
    return Path(name).stem


def as_list(items) -> list:
    if isinstance(items, (str, Path, Recurrence)) or _is_analysis(items) or not isinstance(items, Iterable):
        return [items]
    return list(items)


def labels_for(items: list, labels: Sequence[str] | None) -> list[str]:
    if labels is None:
        return [label_of(item) for item in items]
    labels = list(labels)
    if len(labels) != len(items):
        raise UsageError(f"{len(labels)} labels for {len(items)} formulas")
    return [str(label) for label in labels]


def analyses_of(items: list, depth: int | None, params: str = "init") -> list:
    """An analysis for every item (computed at ``depth`` unless the item is one already)."""
    out = []
    for item in items:
        if _is_analysis(item):
            out.append(item)
            continue
        rec = as_recurrence(item)
        out.append(analysis_module().analyze(rec, depth=depth or DEFAULT_DEPTH, params=params))
    return out


def check_depth(depth: int | None, maximum: int | None = None, what: str = "depth") -> None:
    if depth is None:
        return
    if isinstance(depth, bool) or not isinstance(depth, int):
        raise UsageError(f"{what} must be a whole number, not {depth!r}")
    if depth < 1:
        raise UsageError(f"{what} must be at least 1, not {depth}")
    if maximum is not None and depth > maximum:
        raise UsageError(f"{what} {depth} is too large to draw (at most {maximum})")
