"""Fixtures of the search tests: finished studies built once per test session and shared by
the tests that only read them (under pytest-xdist, once for all worker processes: the first
worker builds, the others wait on a lock and read the result)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from search_setup import STUDY_ARGS, build_once  # noqa: E402  (tests/search on the path first)


@pytest.fixture(scope="session")
def finished_study(tmp_path_factory, worker_id):
    """A real search run through the command line (`formulac search ... --confirm 1`): its
    output directory in ``out``, its exit status and stderr."""

    def build(directory: Path) -> None:
        import contextlib
        import io

        from formulac.cli import main

        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main([*STUDY_ARGS, "--out", str(directory / "out")])
        (directory / "result.json").write_text(json.dumps({"code": code, "stderr": err.getvalue()}))

    directory = build_once(tmp_path_factory, worker_id, "cli-study", build)
    result = json.loads((directory / "result.json").read_text())
    assert result["code"] == 0, result["stderr"][-3000:]
    return {"out": directory / "out", **result}


@pytest.fixture
def study_copy(finished_study, tmp_path):
    """A private copy of the finished study's directory, for tests that run commands on it."""
    copy = tmp_path / "out"
    shutil.copytree(finished_study["out"], copy)
    return copy
