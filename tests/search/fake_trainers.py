"""Fake objectives injected in place of training: fast, deterministic functions of the
candidate, reporting a learning curve epoch by epoch like a real run."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from formulac.search.objective import TrialFailed, TrialScore

EPOCHS = 4
TRAINED_LOG = "trained.jsonl"  # every call appends one line: what was trained


def score(candidate) -> float:
    """Best at a = -0.3; other files score lower."""
    a = float(candidate.values.get("a", 0))
    base = {"two_step_free": 0.9, "resnet": 0.8}.get(candidate.formula, 0.7)
    return base - (a + 0.3) ** 2


def _log(run_dir: Path, candidate) -> None:
    path = run_dir.parent.parent / TRAINED_LOG
    line = (
        json.dumps({"formula": candidate.formula, "params": candidate.params, "run_dir": str(run_dir)}) + "\n"
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.write(fd, line.encode())
    os.close(fd)


def fake_trainer(candidate, run_dir, report):
    _log(run_dir, candidate)
    final = score(candidate)
    for epoch in range(1, EPOCHS + 1):
        report(epoch, final * epoch / EPOCHS)
    return TrialScore(final, EPOCHS)


def slow_trainer(candidate, run_dir, report):
    """Half a second per epoch, and a marker file per epoch (the SIGKILL test waits for one)."""
    _log(run_dir, candidate)
    run_dir.mkdir(parents=True, exist_ok=True)
    final = score(candidate)
    done = len(list(run_dir.glob("epoch-*")))  # resume where a killed worker stopped
    for epoch in range(1, EPOCHS + 1):
        if epoch > done:
            time.sleep(0.5)
            (run_dir / f"epoch-{epoch}").write_text(str(os.getpid()))
        report(epoch, final * epoch / EPOCHS)
    return TrialScore(final, EPOCHS)


_met = False


def paired_trainer(candidate, run_dir, report):
    """fake_trainer, but the first trial of a process waits until another process has started
    one too (FORMULAC_TEST_RENDEZVOUS names a shared directory): both workers take trials."""
    global _met
    if not _met:
        meeting = Path(os.environ["FORMULAC_TEST_RENDEZVOUS"])
        (meeting / str(os.getpid())).write_text("")
        deadline = time.time() + 180
        while len(list(meeting.iterdir())) < 2 and time.time() < deadline:
            time.sleep(0.05)
        _met = True
    return fake_trainer(candidate, run_dir, report)


def diverging_trainer(candidate, run_dir, report):
    """Positive a diverges (as a real NaN loss would)."""
    _log(run_dir, candidate)
    if float(candidate.values.get("a", 0)) > 0:
        raise TrialFailed("training diverged in epoch 1 (loss nan)")
    return _plain(candidate, report)


def _plain(candidate, report):
    final = score(candidate)
    for epoch in range(1, EPOCHS + 1):
        report(epoch, final * epoch / EPOCHS)
    return TrialScore(final, EPOCHS)


def trained(out: Path) -> list[dict]:
    path = Path(out) / TRAINED_LOG
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def loss_of(candidate) -> float:
    """A validation loss, lowest at a = -0.3 (the mirror image of :func:`score`)."""
    return 2.0 - score(candidate)


def fake_loss_trainer(candidate, run_dir, report):
    """Reports a falling loss curve that ends at :func:`loss_of`."""
    _log(run_dir, candidate)
    final = loss_of(candidate)
    for epoch in range(1, EPOCHS + 1):
        report(epoch, final + (EPOCHS - epoch) * 0.5)
    return TrialScore(None, EPOCHS, val_loss=final)
