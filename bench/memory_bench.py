"""Activation memory and step time of memory="standard" | "checkpoint" | "reversible".

Every measurement runs in a fresh process (the lesson of momentumnet issue #16: in one process,
what an earlier model left in the allocator distorts the next figure). For each formula, depth
and mode:

* memory (one process): on CPU, the rise of the process's peak RSS over the first training step
  (Linux ``VmHWM``, reset before it; the allocator holds nothing of a step yet, but what it
  keeps after frees counts, as the OS sees it), then the peak of live tensor memory during a
  second step from the profiler's allocation events (``torch.profiler``, ``profile_memory=True``,
  summed in time order at operator granularity), and the live tensor bytes when its backward
  starts: the activations the forward kept (the peak also holds the parameters' gradients,
  which every mode ends the backward with, and the backward's transients); on CUDA
  (``--device cuda``), the allocator's peak (``torch.cuda.max_memory_allocated``) over one step
  above what the model and batch hold before it. Beside them, ``formulac info --memory``'s
  prediction (activation memory only; the measured peaks also hold the parameters' gradients).
* time (``--repeats`` rounds, the modes alternating within a round, each step in a fresh
  process after one warm-up step): wall and CPU time of one training step; ratios to standard
  are taken within a round and the median is reported (the machine may be loaded).

A configuration whose predicted memory exceeds ``--ram-limit-gib`` is measured at the largest
power-of-two batch that fits, and its figure extrapolated linearly to ``--batch`` (labelled).

    .venv/bin/python bench/memory_bench.py [--formulas revnet momentum] [--depths 56 110 254 1202]
        [--batch 128] [--modes standard checkpoint reversible] [--repeats 3] [--time-depths 56 110]
        [--time-batch 128] [--threads 2] [--device cpu|cuda] [--ram-limit-gib 4] [--no-memory]
        [--lean-malloc] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from search_report import _cpu  # bench/ is the script directory: its CPU-name helper

ROOT = Path(__file__).resolve().parents[1]
MODES = ("standard", "checkpoint", "reversible")


# -- one measurement, in its own process ---------------------------------------------------------


def _build(formula: str, depth: int, mode: str, device: str):
    import torch

    import formulac

    torch.manual_seed(0)
    model = formulac.load(ROOT / "examples" / f"{formula}.rec").compile(
        backbone="cifar-resnet", depth=depth, memory=mode
    )
    return model.to(device).train()


def _step(model, x, y):
    import torch

    model.zero_grad(set_to_none=True)
    loss = torch.nn.functional.cross_entropy(model(x), y)
    with torch.profiler.record_function("memory_bench::backward"):  # marks the forward's end
        loss.backward()


def child_memory(formula: str, depth: int, mode: str, batch: int, device: str) -> dict:
    import torch

    model = _build(formula, depth, mode, device)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 3, 32, 32, generator=g).to(device)
    y = torch.randint(0, 10, (batch,), generator=g).to(device)
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    if device == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        _step(model, x, y)
        torch.cuda.synchronize()
        return {"peak_allocated": torch.cuda.max_memory_allocated() - base, "parameter_bytes": params}
    base = _reset_peak_rss()  # the first step: the allocator holds nothing of a step yet
    _step(model, x, y)
    rss_rise = _peak_rss() - base if base is not None else None
    model.zero_grad(set_to_none=True)
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        _step(model, x, y)
    live = peak = 0
    kept = None  # live tensor bytes when the backward starts: what the forward kept for it
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        if kept is None and event.name == "memory_bench::backward":
            kept = live
        live += event.self_cpu_memory_usage
        peak = max(peak, live)
    return {"rss_rise": rss_rise, "profiler_peak": peak, "kept_for_backward": kept, "parameter_bytes": params}


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def _reset_peak_rss() -> int | None:
    """Reset the process's peak RSS (Linux: clear_refs 5) and return the current RSS."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return _status("VmRSS")
    except (OSError, KeyError):
        return None


def _peak_rss() -> int:
    return _status("VmHWM")


def child_time(formula: str, depth: int, mode: str, batch: int, device: str) -> dict:
    import torch

    model = _build(formula, depth, mode, device)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 3, 32, 32, generator=g).to(device)
    y = torch.randint(0, 10, (batch,), generator=g).to(device)
    _step(model, x, y)  # warm-up
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    sync()
    wall, cpu = time.perf_counter(), time.process_time()
    _step(model, x, y)
    sync()
    return {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}


def _run_child(kind: str, formula: str, depth: int, mode: str, batch: int, args) -> dict:
    command = [
        sys.executable,
        __file__,
        "--child",
        kind,
        formula,
        str(depth),
        mode,
        str(batch),
        "--device",
        args.device,
        "--threads",
        str(args.threads),
    ]
    env = dict(os.environ)
    if args.lean_malloc:  # large blocks mmapped and returned at once: RSS follows live memory
        env.update(MALLOC_MMAP_THRESHOLD_="131072", MALLOC_TRIM_THRESHOLD_="131072")
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env)
    if done.returncode != 0:
        return {
            "error": done.stderr.strip().splitlines()[-1]
            if done.stderr.strip()
            else f"exit {done.returncode}"
        }
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- the whole benchmark -------------------------------------------------------------------------------


def predicted(formula: str, depth: int) -> dict:
    """``formulac info --memory``'s prediction, bytes per image by mode (None where not applicable)."""
    import formulac
    from formulac.codegen.memory_info import memory_estimates

    rec = formulac.load(ROOT / "examples" / f"{formula}.rec").rec
    estimates = memory_estimates(rec, {"backbone": "cifar-resnet", "depth": depth}, 3, 32)
    return {e.mode: {"bytes_per_image": e.bytes_per_image, "detail": e.detail} for e in estimates}


