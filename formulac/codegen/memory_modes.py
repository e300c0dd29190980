"""The memory modes by name: the values of ``memory=`` and of the CLI's ``--memory``.

A new mode is one module (a :class:`~.memory_mode.MemoryMode` subclass) and one line in
:data:`MEMORY_MODES` below, or a call to :func:`register_memory_mode`; the CLI's choices and
help, ``info --memory``'s table and ``formulac.compile(memory=...)`` read this registry.
"""

from __future__ import annotations

from ..errors import UsageError
from ..limits import DEFAULT_MEMORY_MODE
from .checkpoint import CheckpointMode
from .memory_mode import MemoryMode
from .reversible import ReversibleMode

__all__ = [
    "DEFAULT_MEMORY_MODE",
    "MEMORY_MODES",
    "get_memory_mode",
    "memory_mode_names",
    "memory_modes_help",
    "register_memory_mode",
]

#: Name -> mode, in the order ``info --memory`` lists them.
MEMORY_MODES: dict[str, MemoryMode] = {
    mode.name: mode for mode in (MemoryMode(), CheckpointMode(), ReversibleMode())
}


def register_memory_mode(mode: MemoryMode) -> MemoryMode:
    """Add ``mode`` under its name (a ``ValueError`` when the name is taken); returns it."""
    if mode.name in MEMORY_MODES:
        raise ValueError(f"memory mode {mode.name!r} is registered already")
    MEMORY_MODES[mode.name] = mode
    return mode


def get_memory_mode(name: str) -> MemoryMode:
    """The registered mode, or a :class:`UsageError` naming the known ones."""
    try:
        return MEMORY_MODES[name]
    except (KeyError, TypeError):
        raise UsageError(f"unknown memory mode {name!r} (choose {', '.join(MEMORY_MODES)})") from None


def memory_mode_names() -> tuple[str, ...]:
    return tuple(MEMORY_MODES)


def memory_modes_help() -> str:
    """``standard (...), checkpoint (...) or reversible (...); default: standard``."""
    described = [f"{name} ({mode.description})" for name, mode in MEMORY_MODES.items()]
    listed = ", ".join(described[:-1]) + " or " + described[-1] if len(described) > 1 else described[0]
    return f"{listed}; default: {DEFAULT_MEMORY_MODE}"
