"""Compiled networks against the same networks written by hand: step time and memory (CPU).

Pairs (same weights loaded into both sides, outputs checked equal before timing):

* ResNet-56:    ``x_<n+1> = relu(x_n + F(x_n))`` on cifar-resnet (shortcut A)
                vs ``HandResNetCifar(56)``;
* LM-ResNet-56: ``param k_n = 1.05; x_<n+1> = k_n*x_n + (1 - k_n)*x_<n-1> + F(x_n)``
                vs ``HandLMResNetCifar(56, k_init=1.05)``.

The hand-written networks are ``tests/reference_models.py`` (imported by path).

Time: one training step = zero_grad + forward + cross-entropy + backward, on a fixed batch of
3x32x32 images. After warm-up the two sides of a pair alternate in one process, in ABBA order
(compiled, hand, hand, compiled, ...) so that drift of a shared machine falls on both; each
side's median over the rounds is reported, as wall time and as the process's CPU time (with
--threads 1 the CPU time is what other processes on the machine disturb least), with the ratio
of the medians and the median of the per-round ratios (compiled / hand of the same round).

Memory, three ways:

* saved activation bytes: the unique storages that autograd saves for backward during one
  forward (``torch.autograd.graph.saved_tensors_hooks``); exact and deterministic, and the
  part of the memory in which a generated network could differ from a hand-written one;
* allocator peak: the peak of all CPU tensor memory alive during one training step, from
  ``torch.profiler`` with ``profile_memory=True`` (``export_memory_timeline``);
* RSS peak (``--rss``): each network trained for a few steps in a fresh process, reporting the
  rise of the peak resident set size over the resident size before the first step.

Targets: time ratio (compiled / hand) <= 1.03, memory ratio <= 1.02.

    .venv/bin/python bench/codegen_bench.py [--batch 32] [--rounds 15] [--threads 1] [--rss]
        [--json out.json]
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from bench_timing import seconds_per_call, whole_number_options, write_json

import formulac

REPO = Path(__file__).resolve().parents[1]
RESNET = "x_<n+1> = relu(x_n + F(x_n))"
LM_RESNET = "param k_n = 1.05\nx_<n+1> = k_n*x_n + (1 - k_n)*x_<n-1> + F(x_n)"


def reference_models():
    spec = importlib.util.spec_from_file_location("reference_models", REPO / "tests" / "reference_models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_pair(name: str, depth: int = 56):
    """(compiled, hand) with the same weights, in train mode."""
    ref = reference_models()
    torch.manual_seed(0)
    if name == "resnet":
        hand = ref.HandResNetCifar(depth=depth)
        compiled = formulac.compile(RESNET, backbone="cifar-resnet", depth=depth, shortcut="A")
    elif name == "lm-resnet":
        hand = ref.HandLMResNetCifar(depth=depth, k_init=1.05)
        compiled = formulac.compile(LM_RESNET, backbone="cifar-resnet", depth=depth, shortcut="A")
    else:
        raise ValueError(name)
    ref.spread_step_coefficients_(ref.deterministic_weights_(hand))
    compiled.load_state_dict(hand.state_dict())
    return compiled.train(), hand.train()


def check_same(compiled, hand, x) -> float:
    compiled.eval(), hand.eval()
    with torch.no_grad():
        a, b = compiled(x), hand(x)
    compiled.train(), hand.train()
    diff = (a - b).abs().max().item()
    if diff > 1e-4 * max(1.0, b.abs().max().item()):
        raise SystemExit(f"compiled and hand-written networks differ by {diff}")
    return diff


def step(model, x, y) -> None:
    model.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(x), y)
    loss.backward()


def timed_step(model, x, y) -> tuple[float, float]:
    return seconds_per_call(lambda: step(model, x, y))


def time_pair(compiled, hand, x, y, rounds: int, warmup: int) -> dict:
    for _ in range(warmup):
        step(compiled, x, y)
        step(hand, x, y)
    wall = {"compiled": [], "hand": []}
    cpu = {"compiled": [], "hand": []}
    for r in range(rounds):
        order = (("compiled", compiled), ("hand", hand))
        if r % 2:
            order = order[::-1]  # ABBA
        for side, model in order:
            w, c = timed_step(model, x, y)
            wall[side].append(w)
            cpu[side].append(c)
    out = {}
    for kind, values in (("wall", wall), ("cpu", cpu)):
        med = {side: statistics.median(v) for side, v in values.items()}
        paired = [c / h for c, h in zip(values["compiled"], values["hand"])]  # same round
        out[kind] = {
            "compiled_median_s": med["compiled"],
            "hand_median_s": med["hand"],
            "ratio": med["compiled"] / med["hand"],
            "paired_ratio_median": statistics.median(paired),
            "ratio_of_minima": min(values["compiled"]) / min(values["hand"]),
            "compiled_all_s": values["compiled"],
            "hand_all_s": values["hand"],
        }
    return out


def saved_activation_bytes(model, x, y) -> dict:
    """Bytes of the unique storages autograd saves during one forward (and how many saves)."""
    storages: dict[int, int] = {}
    saves = 0

    def pack(t):
        nonlocal saves
        saves += 1
        s = t.untyped_storage()  # saved tensors stay alive until backward: pointers are unique
        storages[s.data_ptr()] = s.nbytes()
        return t

    model.zero_grad(set_to_none=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = F.cross_entropy(model(x), y)
    loss.backward()
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    return {"bytes": sum(n for ptr, n in storages.items() if ptr not in params), "saves": saves}


def allocator_peak_bytes(model, x, y) -> int:
    """Peak CPU tensor memory during one training step (torch.profiler memory timeline)."""
    import warnings

    from torch.profiler import ProfilerActivity, profile

    model.zero_grad(set_to_none=True)
    with profile(
        activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True
    ) as prof:
        step(model, x, y)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = os.path.join(tmp, "timeline.json")
        prof.export_memory_timeline(path, device="cpu")
        with open(path) as handle:
            _, sizes = json.load(handle)
    return max(sum(s) for s in sizes)


_RSS_CHILD = """
import resource, sys, torch
sys.path.insert(0, sys.argv[1])
torch.set_num_threads(int(sys.argv[5]))
import codegen_bench as b
compiled, hand = b.build_pair(sys.argv[2])
model = compiled if sys.argv[3] == "compiled" else hand
batch = int(sys.argv[4])
x = torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(1))
y = torch.randint(0, 10, (batch,), generator=torch.Generator().manual_seed(2))
del compiled, hand
import gc; gc.collect()
def rss_kib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() // 1024
before = rss_kib()
for _ in range(3):
    b.step(model, x, y)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""


