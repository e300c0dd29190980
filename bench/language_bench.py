"""How the time to read a formula file grows with its size (figures go to docs/benchmarks.md).

    .venv/bin/python bench/language_bench.py [--runs 3] [--sizes 1000,5000,20000]

For each size N: ``parse`` (text -> Recurrence, constants resolved) of a chain of N constants
written forwards (``c0 = c1 + 1``, ...) and backwards (``c1 = c0 + 1``, ...), and of N same-step
states each reading the next; medians of alternating in-process runs. The ratio of time per line
at the largest size to time per line at the smallest is the figure to watch: about 1 for linear
work, N_max / N_min for quadratic work (before issue 11, 400 lines took 20-37 s).

Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import statistics
import time
from pathlib import Path

from formulac.parse import parse


def _inputs():
    """The files of tests/language/test_sizes.py, which this measures at larger sizes."""
    path = Path(__file__).resolve().parents[1] / "tests" / "language" / "test_sizes.py"
    spec = importlib.util.spec_from_file_location("test_sizes", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {
        "constants, forwards": module.forward_chain,
        "constants, backwards": module.backward_chain,
        "same-step states": module.same_step_states,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sizes", default="1000,5000,20000")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    kinds = _inputs()
    parse(kinds["constants, forwards"](10))  # the parser tables and imports
    times: dict = {(k, n): [] for k in kinds for n in sizes}
    for _ in range(args.runs):  # alternate sizes and kinds within each run: the machine is noisy
        for n in sizes:
            for kind, make in kinds.items():
                text = make(n)
                start = time.perf_counter()
                parse(text)
                times[(kind, n)].append(time.perf_counter() - start)
    print(f"## Reading large formula files ({platform.python_version()}, {os.cpu_count()} CPUs)\n")
    print("| file | " + " | ".join(f"{n} lines" for n in sizes) + " | per-line ratio |")
    print("| --- | " + " | ".join("---" for _ in sizes) + " | --- |")
    for kind in kinds:
        medians = [statistics.median(times[(kind, n)]) for n in sizes]
        ratio = (medians[-1] / sizes[-1]) / (medians[0] / sizes[0])
        cells = " | ".join(f"{m:.2f} s" for m in medians)
        print(f"| {kind} | {cells} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
