"""Writing files so that a reader sees the old content or the new, never half of either, and
making the directories they go in.

A bottom-layer module (the standard library and ``errors``): every layer may import it.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from .errors import UsageError

__all__ = ["atomic_write", "current_umask", "make_directory"]


def current_umask() -> int:
    """The process's umask, read without changing it where Linux allows (``/proc``); elsewhere
    by setting and restoring it (a brief race with threads that create files meanwhile)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(
    path: str | os.PathLike, content: bytes | str | Callable[[BinaryIO], object], *, durable: bool = True
) -> None:
    """Write ``content`` (bytes, text in UTF-8, or a function that writes into the binary file
    it is given) to ``path`` atomically: into a temporary file in the same folder, then
    ``os.replace`` onto ``path``.  On any failure the old file is untouched and no temporary
    file is left behind.

    The file gets the mode of the file it replaces, or for a new file the mode that ``open``
    would give it (0666 less the umask).  ``durable`` also fsyncs the file and its folder, so
    that the new content survives a power cut.  Raises OSError (``IsADirectoryError`` when
    ``path`` is a folder)."""
    target = Path(path)
    directory = target.parent
    try:
        existing = os.stat(target)
    except FileNotFoundError:
        mode = 0o666 & ~current_umask()
    else:
        if stat.S_ISDIR(existing.st_mode):
            raise IsADirectoryError(21, "Is a directory", str(target))
        mode = stat.S_IMODE(existing.st_mode)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            if callable(content):
                content(handle)
            else:
                handle.write(content.encode("utf-8") if isinstance(content, str) else content)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        _fsync_dir(directory)


def make_directory(path: str | os.PathLike, what: str = "the output directory") -> Path:
    """Create ``path`` and its parents (an existing directory is fine); a path that cannot be
    one (a file on the way, no permission, a read-only file system) is a UsageError."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create {what} {path}: {exc.strerror or exc}") from None
    return path
