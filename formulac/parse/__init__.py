"""Formula text -> :class:`~formulac.ir.Recurrence`, with every semantic check.

- :mod:`.syntax` — raw-text checks, the LALR parser of ``grammar/rec.lark``, syntax errors;
- :mod:`.declarations` — pass 1: what every name is (names may be used before their line);
- :mod:`.expressions` — pass 2: expression trees -> SymPy, one method per grammar rule;
- :mod:`.values` — the values a formula computes: real, finite, of a sane size;
- :mod:`.recurrence` — the passes in order, and the representation they give.

Every problem becomes a :class:`~formulac.errors.SourceError` at the offending token.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import SourceError, UsageError
from ..ir import Recurrence
from ..limits import MAX_EXPRESSION_DEPTH, MAX_FILE_BYTES, MAX_LAG, MAX_LINE_CHARS, MAX_NESTING
from .declarations import RESERVED_WORDS
from .recurrence import build
from .syntax import read

__all__ = [
    "parse",
    "load",
    "as_recurrence",
    "MAX_LINE_CHARS",
    "MAX_NESTING",
    "MAX_EXPRESSION_DEPTH",
    "MAX_LAG",
    "RESERVED_WORDS",
]


def load(path: str | Path) -> Recurrence:
    """Read and parse a ``.rec`` file; unreadable files are a :class:`UsageError`.

    At most :data:`~formulac.limits.MAX_FILE_BYTES` + 1 bytes are read: a larger file (or an
    endless one, ``/dev/zero``) is refused without reading the rest."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise SourceError(f"file too large (the limit is {MAX_FILE_BYTES} bytes)", str(path), None, 1, 1)
    return parse(data, str(path))


def parse(text: str | bytes, path: str = "<string>") -> Recurrence:
    """Parse formula text into a :class:`Recurrence`, or raise :class:`~formulac.errors.SourceError`."""
    tree, source = read(text, path)
    return build(tree, source)


def as_recurrence(item) -> Recurrence:
    """The :class:`Recurrence` behind ``item``: a Recurrence itself, a ``Formula`` (its
    documented ``.rec``; the facade sits above this package), formula text (``str`` or
    ``bytes``), or a ``.rec`` file given as a :class:`~pathlib.Path` (a ``str`` is always
    formula text, never a path); a :class:`TypeError` for anything else."""
    if isinstance(item, Recurrence):
        return item
    if isinstance(getattr(item, "rec", None), Recurrence):
        return item.rec
    if isinstance(item, (str, bytes)):
        return parse(item)
    if isinstance(item, Path):
        return load(item)
    raise TypeError(
        f"expected a Formula, a Recurrence, formula text or a pathlib.Path, not {type(item).__name__}"
    )
