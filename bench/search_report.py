"""The figures of bench/search_two_step.sh: collect them from a finished search directory into
DIR/bench.json, and turn bench.json into the docs/benchmarks.md section.

    python bench/search_report.py --collect DIR --budget full --wall START END \\
        --load "L1 L5 L15" "L1 L5 L15" --command "formulac search ..."   # writes DIR/bench.json
    python bench/search_report.py DIR/bench.json                          # prints the section
    python bench/search_report.py DIR/bench.json --write docs/benchmarks.md
    python bench/search_report.py --overhead DIR      # the machinery's time per trial, by part

The section goes between the lines ``<!-- search-bench:BUDGET -->`` and
``<!-- /search-bench:BUDGET -->`` of the file (appended at its end the first time).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import statistics
import sys
from pathlib import Path


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _torch_version() -> str:
    try:
        import torch

        return torch.__version__
    except ImportError:
        return "not installed"


def collect(out: Path, budget: str, wall: tuple[float, float], load: tuple[str, str], command: str) -> dict:
    board = json.loads((out / "leaderboard.json").read_text())
    timings = [json.loads(x) for x in (out / "timings.jsonl").read_text().splitlines() if x.strip()]
    epochs = board["settings"]["train"]["epochs"]
    trials = board["trials"]
    by_number = {r["number"]: r for r in timings}

    trained_epochs = sum(t["epochs"] or 0 for t in trials if t["state"] != "rejected")
    saved_by_rejection = epochs * sum(1 for t in trials if t["state"] == "rejected")
    saved_by_pruning = sum(epochs - (t["epochs"] or 0) for t in trials if t["state"] == "pruned")
    per_epoch = [
        by_number[t["number"]]["train_seconds"] / t["epochs"]
        for t in trials
        if t["state"] == "complete" and t["epochs"] and t["number"] in by_number
    ]
    seconds_per_epoch = statistics.median(per_epoch) if per_epoch else None
    # trial time summed over every worker; the search phase's wall time is the busiest worker's
    search_seconds = sum(r["seconds"] for r in timings)
    per_worker: dict = {}
    for r in timings:
        per_worker[r.get("pid")] = per_worker.get(r.get("pid"), 0.0) + r["seconds"]
    search_wall = max(per_worker.values(), default=0.0)
    trained = [r for r in timings if r["train_seconds"] > 0]
    rejected = [r["seconds"] for r in timings if r["state"] == "rejected"]
    overhead = [r["overhead_seconds"] for r in trained]
    fractions = [
        r["overhead_seconds"] / r["seconds"] for r in timings if r["train_seconds"] > 0 and r["seconds"]
    ]
    best = board["best"]
    conf = board.get("confirmation")
    result = {
        "budget": budget,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{_cpu()}, {os.cpu_count()} cores, torch {_torch_version()}, Python {platform.python_version()}",
        "load_average_before": load[0],
        "load_average_after": load[1],
        "command": command,
        "sampler_seed": board.get("sampler_seed"),
        "wall_time_s": wall[1] - wall[0],
        "search_time_s": search_wall,
        "trial_time_all_workers_s": search_seconds,
        "workers": len(per_worker),
        "confirmation_time_s": (wall[1] - wall[0]) - search_wall if conf else None,
        "trials": len(trials),
        "counts": board["counts"],
        "best": None
        if best is None
        else {
            "trial": best["number"],
            "params": best["params"],
            "val_accuracy": best["val_accuracy"],
            "epochs": best["epochs"],
        },
        "epochs_per_trial": epochs,
        "epochs_trained": trained_epochs,
        "epochs_if_every_trial_trained_to_the_end": epochs * len(trials),
        "epochs_saved_by_rejection": saved_by_rejection,
        "epochs_saved_by_pruning": saved_by_pruning,
        "seconds_per_epoch_median": seconds_per_epoch,
        "time_saved_s": None
        if seconds_per_epoch is None
        else (saved_by_rejection + saved_by_pruning) * seconds_per_epoch,
        "time_if_every_trial_trained_to_the_end_s": None
        if seconds_per_epoch is None
        else search_seconds + (saved_by_rejection + saved_by_pruning) * seconds_per_epoch,
        "overhead": {
            "trained_trials": len(overhead),
            "median_s": statistics.median(overhead) if overhead else None,
            "max_s": max(overhead) if overhead else None,
            "median_fraction": statistics.median(fractions) if fractions else None,
            "max_fraction": max(fractions) if fractions else None,
            "total_fraction": sum(r["overhead_seconds"] for r in trained) / sum(r["seconds"] for r in trained)
            if trained
            else None,
            "rejected_trial_median_s": statistics.median(rejected) if rejected else None,
        },
        "trial_table": [
            {
                "number": t["number"],
                "a": t["params"].get("a"),
                "state": t["state"],
                "val_accuracy": t["val_accuracy"],
                "epochs": t["epochs"],
                "spectral_radius": (t["analysis"] or {}).get("rate"),
                "seconds": by_number.get(t["number"], {}).get("seconds"),
            }
            for t in trials
        ],
        "confirmation": None
        if not conf
        else {
            "markdown": conf["markdown"],
            "models": [
                {
                    "label": m["label"],
                    "params": m["params"],
                    "mean_error_pct": m["mean_error_pct"],
                    "sd_error_pct": m["sd_error_pct"],
                    "difference_to_baseline_pct": m["difference_to_baseline_pct"],
                    "p_holm": m.get("p_holm"),
                }
                for m in conf["models"]
            ],
            "friedman": conf["friedman"],
        },
    }
    (out / "bench.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def _num(v, fmt: str = ".3g") -> str:
    return "-" if v is None else format(v, fmt)


def markdown(b: dict) -> str:
    c = b["counts"]
    title = "full run (the issue's command)" if b["budget"] == "full" else "reduced run"
    lines = [
        f"### Search of the two-step family: {title}",
        "",
        f"Machine: {b['machine']}; {b['date']}. Load average (1, 5, 15 min) {b['load_average_before']} "
        f"before and {b['load_average_after']} after: the machine is shared, so times are pessimistic.",
        "",
        "```",
        b["command"],
        "```",
        "",
        f"- Wall time **{b['wall_time_s'] / 60:.1f} min** (search {b['search_time_s'] / 60:.1f} min"
        + (
            f", confirmation {b['confirmation_time_s'] / 60:.1f} min)"
            if b["confirmation_time_s"] is not None
            else ")"
        )
        + f"; sampler seed {b['sampler_seed']}.",
        f"- {b['trials']} trials: {c['complete']} complete, {c['pruned']} pruned early, "
        f"{c['rejected']} rejected by analysis (never trained), {c['failed']} failed.",
    ]
    best = b["best"]
    if best:
        values = ", ".join(f"{k} = {v}" for k, v in best["params"].items())
        lines.append(
            f"- Best: trial {best['trial']}, **{values}**, validation accuracy {best['val_accuracy']:.4f} "
            f"after {best['epochs']} epochs."
        )
    lines.append(
        f"- Epochs trained {b['epochs_trained']} of {b['epochs_if_every_trial_trained_to_the_end']} "
        f"(every trial to the end): {b['epochs_saved_by_rejection']} saved by rejection, "
        f"{b['epochs_saved_by_pruning']} by pruning; at the median {_num(b['seconds_per_epoch_median'], '.1f')} s "
        f"per epoch that is **{_num((b['time_saved_s'] or 0) / 60, '.1f')} min saved** of an estimated "
        f"{_num((b['time_if_every_trial_trained_to_the_end_s'] or 0) / 60, '.1f')} min of training"
        + (
            f" (summed over the {b['workers']} workers, which ran side by side)."
            if b.get("workers", 1) > 1
            else "."
        )
    )
    o = b["overhead"]
    if o["median_s"] is not None:
        lines.append(
            f"- Search machinery (storage, sampler, analysis, pruner) per trained trial: median "
            f"{o['median_s']:.3f} s, max {o['max_s']:.3f} s; **{100 * o['median_fraction']:.2f} %** of trial "
            f"time (median; max {100 * o['max_fraction']:.2f} %; {100 * o['total_fraction']:.2f} % of all "
            "trained trials' time together)"
            + (
                f"; a rejected trial took {o['rejected_trial_median_s']:.2f} s (median) instead of a training."
                if o.get("rejected_trial_median_s") is not None
                else "."
            )
        )
    lines += [
        "",
        "| trial | a | state | val. accuracy | epochs | spectral radius | seconds |",
        "| ---: | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for t in b["trial_table"]:
        lines.append(
            f"| {t['number']} | {_num(t['a'], '.4g')} | {t['state']} | {_num(t['val_accuracy'], '.4f')} | "
            f"{t['epochs']} | {_num(t['spectral_radius'], '.4g')} | {_num(t['seconds'], '.1f')} |"
        )
    if b["confirmation"]:
        lines += ["", "Confirmation (test set):", "", b["confirmation"]["markdown"].strip()]
    return "\n".join(lines) + "\n"


def write_section(doc: Path, budget: str, text: str) -> None:
    begin, end = f"<!-- search-bench:{budget} -->", f"<!-- /search-bench:{budget} -->"
    content = doc.read_text() if doc.exists() else ""
    block = f"{begin}\n{text}{end}\n"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end) + r"\n?", re.S)
    if pattern.search(content):
        content = pattern.sub(lambda _: block, content)
    else:
        content = content.rstrip("\n") + "\n\n" + block
    doc.write_text(content)


OVERHEAD_PARTS = ("slot", "sampler", "analysis", "record", "pruner")


def overhead_table(out: Path) -> str:
    """The search machinery's time per trial from DIR/timings.jsonl, part by part."""
    rows = [json.loads(x) for x in (out / "timings.jsonl").read_text().splitlines() if x.strip()]
    rows = [r for r in rows if r["train_seconds"] > 0]
    if not rows:
        return "no trained trial in timings.jsonl\n"
    lines = [
        "| trial | trial time (s) | machinery (s) | share | "
        + " | ".join(OVERHEAD_PARTS)
        + " | other (Optuna's ask/tell, heartbeat, counting) |",
        "| ---: | ---: | ---: | ---: | " + " | ".join("---:" for _ in OVERHEAD_PARTS) + " | ---: |",
    ]

    def line(label, r):
        other = r["overhead_seconds"] - sum(r[f"{k}_seconds"] for k in OVERHEAD_PARTS)
        parts = " | ".join(f"{r[f'{k}_seconds']:.3f}" for k in OVERHEAD_PARTS)
        return (
            f"| {label} | {r['seconds']:.2f} | {r['overhead_seconds']:.3f} | "
            f"{100 * r['overhead_seconds'] / r['seconds']:.2f} % | {parts} | {other:.3f} |"
        )

    for r in rows:
        lines.append(line(str(r["number"]), r))
    median = {
        k: statistics.median(r[k] for r in rows)
        for k in ("seconds", "overhead_seconds", *(f"{p}_seconds" for p in OVERHEAD_PARTS))
    }
    lines.append(line("**median**", median))
    fractions = [r["overhead_seconds"] / r["seconds"] for r in rows]
    lines += [
        "",
        f"Median share of trial time: **{100 * statistics.median(fractions):.2f} %** "
        f"(max {100 * max(fractions):.2f} %, over {len(rows)} trained trials).",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bench_json", nargs="?", help="DIR/bench.json to turn into markdown")
    p.add_argument("--collect", metavar="DIR", help="write DIR/bench.json from a finished search")
    p.add_argument("--budget", default="full")
    p.add_argument("--wall", nargs=2, type=float, metavar=("START", "END"))
    p.add_argument("--load", nargs=2, metavar=("BEFORE", "AFTER"), default=("?", "?"))
    p.add_argument("--command", default="")
    p.add_argument("--write", metavar="FILE.md", help="put the section into FILE.md")
    p.add_argument("--overhead", metavar="DIR", help="print the machinery's time per trial, part by part")
    args = p.parse_args(argv)
    if args.overhead:
        print(overhead_table(Path(args.overhead)), end="")
        return 0
    if args.collect:
        if not args.wall:
            p.error("--collect needs --wall START END")
        result = collect(Path(args.collect), args.budget, tuple(args.wall), tuple(args.load), args.command)
        print(
            json.dumps(
                {k: result[k] for k in ("wall_time_s", "counts", "best", "time_saved_s", "overhead")},
                indent=2,
            )
        )
        text = markdown(result)
    elif args.bench_json:
        result = json.loads(Path(args.bench_json).read_text())
        text = markdown(result)
    else:
        p.error("give DIR/bench.json, or --collect DIR")
    if args.write:
        write_section(Path(args.write), result["budget"], text)
    else:
        print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