def rss_rise_kib(pair: str, side: str, batch: int, threads: int) -> int:
    result = subprocess.run(
        [sys.executable, "-c", _RSS_CHILD, str(Path(__file__).parent), pair, side, str(batch), str(threads)],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(result.stdout.strip().splitlines()[-1])


def machine() -> dict:
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "load_average_1m": os.getloadavg()[0],
    }


def main(argv=None) -> int:
    parser = whole_number_options(__doc__.splitlines()[0], batch=32, rounds=15, warmup=3, threads=1, depth=56)
    parser.add_argument("--pairs", default="resnet,lm-resnet")
    parser.add_argument(
        "--rss", action="store_true", help="also measure the peak RSS rise in fresh processes"
    )
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    results = {
        "machine": machine(),
        "batch": args.batch,
        "rounds": args.rounds,
        "depth": args.depth,
        "command": "bench/codegen_bench.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "pairs": {},
    }
    x = torch.randn(args.batch, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, 10, (args.batch,), generator=torch.Generator().manual_seed(2))
    for pair in args.pairs.split(","):
        compiled, hand = build_pair(pair, args.depth)
        entry = {"max_abs_output_difference": check_same(compiled, hand, x[:4])}
        entry["time"] = time_pair(compiled, hand, x, y, args.rounds, args.warmup)
        saved = {
            side: saved_activation_bytes(m, x, y) for side, m in (("compiled", compiled), ("hand", hand))
        }
        entry["saved_activation_bytes"] = {
            "compiled": saved["compiled"]["bytes"],
            "hand": saved["hand"]["bytes"],
            "compiled_saves": saved["compiled"]["saves"],
            "hand_saves": saved["hand"]["saves"],
            "ratio": saved["compiled"]["bytes"] / saved["hand"]["bytes"],
        }
        peaks = {}
        for side, m in (("compiled", compiled), ("hand", hand), ("hand", hand), ("compiled", compiled)):
            peaks.setdefault(side, []).append(allocator_peak_bytes(m, x, y))
        entry["allocator_peak_bytes"] = {
            "compiled": max(peaks["compiled"]),
            "hand": max(peaks["hand"]),
            "ratio": max(peaks["compiled"]) / max(peaks["hand"]),
            "repeat_agrees": len(set(peaks["compiled"])) == 1 and len(set(peaks["hand"])) == 1,
        }
        if args.rss:
            rss = {side: rss_rise_kib(pair, side, args.batch, args.threads) for side in ("compiled", "hand")}
            entry["rss_peak_rise_kib"] = dict(rss, ratio=rss["compiled"] / rss["hand"])
        results["pairs"][pair] = entry
        del compiled, hand
    results["machine"]["load_average_1m_end"] = os.getloadavg()[0]
    print(report(results))
    if args.json:
        write_json(args.json, results, indent=2)
    return 0


def report(results: dict) -> str:
    m = results["machine"]
    lines = [
        f"machine: {m['cores']} cores ({m['cpu']}), torch {m['torch']}, {m['threads']} thread(s), "
        f"load average {m['load_average_1m']:.1f} -> {m.get('load_average_1m_end', float('nan')):.1f}",
        f"batch {results['batch']} x 3x32x32, depth {results['depth']}, {results['rounds']} alternating rounds",
        "",
        "| pair | wall compiled (ms) | wall hand (ms) | wall ratio | CPU ratio | CPU ratio, paired | saved activations compiled / hand (MiB) | ratio | allocator peak compiled / hand (MiB) | ratio |"
        + (" RSS rise ratio |" if any("rss_peak_rise_kib" in e for e in results["pairs"].values()) else ""),
        "|---|---|---|---|---|---|---|---|---|---|"
        + ("---|" if any("rss_peak_rise_kib" in e for e in results["pairs"].values()) else ""),
    ]
    for pair, e in results["pairs"].items():
        t, c, s, p = (
            e["time"]["wall"],
            e["time"]["cpu"],
            e["saved_activation_bytes"],
            e["allocator_peak_bytes"],
        )
        row = (
            f"| {pair} | {t['compiled_median_s'] * 1e3:.1f} | {t['hand_median_s'] * 1e3:.1f} | {t['ratio']:.3f} | "
            f"{c['ratio']:.3f} | {c['paired_ratio_median']:.3f} | {s['compiled'] / 2**20:.2f} / {s['hand'] / 2**20:.2f} | {s['ratio']:.4f} | "
            f"{p['compiled'] / 2**20:.2f} / {p['hand'] / 2**20:.2f} | {p['ratio']:.4f} |"
        )
        if "rss_peak_rise_kib" in e:
            r = e["rss_peak_rise_kib"]
            row += f" {r['ratio']:.3f} ({r['compiled'] / 1024:.0f} / {r['hand'] / 1024:.0f} MiB) |"
        lines.append(row)
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
