"""The main job's time and accuracy: run ``bash scripts/demo.sh`` (or read a finished run) and
report its wall time, CPU time, phases, every network's test accuracy, and the wall time it
predicts for a quiet 2-core machine from the CPU seconds it measured.

    python bench/demo_bench.py --clone /tmp/demo-clone --json runs/demo-bench.json  # fresh clone
    python bench/demo_bench.py --json runs/demo-bench.json     # this checkout (.venv kept)
    python bench/demo_bench.py --from out/demo                 # a finished run's out/demo only

On a quiet machine (load average under 1 before it starts) the measured wall time is the figure
to record. On a shared machine wall time means little; the prediction then stands in for it:

    predicted wall = CPU of the one-process phases (set-up, analysis, report)
                   + the search's busiest worker (training CPU of its trials)
                   + the confirmation's runs, scheduled two at a time (training CPU of each)
                   + the rest of the search command's CPU (start-up, data, evaluation) / 2

CPU seconds rise a little under load (shared caches), so the prediction errs long: the old
demo's six runs took 111-126 CPU s each on a loaded machine and 107-117 s of wall time each,
two at a time, on a quiet one (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SLOTS = 2  # one single-thread run per core on the 2-core machine the budget is for
BUDGET_S = 600


def run_demo(repo: Path, out: Path) -> dict:
    """Run the demo in ``repo``; its wall time, the CPU time of all its processes, the load."""
    env = dict(os.environ, FORMULAC_DEMO_OUT=str(out))
    load_before = os.getloadavg()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(["bash", "scripts/demo.sh"], cwd=repo, env=env, check=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "wall_s": wall,
        "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
        "max_rss_mb": after.ru_maxrss / 1024,
        "load_before": list(load_before),
        "load_after": list(os.getloadavg()),
    }


def read_phases(out: Path) -> dict:
    """phases.tsv: {phase: {"start", "wall_s", "cpu_s"}} (start absent in older files)."""
    lines = (out / "phases.tsv").read_text().splitlines()
    head = lines[0].split("\t")
    phases = {}
    for line in lines[1:]:
        row = dict(zip(head, line.split("\t")))
        phases[row["phase"]] = {
            "start": float(row["start_unix"]) if "start_unix" in row else None,
            "wall_s": float(row["wall_s"]),
            "cpu_s": float(row["cpu_s"]),
        }
    return phases


def train_cpu(run_dir: Path) -> float:
    """Training CPU seconds of a run (every epoch it trained, pruned runs too)."""
    path = run_dir / "metrics.jsonl"
    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.is_file() else []
    return sum(r.get("train_cpu_seconds") or 0.0 for r in rows)


def makespan(durations: list[float], slots: int = SLOTS) -> float:
    """The time to run the jobs in order, each on the first free slot (compare's pool)."""
    free = [0.0] * slots
    for d in durations:
        heapq.heappush(free, heapq.heappop(free) + d)
    return max(free)


def analyse(out: Path) -> dict:
    phases = read_phases(out)
    board = json.loads((out / "leaderboard.json").read_text())
    timings = [json.loads(x) for x in (out / "timings.jsonl").read_text().splitlines() if x.strip()]
    worker_of = {t["number"]: t["pid"] for t in timings}
    trials, workers = [], {}
    for t in board["trials"]:
        cpu = train_cpu(out / "trials" / Path(t["run_dir"]).name) if t["run_dir"] else 0.0
        trials.append(
            {
                "number": t["number"],
                "a": t["params"].get("a"),
                "state": t["state"],
                "epochs": t["epochs"],
                "val_accuracy": t["val_accuracy"],
                "train_cpu_s": cpu,
            }
        )
        w = workers.setdefault(worker_of.get(t["number"]), {"trials": 0, "epochs": 0, "train_cpu_s": 0.0})
        w["trials"] += 1
        w["epochs"] += t["epochs"]
        w["train_cpu_s"] += cpu
    comparison = json.loads((out / "confirm" / "comparison.json").read_text())
    runs = []
    for m in comparison["models"]:
        for seed, acc, run_dir in zip(m["seeds"], m["test_acc"], m["run_dirs"]):
            runs.append(
                {
                    "model": m["label"],
                    "seed": seed,
                    "test_accuracy_pct": 100 * acc,
                    "train_cpu_s": train_cpu(out / "confirm" / Path(*Path(run_dir).parts[-2:])),
                }
            )
    search_cpu = sum(t["train_cpu_s"] for t in trials)
    confirm_cpu = sum(r["train_cpu_s"] for r in runs)
    command = phases["search+confirmation"]
    rest = command["cpu_s"] - search_cpu - confirm_cpu
    serial = sum(p["cpu_s"] for name, p in phases.items() if name in ("setup", "analysis", "report"))
    search_span = max((w["train_cpu_s"] for w in workers.values()), default=0.0)
    # compare trains seed by seed, every model for each seed (a stable sort keeps that order)
    confirm_span = makespan([r["train_cpu_s"] for r in sorted(runs, key=lambda r: r["seed"])])
    predicted = serial + search_span + confirm_span + rest / SLOTS
    confirm_start = _confirm_start(out)
    split = None
    if confirm_start is not None and command["start"]:
        search_wall = confirm_start - command["start"]
        split = {"search_wall_s": search_wall, "confirmation_wall_s": command["wall_s"] - search_wall}
    return {
        "out": str(out),
        "phases": phases,
        "command_split": split,
        "trials": trials,
        "workers": list(workers.values()),
        "counts": board["counts"],
        "best": {"number": board["best"]["number"], "a": board["best"]["params"].get("a")},
        "confirmation": {
            "runs": runs,
            "verdicts": comparison.get("verdicts"),
            "models": [
                {
                    "label": m["label"],
                    "mean_test_acc_pct": m["mean_test_acc_pct"],
                    "std_test_acc_pct": m["std_test_acc_pct"],
                }
                for m in comparison["models"]
            ],
            "every_network_at_least_91_6": all(r["test_accuracy_pct"] >= 91.6 for r in runs),
        },
        "prediction": {
            "serial_cpu_s": serial,
            "search_busiest_worker_train_cpu_s": search_span,
            "confirmation_train_cpu_s": confirm_cpu,
            "confirmation_makespan_s": confirm_span,
            "search_command_rest_cpu_s": rest,
            "predicted_quiet_wall_s": predicted,
            "budget_s": BUDGET_S,
        },
    }


def _confirm_start(out: Path) -> float | None:
    """When the confirmation began: the first of its runs' config files."""
    stamps = [p.stat().st_mtime for p in (out / "confirm").glob("*/*/config.json")]
    return min(stamps) if stamps else None


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version()}


