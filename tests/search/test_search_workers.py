"""Several worker processes on one study: the embedded SQLite file, a real PostgreSQL server,
a worker killed with SIGKILL mid-trial, and optuna-dashboard serving the finished study."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from fake_trainers import trained

import formulac

HERE = Path(__file__).resolve().parent
WORKER = HERE / "search_worker.py"
PG_BIN = Path("/usr/lib/postgresql/15/bin")


def start_worker(out, trials, trainer="fake_trainer", storage="-"):
    env = dict(os.environ, PYTHONPATH=str(HERE.parents[1]))
    return subprocess.Popen(
        [sys.executable, str(WORKER), str(out), str(trials), trainer, storage],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def finish(proc, timeout=240):
    output, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, output.decode()[-3000:]


def check_study(board, trials, out):
    assert len(board["trials"]) == trials
    assert [t["number"] for t in board["trials"]] == sorted({t["number"] for t in board["trials"]})
    runs = [r["run_dir"] for r in trained(out)]
    done = [t for t in board["trials"] if t["state"] != "rejected"]
    assert sorted({t["run_dir"] for t in done}) == sorted(set(runs))


def test_two_local_workers_share_the_embedded_study(tmp_path):
    out = tmp_path / "out"
    procs = [start_worker(out, 10) for _ in range(2)]
    for p in procs:
        finish(p)
    board = formulac.search(
        [str(HERE.parents[1] / "examples" / "two_step_free.rec")],
        space=["a=-0.9:0.9"],
        require=["stable"],
        trials=10,
        out=str(out),
        trainer=__import__("fake_trainers").fake_trainer,
        epochs=4,
        pruner="none",
        heartbeat=1,
        grace=3,
    )
    check_study(board, 10, out)
    assert len(trained(out)) == len([t for t in board["trials"] if t["state"] != "rejected"])
    assert len({r["run_dir"] for r in trained(out)}) == len(trained(out))  # nothing trained twice
    assert not board["superseded"] or all(s["reason"] == "surplus" for s in board["superseded"])


def test_sigkill_mid_trial_is_retried_and_counted_once(tmp_path):
    out = tmp_path / "out"
    victim = start_worker(out, 4, "slow_trainer")
    deadline = time.time() + 120
    while time.time() < deadline and not list((out / "trials").glob("*/epoch-1")):
        time.sleep(0.1)
    assert list((out / "trials").glob("*/epoch-1")), "the first trial never started"
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    killed_dir = next((out / "trials").glob("*/epoch-1")).parent
    survivor = start_worker(out, 4, "slow_trainer")
    finish(survivor)
    from search_worker_board import board_of

    board = board_of(out)
    assert len(board["trials"]) == 4
    assert len(board["superseded"]) == 1
    dead = board["superseded"][0]["number"]
    retry = next(t for t in board["trials"] if t["retry_of"] == dead)
    assert retry["run_dir"] == str(killed_dir) and retry["state"] == "complete"
    # the retry resumed: epoch 1 was written by the killed worker, later epochs by the survivor
    assert (killed_dir / "epoch-1").read_text() == str(victim.pid)
    assert (killed_dir / "epoch-4").read_text() != str(victim.pid)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres():
    """A PostgreSQL 15 cluster of our own in a temporary directory, on 127.0.0.1."""
    if not (PG_BIN / "initdb").exists():
        pytest.fail(f"PostgreSQL 15 is not installed in {PG_BIN}: scripts/setup.sh installs it")
    root = os.geteuid() == 0
    base = Path(tempfile.mkdtemp(prefix="formulac-pg-"))
    data = base / "data"
    port = _free_port()

    def as_owner(args):
        if root:
            shutil.chown(base, "postgres")
            return ["runuser", "-u", "postgres", "--", *args]
        return args

    subprocess.run(
        as_owner([str(PG_BIN / "initdb"), "-D", str(data), "-U", "formulac", "--auth=trust"]),
        check=True,
        capture_output=True,
    )
    subprocess.run(
        as_owner(
            [
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(base / "log"),
                "-w",
                "-o",
                f"-p {port} -k {base} -h 127.0.0.1",
                "start",
            ]
        ),
        check=True,
        capture_output=True,
    )
    try:
        subprocess.run(
            as_owner(
                [str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "formulac", "study"]
            ),
            check=True,
            capture_output=True,
        )
        yield f"postgresql://formulac@127.0.0.1:{port}/study"
    finally:
        subprocess.run(
            as_owner([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
            capture_output=True,
        )
        shutil.rmtree(base, ignore_errors=True)


def test_two_workers_share_a_postgresql_study(tmp_path, postgres):
    procs = [start_worker(tmp_path / f"out{i}", 8, storage=postgres) for i in range(2)]
    for p in procs:
        finish(p)
    import optuna

    study = optuna.load_study(study_name="shared", storage=postgres)
    from formulac.search.engine import tally

    t = tally(study.get_trials())
    assert len(t.finished) == 8 and not t.running and not t.waiting
    trained_runs = trained(tmp_path / "out0") + trained(tmp_path / "out1")
    assert len(trained_runs) == len(
        [x for x in t.finished if x.user_attrs.get("formulac_state") != "rejected"]
    )
    assert trained(tmp_path / "out0") and trained(tmp_path / "out1")  # both machines worked


def test_dashboard_serves_the_finished_study(tmp_path):
    out = tmp_path / "out"
    finish(start_worker(out, 3))
    port = _free_port()
    dash = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "optuna-dashboard"),
            f"sqlite:///{out / 'study.db'}",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        body = None
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2) as r:
                    body = r.read().decode()
                break
            except OSError:
                time.sleep(0.2)
        assert body is not None and "formulac-search" in body
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/dashboard", timeout=5) as r:
            assert r.status == 200 and b"<html" in r.read().lower()
    finally:
        dash.terminate()
        dash.wait(timeout=20)
