"""Where the shared fixtures live: the folder ``shared`` beside the repository root.

CI clones the repository into some folder and puts a copy of ``shared/`` beside it, so the
path is found from this file, never from the working directory.
"""
from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
FIXTURES = SHARED / "fixtures"


def load_fixture(name: str):
    """The parsed JSON of ``shared/fixtures/NAME``."""
    with open(FIXTURES / name, encoding="utf-8") as handle:
        return json.load(handle)