def text(result: dict) -> str:
    p = result["prediction"]
    lines = []
    if "measured" in result:
        m = result["measured"]
        lines.append(
            f"measured: {m['wall_s']:.0f} s wall, {m['cpu_s']:.0f} CPU s, load average "
            f"{m['load_before'][0]:.1f} before and {m['load_after'][0]:.1f} after"
        )
    lines.append("phase                wall s   CPU s")
    for name, ph in result["phases"].items():
        lines.append(f"{name:<20} {ph['wall_s']:7.1f} {ph['cpu_s']:7.1f}")
    if result["command_split"]:
        s = result["command_split"]
        lines.append(
            f"  of which search {s['search_wall_s']:.0f} s, confirmation {s['confirmation_wall_s']:.0f} s (wall)"
        )
    lines.append("search trials (a, state, epochs, validation accuracy, training CPU s):")
    for t in result["trials"]:
        acc = "-" if t["val_accuracy"] is None else f"{t['val_accuracy']:.4f}"
        lines.append(
            f"  {t['number']}: a={t['a']:.4g} {t['state']} {t['epochs']} {acc} {t['train_cpu_s']:.0f}"
        )
    lines.append(
        "workers (trials, epochs, training CPU s): "
        + "; ".join(f"{w['trials']}, {w['epochs']}, {w['train_cpu_s']:.0f}" for w in result["workers"])
    )
    lines.append("confirmation runs (model, seed, test accuracy %, training CPU s):")
    for r in result["confirmation"]["runs"]:
        lines.append(f"  {r['model']} seed {r['seed']}: {r['test_accuracy_pct']:.2f} {r['train_cpu_s']:.0f}")
    lines += [f"  {v}" for v in result["confirmation"]["verdicts"] or []]
    lines.append(f"every network >= 91.6 %: {result['confirmation']['every_network_at_least_91_6']}")
    lines.append(
        f"predicted wall on a quiet 2-core machine: {p['predicted_quiet_wall_s']:.0f} s "
        f"({p['predicted_quiet_wall_s'] / 60:.1f} min; budget {p['budget_s']} s) = one-process phases "
        f"{p['serial_cpu_s']:.0f} + search's busiest worker {p['search_busiest_worker_train_cpu_s']:.0f} "
        f"+ confirmation runs two at a time {p['confirmation_makespan_s']:.0f} "
        f"+ the rest of the search command {p['search_command_rest_cpu_s']:.0f} / {SLOTS}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--from", dest="source", metavar="DIR", help="analyse a finished demo's output directory"
    )
    parser.add_argument("--clone", metavar="DIR", help="run in a fresh clone of this checkout's HEAD at DIR")
    parser.add_argument("--json", metavar="FILE", help="write the figures as JSON")
    args = parser.parse_args(argv)
    measured = None
    if args.source:
        out = Path(args.source).resolve()
    else:
        repo = ROOT
        if args.clone:
            repo = Path(args.clone).resolve()
            if repo.exists():
                parser.error(f"--clone {repo} exists: give a new directory")
            subprocess.run(["git", "clone", "-q", str(ROOT), str(repo)], check=True)
            head = subprocess.run(
                ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True
            ).stdout
            subprocess.run(["git", "checkout", "-q", head.strip()], cwd=repo, check=True)
        out = repo / "out" / "demo"
        measured = run_demo(repo, out)
    result = analyse(out)
    result["machine"] = machine()
    if measured is not None:
        result["measured"] = measured
    print(text(result))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
