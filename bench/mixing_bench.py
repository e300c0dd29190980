"""Overhead of each learned-mixing formula over the plain residual stream: parameters, and CPU
time of a training step (forward, cross-entropy, backward).

Formulas: examples/resnet.rec (the baseline), those examples/learned_mixing.txt names
(denseformer.rec, ..., mhc_k4.rec), then the input-dependent dynamic_hyper_connections_k2.rec,
dynamic_hyper_connections_k4.rec, dynamic_gate.rec, dynamic_mhc_k2.rec, dynamic_mhc_k4.rec
(``--formulas`` picks some; resnet is always
run) on one backbone at one depth (``--backbone mlp
--depth 12`` by default; ``vit`` works too). The mixing parameters are counted from the
formula's own coefficients (``Recurrence.params``; a stream formula's compact ones, ``res_n[4,4]``;
input-dependent ones with their maps' gains, projections and scales), the total from the module.

Time: after warm-up, the formulas take turns round by round (so drift of a shared machine falls
on all of them); each one's median over the rounds is reported as process CPU time (what other
processes disturb least) and wall time, with the ratio to the baseline's median.

    .venv/bin/python bench/mixing_bench.py [--backbone mlp] [--depth 12] [--batch 64]
        [--rounds 9] [--threads 1] [--formulas a,b] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

import formulac
from formulac.codegen import dynamic_parameter_attributes

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
# the baseline, the mixing examples in the order examples/learned_mixing.txt lists them, then the
# input-dependent ones
FORMULAS = (
    ["resnet"]
    + [
        name
        for name in (EXAMPLES / "learned_mixing.txt").read_text().split("\n")
        if name and not name.startswith("#")
    ]
    + ["dynamic_hyper_connections_k2", "dynamic_hyper_connections_k4", "dynamic_gate"]
    + ["dynamic_mhc_k2", "dynamic_mhc_k4"]
)
MAP_PARTS = ("map", "scale", "gain")  # an input-dependent coefficient's learned map
INPUTS = {"mlp": (1, 28, 28), "vit": (3, 32, 32), "cifar-resnet": (3, 32, 32)}


def step_time(net, x, labels) -> tuple[float, float]:
    """CPU and wall seconds of one training step."""
    cpu, wall = time.process_time(), time.perf_counter()
    net.zero_grad(set_to_none=True)
    torch.nn.functional.cross_entropy(net(x), labels).backward()
    return time.process_time() - cpu, time.perf_counter() - wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="mlp", choices=sorted(INPUTS))
    parser.add_argument("--depth", type=int, default=12)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--formulas", help="comma-separated names from the list above (default: all)")
    args = parser.parse_args()
    chosen = ["resnet"] + [f for f in (args.formulas or "").split(",") if f and f != "resnet"]
    formulas = chosen if args.formulas else FORMULAS
    unknown = sorted(set(formulas) - set(FORMULAS))
    if unknown:
        parser.error(f"unknown formulas {unknown}; known: {', '.join(FORMULAS)}")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    nets, rows = {}, {}
    for name in formulas:
        formula = formulac.load(EXAMPLES / f"{name}.rec")
        net = formula.compile(backbone=args.backbone, depth=args.depth)
        held = formula.rec.compact if formula.rec.compact is not None else formula.rec
        coefficients = set(held.params)
        maps = dynamic_parameter_attributes(formula.rec, backbone=args.backbone, depth=args.depth)
        coefficients |= {attr for parts in maps.values() for key, attr in parts.items() if key in MAP_PARTS}
        mixing = sum(p.numel() for key, p in net.named_parameters() if key.rsplit(".", 1)[-1] in coefficients)
        nets[name] = net
        rows[name] = {"parameters": sum(p.numel() for p in net.parameters()), "mixing_parameters": mixing}
    x = torch.randn(args.batch, *INPUTS[args.backbone])
    labels = torch.randint(0, 10, (args.batch,))
    for net in nets.values():  # warm-up
        step_time(net, x, labels)
    samples = {name: [] for name in formulas}
    for _ in range(args.rounds):
        for name, net in nets.items():
            samples[name].append(step_time(net, x, labels))
    base_cpu = statistics.median(c for c, _ in samples["resnet"])
    base_params = rows["resnet"]["parameters"]
    print(
        f"{args.backbone}, depth {args.depth}, batch {args.batch}, {args.threads} thread(s), {args.rounds} rounds"
    )
    print(
        f"{'formula':30} {'params':>9} {'+params':>8} {'mixing':>7} {'cpu ms':>8} {'wall ms':>8} {'cpu ratio':>9}"
    )
    for name in formulas:
        cpu = statistics.median(c for c, _ in samples[name])
        wall = statistics.median(w for _, w in samples[name])
        row = rows[name]
        row.update(cpu_ms=1000 * cpu, wall_ms=1000 * wall, cpu_ratio=cpu / base_cpu)
        print(
            f"{name:30} {row['parameters']:9d} {row['parameters'] - base_params:8d} {row['mixing_parameters']:7d} "
            f"{row['cpu_ms']:8.2f} {row['wall_ms']:8.2f} {row['cpu_ratio']:9.3f}"
        )
    if args.json:
        args.json.write_text(
            json.dumps({"settings": vars(args) | {"json": str(args.json)}, "rows": rows}, indent=1)
        )


if __name__ == "__main__":
    main()
