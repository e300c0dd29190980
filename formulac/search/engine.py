"""The study: Optuna storage, sampler and pruner, and the worker loop that fills it.

Storage. Embedded by default: ``DIR/study.db``, SQLite through Optuna's RDBStorage with a lock
timeout, so that several worker processes on this machine share it. Optuna's JournalStorage
with a file lock would also be safe for several processes, but it has no heartbeat: a worker
killed with SIGKILL would leave its trial RUNNING for ever. RDBStorage records a heartbeat
from a thread of each worker; a trial whose heartbeat is older than the grace period is marked
failed and re-queued with the same configuration and run directory
(``RetryHeartbeatStaleTrialCallback``, formerly ``RetryFailedTrialCallback``). ``--storage
URL`` takes any database URL Optuna accepts (PostgreSQL for several machines).

Counting. ``--trials N`` is the total for the study: a worker starts a trial only while fewer
than N trials hold a slot (finished ones that count, running ones, queued retries), re-checks
after Optuna has numbered its trial (two workers may ask at once: the later number is dropped
as "surplus"), and leaves only when N trials have finished, waiting meanwhile for trials
running elsewhere (they may die and be retried here). A killed or interrupted trial is
superseded by its retry and never counted.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError
from ..files import make_directory
from .metrics import get_metric
from .objective import SURPLUS, Objective, Surplus, TrialFailed, outcome, trial_record
from .strategies import build_pruner, build_sampler

__all__ = [
    "StudyOptions",
    "Tally",
    "close_storage",
    "open_storage",
    "open_study",
    "run_worker",
    "tally",
]

STUDY_FILE = "study.db"
SPACE_ATTR = "formulac_space"
SETTINGS_ATTR = "formulac_settings"
TRIALS_ATTR = "formulac_trials"
#: How often a retried configuration is tried again after its worker died.
MAX_RETRY = 3


@dataclass(frozen=True)
class StudyOptions:
    """Where the study lives and how it samples and prunes."""

    out: str
    trials: int
    storage: str | None = None
    study: str | None = None
    sampler: str = "auto"
    pruner: str = "hyperband"
    seed: int | None = None
    epochs: int = 1
    heartbeat: int = 10  # seconds between heartbeats of a running trial
    grace: int | None = None  # seconds without heartbeat before a trial is stale (3 heartbeats)

    @property
    def study_name(self) -> str:
        return self.study or "formulac-search"

    @property
    def storage_url(self) -> str:
        if self.storage:
            return self.storage
        return "sqlite:///" + str((Path(self.out) / STUDY_FILE).resolve())

    @property
    def grace_period(self) -> int:
        return self.grace if self.grace is not None else 3 * self.heartbeat


def _quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", category=FutureWarning, module="optuna")


def open_storage(options: StudyOptions):
    """Optuna's RDBStorage for the options, with heartbeat and retry; an unreachable or unusable
    URL is a UsageError."""
    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    _quiet_optuna()
    url = options.storage_url
    if options.storage is None:
        make_directory(options.out, "--out")
    engine_kwargs: dict = {}
    if url.startswith("sqlite"):
        path = _sqlite_path(url)
        if path is not None:
            _refuse_damaged_sqlite(path)
            _sqlite_write_ahead_log(path)
            engine_kwargs["creator"] = _sqlite_connector(path)
        else:
            engine_kwargs["connect_args"] = {"timeout": 120}
    elif url.startswith("postgresql"):
        engine_kwargs["connect_args"] = {"connect_timeout": 10}
        engine_kwargs["pool_pre_ping"] = True
    for attempt in range(5):
        try:
            with _creation_lock(url):
                storage = RDBStorage(
                    url,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=options.heartbeat,
                    grace_period=options.grace_period,
                    heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY),
                )
            optuna.logging.set_verbosity(optuna.logging.ERROR)
            return storage
        except Exception as exc:
            # two machines starting together both create the tables and stamp their version;
            # the later one finds them on its next attempt
            text = str(exc)
            racing = any(m in text for m in ("already exists", "UNIQUE constraint", "duplicate key"))
            if not racing or attempt == 4:
                raise _open_storage_errors(url, exc) from None
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


@contextlib.contextmanager
def _creation_lock(url: str):
    """Processes of this machine open an SQLite study one at a time (the first creates it)."""
    path = _sqlite_path(url) if url.startswith("sqlite") else None
    if path is None:
        yield
        return
    import fcntl

    with open(path + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def close_storage(storage) -> None:
    """Close the storage's database connections (an SQLite file then holds every commit in
    itself, its write-ahead log emptied)."""
    with contextlib.suppress(Exception):
        storage.remove_session()
        storage.engine.dispose()


def _open_storage_errors(url: str, exc: BaseException) -> UsageError:
    if isinstance(exc, ImportError):
        return UsageError(f"--storage {_safe_url(url)}: the database driver is not installed ({exc})")
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return UsageError(f"cannot open the study storage {_safe_url(url)}: {first}")


def _sqlite_path(url: str) -> str | None:
    """The file of an SQLite URL (None for an in-memory database or a URL with options)."""
    path = url.split("///", 1)[1] if "///" in url else ""
    if not path or path == ":memory:" or "?" in path:
        return None
    return path


def _refuse_damaged_sqlite(path: str) -> None:
    """A UsageError naming the file when SQLite finds it damaged (``PRAGMA quick_check``, which
    reads every page once: milliseconds for a study), instead of the first failing query's
    message deep in Optuna."""
    import sqlite3

    if not os.path.isfile(path) or os.path.getsize(path) == 0:
        return
    try:
        with contextlib.closing(sqlite3.connect(path, timeout=120)) as db:
            problems = [row[0] for row in db.execute("PRAGMA quick_check").fetchall() if row[0] != "ok"]
    except sqlite3.DatabaseError as exc:
        problems = [str(exc)]
    if problems:
        raise UsageError(
            f"the study file {path} is damaged (SQLite: {'; '.join(problems[:2])}); restore it from a "
            "copy, or start a new study with another --out"
        )


def _sqlite_write_ahead_log(path: str) -> None:
    """Put the study file in WAL mode (a property of the file, kept by every later connection):
    readers no longer block the writer, and a commit appends to the log instead of rewriting
    the journal. Safe for processes of one machine on a local disk (not on NFS, where --storage
    with a database server is the answer)."""
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(path, timeout=120)) as db:
            db.execute("PRAGMA journal_mode=WAL")
    except sqlite3.Error:
        pass  # RDBStorage reports an unusable file itself


def _sqlite_connector(path: str) -> Callable[[], object]:
    """Connections to the study file that wait for the lock (several processes take turns) and
    commit without an fsync (``synchronous=NORMAL``, a per-connection setting). In WAL mode that
    keeps every commit through a killed process and never corrupts the file; only a power cut
    may roll back the last commits, whose trials are then retried. An fsync per commit cost
    5 ms here, and a trial makes about eight commits."""
    import sqlite3

    def connect():
        connection = sqlite3.connect(path, timeout=120, check_same_thread=False)
        connection.execute("PRAGMA synchronous=NORMAL")
        return connection

    return connect


def _safe_url(url: str) -> str:
    """The URL without its password."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(the given URL)"


