"""Benchmarks of the analyzer and the analysis CLI (figures go to docs/benchmarks.md).

    .venv/bin/python bench/analysis_bench.py [--runs 7] [--skip-cold]

1. ``analyze`` of every ``examples/*.rec`` at depth 100 (median of 3 in-process runs, after one
   warm-up run that pays the lazy imports);
2. block weights at depth 1000 of an order-4 constant-coefficient formula (target < 1 s), and the
   whole ``analyze`` at that depth;
3. cold ``formulac check examples/*.rec`` against ``python -c "import sympy, lark"``: separate
   processes, alternating, medians (target ratio <= 1.5), plus the largest self-import times
   of the check process (``python -X importtime``).

Prints a Markdown section.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ORDER4 = "x_<n+1> = x_n + 1/2*x_<n-1> - 1/3*x_<n-2> + 1/5*x_<n-3> + F(x_n)"


def _median_time(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_zoo(depth: int = 100) -> list[tuple[str, float, str]]:
    from formulac.analysis import analyze
    from formulac.parse import load

    rows = []
    for path in sorted((ROOT / "examples").glob("*.rec")):
        rec = load(path)
        an = analyze(rec, depth)  # warm-up (lazy imports, caches)
        t = _median_time(lambda rec=rec: analyze(rec, depth).to_json(), 3)
        what = "linear" if an.linear else "non-linear"
        if an.stability:
            what += f", {an.stability}"
        if an.params_mode == "init" and rec.params:
            what += ", params at init (budget)"
        rows.append((path.name, t, what))
    return rows


def bench_order4(depth: int = 1000) -> tuple[float, float]:
    from formulac.analysis import analyze
    from formulac.analysis.linear import structure
    from formulac.analysis.weights import compute_weights
    from formulac.parse import parse

    rec = parse(ORDER4)
    compute_weights(structure(rec), 10)
    weights = _median_time(lambda: compute_weights(structure(rec), depth).block, 5)
    full = _median_time(lambda: analyze(rec, depth).to_json(), 3)
    return weights, full


def _run(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr}")
    return elapsed


#: ``formulac check`` through the analysis command module alone: what the command costs when no
#: other command module imports anything heavy at registration.
_ALONE = (
    "import sys\n"
    "from formulac.cli import _Parser\n"
    "from formulac.cli import analysis_commands as m\n"
    "p = _Parser(prog='formulac')\n"
    "m.register(p.add_subparsers(dest='command', parser_class=_Parser))\n"
    "args = p.parse_args(sys.argv[1:])\n"
    "sys.exit(args.handler(args))\n"
)


def bench_cold(runs: int) -> tuple[float, float, float, list[str]]:
    files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "examples").glob("*.rec"))
    check = [sys.executable, "-m", "formulac", "check", *files]
    alone = [sys.executable, "-c", _ALONE, "check", *files]
    base = [sys.executable, "-c", "import sympy, lark"]
    _run(base), _run(check), _run(alone)  # fill the OS file cache
    tb, tc, ta = [], [], []
    for _ in range(runs):
        tb.append(_run(base))
        tc.append(_run(check))
        ta.append(_run(alone))
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "formulac", "check", *files],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    top = []
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if m and m.group(4).split(".")[0] in ("formulac", "torch", "networkx", "numpy", "sympy", "lark"):
            top.append((int(m.group(2)), len(m.group(3)), m.group(4)))
    top = sorted((t for t in top if t[1] <= 3), reverse=True)[:8]
    lines = [f"{name} {cum / 1e6:.2f} s" for cum, _, name in top]
    return statistics.median(tb), statistics.median(tc), statistics.median(ta), lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7, help="alternating cold runs of each command")
    ap.add_argument("--skip-cold", action="store_true")
    args = ap.parse_args(argv)
    if hasattr(sys, "set_int_max_str_digits"):
        sys.set_int_max_str_digits(0)

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )
    print()
    print("| formula (depth 100) | analyze + to_json (median of 3) | result |")
    print("| --- | ---: | --- |")
    total = 0.0
    for name, t, what in bench_zoo():
        total += t
        print(f"| {name} | {t * 1000:.0f} ms | {what} |")
    print(f"| all | {total:.2f} s | |")
    print()
    w, full = bench_order4()
    print(f"order-4 constant-coefficient formula `{ORDER4}`, depth 1000:")
    print(f"- block weights (exact rationals, all 1000 steps): {w * 1000:.0f} ms (median of 5; target < 1 s)")
    print(f"- whole analyze + to_json: {full * 1000:.0f} ms (median of 3)")
    if not args.skip_cold:
        tb, tc, ta, top = bench_cold(args.runs)
        print()
        print(
            f"cold `formulac check examples/*.rec` vs `python -c \"import sympy, lark\"` "
            f"({args.runs} alternating runs each, medians):"
        )
        print(
            f"- import sympy, lark: {tb:.2f} s; `python -m formulac check`: {tc:.2f} s; ratio {tc / tb:.2f} (target <= 1.5)"
        )
        print(f"- the same check with only the analysis commands registered: {ta:.2f} s; ratio {ta / tb:.2f}")
        print("- largest imports of the check process (cumulative): " + "; ".join(top))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
