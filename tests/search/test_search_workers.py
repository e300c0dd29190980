"""Several worker processes on one study: the embedded SQLite file, a real PostgreSQL server,
a worker killed with SIGKILL mid-trial, and optuna-dashboard serving the finished study."""

from __future__ import annotations

import json
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


def start_worker(
    out, trials, trainer="fake_trainer", storage="-", rendezvous=None, space="a=-0.9:0.9", seeded=()
):
    env = dict(os.environ, PYTHONPATH=str(HERE.parents[1]))
    if rendezvous is not None:
        rendezvous.mkdir(exist_ok=True)
        env["FORMULAC_TEST_RENDEZVOUS"] = str(rendezvous)
    return subprocess.Popen(
        [sys.executable, str(WORKER), str(out), str(trials), trainer, storage, space, *map(str, seeded)],
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
    # every candidate trains (stable a), so that each worker reaches the rendezvous
    procs = [
        start_worker(out, 6, "paired_trainer", rendezvous=tmp_path / "meet", space="a=-0.9:0")
        for _ in range(2)
    ]
    for p in procs:
        finish(p)
    board = formulac.search(
        [str(HERE.parents[1] / "examples" / "two_step_free.rec")],
        space=["a=-0.9:0"],
        require=["stable"],
        trials=6,
        out=str(out),
        trainer=__import__("fake_trainers").paired_trainer,  # the workers' (settings must match)
        epochs=4,
        pruner="none",
        heartbeat=1,
        grace=3,
    )
    check_study(board, 6, out)
    assert {r["pid"] for r in _timings(out)} == {p.pid for p in procs}  # both took trials
    assert len(trained(out)) == len([t for t in board["trials"] if t["state"] != "rejected"])
    assert len({r["run_dir"] for r in trained(out)}) == len(trained(out))  # nothing trained twice
    assert not board["superseded"] or all(s["reason"] == "surplus" for s in board["superseded"])


def _timings(out):
    return [json.loads(x) for x in (out / "timings.jsonl").read_text().splitlines()]


def test_sigkill_mid_trial_is_retried_and_counted_once(tmp_path):
    out = tmp_path / "out"
    stable = "a=-0.9:0"  # every candidate trains: the first one is the one killed
    victim = start_worker(out, 2, "slow_trainer", space=stable)
    deadline = time.time() + 240
    while time.time() < deadline and victim.poll() is None and not list((out / "trials").glob("*/epoch-1")):
        time.sleep(0.05)
    if not list((out / "trials").glob("*/epoch-1")):
        victim.kill()
        pytest.fail("the first trial never started:\n" + victim.communicate()[0].decode()[-3000:])
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    killed_dir = next((out / "trials").glob("*/epoch-1")).parent
    survivor = start_worker(out, 2, "slow_trainer", space=stable)
    finish(survivor)
    from search_worker_board import board_of

    board = board_of(out, 2, stable)
    assert len(board["trials"]) == 2
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
    procs = [
        start_worker(tmp_path / f"out{i}", 6, "paired_trainer", postgres, tmp_path / "meet", "a=-0.9:0")
        for i in range(2)
    ]
    for p in procs:
        finish(p)
    import optuna

    study = optuna.load_study(study_name="shared", storage=postgres)
    from formulac.search.engine import tally, trial_state

    t = tally(study.get_trials())
    assert len(t.finished) == 6 and not t.running and not t.waiting
    trained_runs = trained(tmp_path / "out0") + trained(tmp_path / "out1")
    assert len(trained_runs) == len([x for x in t.finished if trial_state(x) != "rejected"])
    assert trained(tmp_path / "out0") and trained(tmp_path / "out1")  # both machines worked


def test_two_machines_with_one_seed_never_draw_the_same_point(tmp_path, postgres):
    # the same command on two machines: one sampler seed, one PostgreSQL study
    procs = [
        start_worker(
            tmp_path / f"out{i}", 6, "paired_trainer", postgres, tmp_path / "meet", "a=-0.9:0", ("random", 7)
        )
        for i in range(2)
    ]
    for p in procs:
        finish(p)
    import optuna

    study = optuna.load_study(study_name="shared", storage=postgres)
    points = [t.params["a"] for t in study.get_trials() if "a" in t.params]
    assert len(points) >= 6 and len(set(points)) == len(points), points


def test_dashboard_serves_the_finished_study(study_copy):
    out = study_copy
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
    base = f"http://127.0.0.1:{port}"
    try:
        studies = None
        deadline = time.time() + 90  # the server imports optuna and SQLAlchemy first
        while studies is None and time.time() < deadline and dash.poll() is None:
            try:
                with urllib.request.urlopen(f"{base}/api/studies", timeout=5) as r:
                    listing = json.loads(r.read())
                studies = listing.get("studies", listing.get("study_summaries"))
            except OSError:
                time.sleep(0.2)
        assert studies is not None, "optuna-dashboard did not answer"
        (study,) = [s for s in studies if s["study_name"] == "formulac-search"]
        with urllib.request.urlopen(f"{base}/api/studies/{study['study_id']}?after=0", timeout=10) as r:
            detail = json.loads(r.read())
        board = json.loads((out / "leaderboard.json").read_text())
        assert sorted(t["number"] for t in detail["trials"]) == [t["number"] for t in board["trials"]]
        with urllib.request.urlopen(f"{base}/dashboard", timeout=10) as r:
            assert r.status == 200 and b"<html" in r.read().lower()
    finally:
        dash.terminate()
        dash.wait(timeout=20)
