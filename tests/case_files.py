"""Tables of bad inputs kept as data: a ``.cases`` file read into (id, text, line, column, message).

The format, as in LLVM's lit tests or Lark's test grammars, keeps each malformed file as it reads::

    # comment lines before the first case
    ### CASE-ID  LINE:COLUMN  MESSAGE FRAGMENT
    source line 1
    source line 2

A case's text is the lines up to the next ``###`` header, less trailing blank lines (they only
separate cases), joined with ``\\n``. Characters that cannot be seen are written as Python escapes
and decoded in one way, Python's ``unicode_escape``: ``\\r``, ``\\t``, ``\\n`` (a text that ends
with a line break ends with ``\\n``), ``\\xNN``, ``\\uNNNN``, and ``\\\\`` for a backslash. The
message is decoded the same way.

Command-line mistakes use the same headers without the position, ``### CASE-ID  MESSAGE FRAGMENT``,
and the arguments as a shell would split them (``shlex``), ``{name}`` standing for a path the test
supplies (:meth:`CommandCase.argv`).
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import NamedTuple

import pytest

from formulac.errors import SourceError
from formulac.parse import parse

HEADER = "### "


class Case(NamedTuple):
    id: str
    text: str
    line: int
    column: int
    message: str


def decode(written: str) -> str:
    """The text a case means: its escapes decoded, every other character kept as written."""
    return written.encode("ascii", "backslashreplace").decode("unicode_escape")


class CommandCase(NamedTuple):
    id: str
    words: list[str]
    message: str

    def argv(self, **paths: object) -> list[str]:
        """The arguments, each ``{name}`` replaced by ``str(paths[name])``."""
        values = {name: str(value) for name, value in paths.items()}
        return [word.format_map(values) for word in self.words]


def _blocks(path: Path) -> list[tuple[str, list[str]]]:
    """(header less its ``### ``, body lines less trailing blank ones) of each case, in file order."""
    blocks: list[tuple[str, list[str]]] = []
    for row in path.read_text(encoding="utf-8").split("\n"):
        if row.startswith(HEADER):
            blocks.append((row[len(HEADER) :], []))
        elif blocks:
            blocks[-1][1].append(row)
    for _, body in blocks:
        while body and not body[-1]:
            body.pop()
    return blocks


def read_cases(path: Path) -> list[Case]:
    """The bad-source cases of a ``.cases`` file, in file order."""
    cases = []
    for header, body in _blocks(path):
        case_id, position, message = header.split(None, 2)
        line, column = position.split(":")
        cases.append(Case(case_id, decode("\n".join(body)), int(line), int(column), decode(message)))
    return cases


def read_command_cases(path: Path) -> list[CommandCase]:
    """The command-line cases of a ``.cases`` file, in file order."""
    cases = []
    for header, body in _blocks(path):
        case_id, message = header.split(None, 1)
        cases.append(CommandCase(case_id, shlex.split(" ".join(body)), decode(message)))
    return cases


def each_case(cases):
    """``@pytest.mark.parametrize("case", cases)``, each test named by its case's id."""
    return pytest.mark.parametrize("case", cases, ids=[c.id for c in cases])


def expect_source_error(
    data: str | bytes, line: int, column: int, fragment: str, path: str = "bad.rec"
) -> SourceError:
    """Parse ``data``: a SourceError at ``line``:``column`` whose message holds ``fragment``."""
    with pytest.raises(SourceError) as info:
        parse(data, path)
    err = info.value
    assert fragment in err.message, err.format()
    assert (err.location.line, err.location.column) == (line, column), err.format()
    return err