def make_sampler(options: StudyOptions, space, worker: int = 0):
    """The study's sampler (the registry's; every worker derives its trials' seeds from the
    trial numbers, so ``worker`` changes nothing)."""
    return build_sampler(options.sampler, space, options.seed)


def make_pruner(options: StudyOptions):
    return build_pruner(options.pruner, options.epochs)


def open_study(
    options: StudyOptions, space, settings: dict, storage=None, worker: int = 0, create: bool = True
):
    """Create the study, or load it and check that it is the same search.

    A study of that name with another search space or other settings is a UsageError, and
    nothing is written to it."""
    import optuna

    storage = storage or open_storage(options)
    signature = space.signature()
    name = options.study_name
    existing = {s.study_name: s for s in _study_summaries(storage)}
    sampler = make_sampler(options, space, worker)
    pruner = make_pruner(options)
    if name in existing:
        attrs = existing[name].user_attrs
        for _ in range(50):  # a worker that created it a moment ago may not have labelled it yet
            if SPACE_ATTR in attrs and SETTINGS_ATTR in attrs:
                break
            time.sleep(0.1)
            attrs = {s.study_name: s for s in _study_summaries(storage)}[name].user_attrs
        if attrs.get(SPACE_ATTR) != signature:
            raise UsageError(
                f"the study {name!r} in {_safe_url(options.storage_url)} was created with another search space "
                f"({_space_difference(attrs.get(SPACE_ATTR), signature)}); choose another --study or --out"
            )
        if attrs.get(SETTINGS_ATTR) != settings:
            raise UsageError(
                f"the study {name!r} was created with other settings "
                f"({_space_difference(attrs.get(SETTINGS_ATTR), settings)}); choose another --study or --out"
            )
        if attrs.get(TRIALS_ATTR) not in (None, options.trials):
            pass  # --trials may grow or shrink between runs: the total is what this run asks for
        return optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
    if not create:
        raise UsageError(f"no study {name!r} in {_safe_url(options.storage_url)}")
    try:
        study = optuna.create_study(
            study_name=name,
            storage=storage,
            sampler=sampler,
            pruner=pruner,
            direction=get_metric(settings.get("objective", "val_accuracy")).direction,
        )
    except optuna.exceptions.DuplicatedStudyError:  # created by another worker a moment ago
        return open_study(options, space, settings, storage, worker, create=False)
    study.set_user_attr(SPACE_ATTR, signature)
    study.set_user_attr(SETTINGS_ATTR, settings)
    return study