def _fitting_batch(per_image: float | None, batch: int, limit: float) -> int:
    if not per_image or per_image * batch * 1.5 <= limit:  # 1.5: gradients, allocator slack
        return batch
    fit = batch
    while fit > 1 and per_image * fit * 1.5 > limit:
        fit //= 2
    return fit


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--formulas", nargs="+", default=["revnet", "momentum"])
    parser.add_argument("--depths", nargs="+", type=int, default=[56, 110, 254, 1202])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--repeats", type=int, default=3, help="timing rounds (0: no timing)")
    parser.add_argument("--no-memory", action="store_true", help="time only")
    parser.add_argument(
        "--lean-malloc",
        action="store_true",
        help="run the measurements with glibc's mmap and trim thresholds at 128 KiB, so that the "
        "RSS rise follows live memory instead of what the allocator keeps after frees",
    )
    parser.add_argument("--time-depths", nargs="+", type=int, default=None, help="default: --depths")
    parser.add_argument("--time-batch", type=int, default=None, help="default: --batch")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--ram-limit-gib", type=float, default=4.0)
    parser.add_argument("--out", default=None, help="write all figures as JSON")
    parser.add_argument("--child", nargs=5, metavar=("KIND", "FORMULA", "DEPTH", "MODE", "BATCH"))
    args = parser.parse_args()

    if args.child:
        import torch

        torch.set_num_threads(args.threads)
        kind, formula, depth, mode, batch = args.child
        run = child_memory if kind == "memory" else child_time
        print(json.dumps(run(formula, int(depth), mode, int(batch), args.device)))
        return

    limit = args.ram_limit_gib * 2**30
    results = {
        "machine": {
            "platform": platform.platform(),
            "processor": _cpu(),
            "cpus": os.cpu_count(),
            "threads": args.threads,
            "device": args.device,
            "load_average_start": os.getloadavg(),
        },
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "lean_malloc": args.lean_malloc,
        "memory": [],
        "time": [],
    }
    for formula in [] if args.no_memory else args.formulas:
        for depth in args.depths:
            prediction = predicted(formula, depth)
            for mode in args.modes:
                per_image = (prediction.get(mode) or {}).get("bytes_per_image")
                if mode == "reversible" and per_image is None:
                    continue
                batch = _fitting_batch(per_image, args.batch, limit)
                row = {"formula": formula, "depth": depth, "mode": mode, "batch": batch}
                row.update(_run_child("memory", formula, depth, mode, batch, args))
                row["predicted_per_image"] = per_image
                row["detail"] = (prediction.get(mode) or {}).get("detail", "")
                if batch != args.batch:
                    row["extrapolated_to"] = args.batch
                results["memory"].append(row)
                print(_memory_line(row, args.batch), flush=True)
    if args.repeats:
        tbatch = args.time_batch or args.batch
        for formula in args.formulas:
            for depth in args.time_depths or args.depths:
                rounds = []
                for _round in range(args.repeats):
                    entry = {}
                    for mode in args.modes:
                        entry[mode] = _run_child("time", formula, depth, mode, tbatch, args)
                    rounds.append(entry)
                row = {"formula": formula, "depth": depth, "batch": tbatch, "rounds": rounds}
                for mode in args.modes:
                    for clock in ("wall", "cpu"):
                        ratios = [
                            e[mode][clock] / e["standard"][clock]
                            for e in rounds
                            if clock in e.get(mode, {}) and clock in e.get("standard", {})
                        ]
                        if ratios:
                            row[f"{mode}_{clock}_ratio"] = statistics.median(ratios)
                    times = [e[mode]["wall"] for e in rounds if "wall" in e.get(mode, {})]
                    if times:
                        row[f"{mode}_wall_s"] = statistics.median(times)
                results["time"].append(row)
                print(_time_line(row, args.modes), flush=True)
    results["machine"]["load_average_end"] = os.getloadavg()
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


def _mib(n) -> str:
    return "-" if n is None else f"{n / 2**20:.1f}"


def _memory_line(row: dict, batch: int) -> str:
    if "error" in row:
        return f"{row['formula']:<9} {row['depth']:>5} {row['mode']:<11} error: {row['error']}"
    scale = batch / row["batch"]
    measured = row.get("profiler_peak", row.get("peak_allocated"))
    rss = row.get("rss_rise")
    note = f"  (measured at batch {row['batch']}, x{scale:g} extrapolated)" if scale != 1 else ""
    pred = row["predicted_per_image"]
    kept = row.get("kept_for_backward")
    return (
        f"{row['formula']:<9} {row['depth']:>5} {row['mode']:<11} kept {_mib(kept * scale if kept else None)} MiB"
        f"  peak {_mib(measured * scale)} MiB"
        f"  rss rise {_mib(rss * scale if rss is not None else None)} MiB"
        f"  predicted {_mib(pred * batch if pred else None)} MiB{note}"
    )


def _time_line(row: dict, modes) -> str:
    parts = [f"{row['formula']:<9} {row['depth']:>5} batch {row['batch']}"]
    for mode in modes:
        if f"{mode}_wall_s" in row:
            parts.append(
                f"{mode} {row[f'{mode}_wall_s']:.2f}s (x{row.get(f'{mode}_wall_ratio', float('nan')):.2f} wall,"
                f" x{row.get(f'{mode}_cpu_ratio', float('nan')):.2f} cpu)"
            )
    return "  ".join(parts)


if __name__ == "__main__":
    main()
