"""A ``--workers`` child process ends with its parent, however the parent ends (kill -9)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

PARENT = """
import sys
import fake_trainers
import formulac
formulac.search([sys.argv[1]], space=["a=-0.9:0"], trials=40, out=sys.argv[2], workers=2,
                trainer=fake_trainers.slow_trainer, epochs=fake_trainers.EPOCHS, pruner="none", seed=0)
"""


def children(pid: int) -> list[int]:
    """Worker processes (multiprocessing's spawn_main) whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid and b"spawn_main" in cmdline:
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_worker_ends_when_its_parent_is_killed(tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), str(HERE.parents[1])]))
    two_step = str(HERE.parents[1] / "examples" / "two_step_free.rec")
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, two_step, str(out)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    workers: list[int] = []
    try:
        deadline = time.time() + 180
        # both workers are training: two run directories with an epoch written
        while time.time() < deadline and parent.poll() is None:
            workers = children(parent.pid)
            if workers and len(list((out / "trials").glob("*/epoch-1"))) >= 2:
                break
            time.sleep(0.1)
        assert workers and parent.poll() is None, "the workers never started"
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.time() + 15
        while time.time() < deadline and any(alive(w) for w in workers):
            time.sleep(0.1)
        assert not any(alive(w) for w in workers), "a worker outlived its parent"
    finally:
        for w in workers:
            if alive(w):
                os.kill(w, signal.SIGKILL)
        if parent.poll() is None:
            parent.kill()
