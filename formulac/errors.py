"""The one error type users see, and its caret formatting.

Every mistake a user can make (a bad ``.rec`` file, a wrong flag, missing data) is raised
as a :class:`FormulacError`; the CLI prints it and exits with status 2.
"""

from __future__ import annotations

__all__ = [
    "FormulacError",
    "SourceError",
    "UsageError",
    "SourceLocation",
    "UnboundSymbolsError",
    "UnknownNameError",
]

from dataclasses import dataclass

# Source lines longer than this are cut around the caret so that a message stays readable.
_SHOWN_LINE_CHARS = 100


@dataclass(frozen=True)
class SourceLocation:
    """A 1-based line and column in a named source text."""

    path: str
    line: int
    column: int


class FormulacError(Exception):
    """Base of all user-facing errors; ``str(error)`` is the complete message."""

    def format(self) -> str:
        return str(self)


class UsageError(FormulacError):
    """A mistake outside any source file: a wrong option, missing data, a bad value."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def format(self) -> str:
        return f"formulac: error: {self.message}"


class UnboundSymbolsError(UsageError):
    """A formula with free symbols that have no value, where a value is needed (compile, train)."""

    def __init__(self, names, action: str = "a network"):
        self.names = tuple(names)
        self.action = action
        several = len(self.names) > 1
        sets = " ".join(f"--set {name}=VALUE" for name in self.names)
        binds = ", ".join(f"{name}=..." for name in self.names)
        super().__init__(
            f"{'the free symbols' if several else 'the free symbol'} {', '.join(self.names)} "
            f"{'have' if several else 'has'} no value, and {action} needs "
            f"{'them' if several else 'it'}: give {'each one' if several else 'it one'} with {sets} "
            f"(in Python: formula.bind({binds}))"
        )


class UnknownNameError(UsageError, KeyError):
    """A value given for a name the formula does not have (``bind``, ``--set``).

    Also a ``KeyError``, as ``Recurrence.bind`` raised before it was a :class:`UsageError`.
    """

    def __str__(self) -> str:
        return self.message


class SourceError(FormulacError):
    """A mistake at a place in a formula file, printed as ``FILE:LINE:COL: error: ...``."""

    def __init__(self, message: str, path: str, text: str | None, line: int, column: int):
        super().__init__(message)
        self.message = message
        self.location = SourceLocation(path, max(line, 1), max(column, 1))
        self.source_line = _line_of(text, self.location.line)

    def __str__(self) -> str:
        return self.format()

    def format(self) -> str:
        loc = self.location
        head = f"{loc.path}:{loc.line}:{loc.column}: error: {self.message}"
        if self.source_line is None:
            return head
        shown, caret_at = _window(self.source_line, loc.column - 1)
        return f"{head}\n    {shown}\n    {' ' * caret_at}^"


def _line_of(text: str | None, line: int) -> str | None:
    if text is None:
        return None
    lines = text.splitlines()
    if 1 <= line <= len(lines):
        return lines[line - 1].expandtabs(1)
    return None


def _window(line: str, caret: int) -> tuple[str, int]:
    """Cut a long line to a window around the caret; make unprintable characters visible."""
    caret = min(max(caret, 0), len(line))
    start = 0
    if len(line) > _SHOWN_LINE_CHARS:
        start = max(0, caret - _SHOWN_LINE_CHARS // 2)
    piece = line[start : start + _SHOWN_LINE_CHARS]
    piece = "".join(ch if ch.isprintable() else "?" for ch in piece)
    prefix = "..." if start > 0 else ""
    suffix = "..." if start + _SHOWN_LINE_CHARS < len(line) else ""
    return prefix + piece + suffix, len(prefix) + caret - start