def _study_summaries(storage):
    import optuna

    try:
        return optuna.get_all_study_summaries(storage=storage, include_best_trial=False)
    except Exception as exc:
        raise UsageError(f"cannot read the studies in the storage: {str(exc).splitlines()[0]}") from None


def _space_difference(saved, now) -> str:
    if not isinstance(saved, dict):
        return "it holds no formulac search"
    keys = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
    parts = []
    for k in keys[:3]:
        parts.append(f"{k}: {json.dumps(saved.get(k))} then, {json.dumps(now.get(k))} now")
    return "; ".join(parts)


# --------------------------------------------------------------------------------------------
# counting


@dataclass
class Tally:
    finished: list  # trials that count and are done: complete, pruned, rejected, failed
    running: list
    waiting: list
    superseded: list  # killed, interrupted or surplus: replaced by a retry, counted for nothing

    def state_counts(self) -> dict[str, int]:
        counts = {"complete": 0, "pruned": 0, "rejected": 0, "failed": 0}
        for t in self.finished:
            counts[trial_state(t)] += 1
        return counts


def trial_state(t) -> str:
    """complete, pruned, rejected, failed, running, waiting or superseded."""
    from optuna.trial import TrialState

    ours = outcome(t).get("state")
    if t.state == TrialState.COMPLETE:
        return "complete"
    if t.state == TrialState.PRUNED:
        return "rejected" if ours == "rejected" else "pruned"
    if t.state == TrialState.FAIL:
        return "failed" if ours == "failed" else "superseded"
    if t.state == TrialState.RUNNING:
        return "running"
    return "waiting"


def tally(trials) -> Tally:
    out = Tally([], [], [], [])
    for t in trials:
        s = trial_state(t)
        if s == "running":
            out.running.append(t)
        elif s == "waiting":
            out.waiting.append(t)
        elif s == "superseded":
            out.superseded.append(t)
        else:
            out.finished.append(t)
    return out


class SlotCheck:
    """For a trial just numbered: whether it is among the first ``total`` trials that hold a
    slot (finished ones that count, running ones, queued retries). ``holders`` is the number of
    holders the last check saw, this trial included."""

    def __init__(self, study, total: int):
        self.study = study
        self.total = total
        self.holders: int | None = None

    def __call__(self, trial) -> bool:
        t = tally(self.study.get_trials(deepcopy=False))
        holders = sorted(x.number for x in t.finished + t.running + t.waiting)
        self.holders = len(holders)
        return trial.number in holders[: self.total]


def holds_slot(study, total: int) -> SlotCheck:
    return SlotCheck(study, total)


# --------------------------------------------------------------------------------------------
# the worker loop


def _fail_stale(study) -> None:
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        optuna.storages.fail_stale_trials(study)


