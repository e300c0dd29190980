"""What the search tests share: the example formulas, the arguments of a few-second real
training run (``FAST``) and of the shared real study, building something once per session
(``build_once``), reading a study's stored content. A plain module, imported by name (a
``conftest`` is not: the name is shared by every test folder's conftest)."""

from __future__ import annotations

import fcntl
import shutil
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE.parents[1] / "examples"
TWO_STEP = str(EXAMPLES / "two_step_free.rec")
RESNET = str(EXAMPLES / "resnet.rec")

#: A real training run of a few seconds: an MLP on a small synthetic data set.
FAST = [
    "--data",
    "synthetic:1x8x8:4",
    "--limit-train",
    "192",
    "--limit-test",
    "96",
    "--epochs",
    "2",
    "--batch-size",
    "64",
    "--backbone",
    "mlp",
    "--depth",
    "2",
    "--sampler-seed",
    "0",
]

#: The command of the shared real study: 3 trials, the best confirmed against ResNet.
SEARCH_ARGS = [
    "search",
    TWO_STEP,
    "--space",
    "a=-0.9:0.1",
    "--require",
    "stable",
    "--trials",
    "3",
    *FAST,
    "--pruner",
    "none",
]
CONFIRM_ARGS = ["--confirm", "1", "--seeds", "2", "--baseline", RESNET]
STUDY_ARGS = SEARCH_ARGS + CONFIRM_ARGS


def _shared_root(tmp_path_factory, worker_id: str) -> Path:
    base = tmp_path_factory.getbasetemp()
    # under xdist every worker has its own basetemp inside one directory of this session
    return base if worker_id == "master" else base.parent


def build_once(tmp_path_factory, worker_id: str, name: str, build: Callable[[Path], None]) -> Path:
    """``build(directory)`` once per session, whichever worker asks first; returns the directory."""
    root = _shared_root(tmp_path_factory, worker_id)
    target = root / f"shared-{name}"
    with open(root / f"shared-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not (target / "DONE").is_file():
                shutil.rmtree(target, ignore_errors=True)
                target.mkdir()
                build(target)
                (target / "DONE").write_text("")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return target


def study_content(out: Path) -> str:
    """Everything stored in the study file, as SQL text (a file compare would also see SQLite
    moving committed pages from its write-ahead log into the file)."""
    import contextlib
    import sqlite3

    with contextlib.closing(sqlite3.connect(out / "study.db")) as db:
        return "\n".join(db.iterdump())