def run_worker(
    study,
    objective: Objective,
    total: int,
    poll: float,
    progress: Callable[[object, float], None] | None = None,
    timings: Path | None = None,
) -> None:
    """Run trials until ``total`` have finished, waiting for trials that run elsewhere.

    ``timings``: one JSON line per trial this worker finished, with the wall time of the whole
    loop iteration (stale check, counting, sampling, analysis, storage writes, pruning, the
    progress line) and the part of it spent training; the rest is the search machinery's."""
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    catch = (TrialFailed, Surplus)
    while True:
        start = time.perf_counter()
        step = _next_step(study, total, objective.slots)
        if step == "done":
            return
        if step == "wait":
            time.sleep(poll)  # the other trials may finish, or die and come back as retries
            continue
        objective.last_number = None
        finished: list = []  # Optuna hands the finished trial to its callbacks: no extra read
        try:
            study.optimize(
                objective,
                n_trials=1,
                catch=catch,
                gc_after_trial=False,
                callbacks=[functools.partial(_keep_trial, finished)],
            )
        except KeyboardInterrupt:
            _requeue_interrupted(
                study, objective.last_number, RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)
            )
            raise
        if not finished:
            continue
        last = finished[-1]
        if outcome(last).get("state") == SURPLUS:
            time.sleep(poll)
            continue
        if progress is not None:
            progress(last, time.perf_counter() - start)
        if timings is not None:
            _append_timing(timings, last, time.perf_counter() - start, objective.last_timing)


def _keep_trial(into: list, _study, trial) -> None:
    into.append(trial)


def _next_step(study, total: int, slots) -> str:
    """``run`` another trial, ``wait`` for trials running elsewhere, or ``done``."""
    seen = getattr(slots, "holders", None)
    if seen is not None:
        slots.holders = None
        if seen < total - 1:
            # the last trial's slot check saw room for another: no need to count again (the
            # next trial's own check, once Optuna has numbered it, settles a race)
            return "run"
    t = tally(study.get_trials(deepcopy=False))
    if len(t.finished) + len(t.running) >= total and not t.waiting:
        # full: a running trial may have died (Optuna's own check runs before each trial)
        _fail_stale(study)
        t = tally(study.get_trials(deepcopy=False))
    if len(t.finished) >= total:
        return "done"
    if len(t.finished) + len(t.running) >= total and not t.waiting:
        return "wait"
    return "run"


def _trial(study, number: int | None, deepcopy: bool = False):
    if number is None:
        return None
    return next((x for x in study.get_trials(deepcopy=deepcopy) if x.number == number), None)


def _requeue_interrupted(study, number: int | None, retry) -> None:
    """Queue the configuration of the trial that Ctrl-C stopped, so that the next run resumes it."""
    trial = _trial(study, number, deepcopy=True)  # the callback extends the trial's retry history
    if trial is not None and outcome(trial).get("state") == "interrupted":
        with contextlib.suppress(Exception):
            retry(study, trial)


def _append_timing(path: Path, trial, seconds: float, timing: dict) -> None:
    train = timing.get("train", 0.0)
    record = {
        "number": trial.number,
        "state": trial_state(trial),
        "seconds": seconds,
        "train_seconds": train,
        "overhead_seconds": max(seconds - train, 0.0),
        # parts of the overhead: the slot check, the sampler, the analysis (and size limits),
        # the trial's record, the pruner (report and decision, every epoch)
        **{
            f"{name}_seconds": timing.get(key, 0.0)
            for name, key in (
                ("slot", "slot"),
                ("sampler", "sample"),
                ("analysis", "analysis"),
                ("record", "record"),
                ("pruner", "report"),
            )
        },
        "pid": os.getpid(),
    }
    line = (json.dumps(record) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line)  # one write of a short line: lines of several workers do not mix
    finally:
        os.close(fd)


def progress_printer(study, total: int, stream=None) -> Callable[[object, float], None]:
    """Prints one line per finished trial: trials done, best so far, rejected and pruned."""
    stream = stream or sys.stderr

    def show(trial, seconds: float) -> None:
        t = tally(study.get_trials(deepcopy=False))
        counts = t.state_counts()
        complete = [x for x in t.finished if trial_state(x) == "complete"]
        state = trial_state(trial)
        what = trial_record(trial).get("candidate", "")
        value = f" val {trial.value:.4f}" if trial.value is not None else ""
        reason = outcome(trial).get("reason")
        line = f"trial {trial.number} {state}{value} ({what}, {seconds:.1f}s)" + (
            f": {reason}" if reason and state != "complete" else ""
        )
        if complete:
            best = max(complete, key=lambda x: x.value)
            best_text = (
                f"best {best.value:.4f} (trial {best.number}: {trial_record(best).get('candidate', '')})"
            )
        else:
            best_text = "best -"
        print(line, file=stream)
        print(
            f"search: {len(t.finished)}/{total} done, {best_text}, rejected {counts['rejected']}, "
            f"pruned {counts['pruned']}, failed {counts['failed']}",
            file=stream,
            flush=True,
        )

    return show
