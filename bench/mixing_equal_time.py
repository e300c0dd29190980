"""The learned-mixing formulas against the plain stream at equal training time (issue 18).

Issue 18 asks for each mixing formula's accuracy (``vit``, Fashion-MNIST) and loss (``gpt``,
text) against the plain stream at equal wall time, >= 3 seeds. Wall time on a shared machine is
noise, so the budget is set in measured compute:

1. **Step time.** Every formula's network (the run's backbone, size and batch) takes training
   steps (forward, cross-entropy, backward, AdamW) in turns, round after round, on one thread;
   the median process CPU time of a step is its cost, ``r_f`` its ratio to the baseline's.
2. **Budget.** Every formula trains the same number of epochs of ``floor(N / r_f)`` training
   images (``vit``: the first ones of the set, ``--limit-train``) or tokens (``gpt``:
   ``--epoch-tokens``, whole batches), N the baseline's, so that steps x step time is the
   baseline's: a formula twice as slow sees half the data. A formula measured faster than the
   baseline keeps N (``vit``: there are no more images). Each run's learning-rate schedule spans
   its own steps, as a run stopped by a time limit would want.
3. **Runs.** ``formulac train`` per (formula, seed), ``--jobs`` at a time, one thread each,
   seed by seed. Finished runs are kept: the same command again goes on where it stopped (with
   the budgets of its first call, stored in ``OUT/plan.json``).
   Formulas added to a later call are measured with the baseline and added to the plan.
4. **Table.** ``formulac compare``'s statistics (``formulac.train.seed_statistics``): mean and
   sd over the seeds, the paired difference to the baseline (the first formula) with its 95 %
   confidence interval, t-test (Holm-adjusted over the formulas), d_z and Wilcoxon, the Friedman
   test over all; and each run's training CPU seconds (which show how equal the budgets came
   out): ``OUT/equal_time.md`` and ``OUT/equal_time.json``.

    .venv/bin/python bench/mixing_equal_time.py vit [-o DIR] [--formulas resnet,denseformer,...]
        [--seeds 3] [--epochs E] [--jobs 2] [--rounds 20] [--measure-only]
    .venv/bin/python bench/mixing_equal_time.py gpt [...]

``vit`` is the 2-core CPU budget of the ViT comparison (``BUDGET=cpu bench/vit_fashion_compare.sh``:
dim 64, depth 4, patch 4, mean pooling, no augmentation or label smoothing) at 4 epochs; ``gpt``
the CPU table of ``bench/gpt_cpu_table.sh`` (4 layers x 128, context 128, ``text:fortunes`` as
bytes, 2 epochs of 48 steps of 32 windows, lr 2e-3, fp32). ``resnet.rec`` on these backbones is the
pre-norm transformer layer (``transformers/pre_norm.rec`` builds the same network).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

import formulac
from formulac.train.seed_statistics import (
    Measure,
    markdown_table,
    mean_sd_text,
    pairwise_cells,
    pairwise_statistics,
)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
FORMULAS = (
    "resnet",
    "denseformer",
    "hyper_connections_k2",
    "hyper_connections_k4",
    "mhc_k4",
    "laurel_rw",
    "dynamic_hyper_connections_k2",
)


@dataclass(frozen=True)
class Setting:
    """One backbone's benchmark: its network, its training command, the knob of its budget."""

    backbone: str
    depth: int
    options: dict
    train: tuple[str, ...]  # the rest of the `formulac train` command
    epochs: int
    budget_option: str
    budget: int  # the baseline's value of budget_option
    unit: int  # budgets are whole multiples of it
    data_name: str  # what the budget counts
    metric: str  # the summary's figure
    metric_name: str
    scale: float  # the figure as reported = scale * the summary's
    measure: Measure  # its unit, digits and direction, as `formulac compare` reports it
    batch: Callable[[], tuple[torch.Tensor, torch.Tensor]]  # a training batch: input, targets
    data_shape: dict  # the options the data set gives the network (classes, channels)


SETTINGS = {
    "vit": Setting(
        backbone="vit",
        depth=4,
        options={"dim": 64, "heads": 4, "patch": 4, "mlp_ratio": 2, "input_size": 28, "pool": "mean"},
        train=(
            "--data",
            "fashion-mnist",
            "--recipe",
            "transformer",
            "--no-augment",
            "--label-smoothing",
            "0",
        ),
        epochs=4,
        budget_option="--limit-train",
        budget=60_000,  # Fashion-MNIST's training set
        unit=1,
        data_name="images",
        metric="final_test_acc",
        metric_name="test accuracy %",
        scale=100.0,
        measure=Measure(unit="points", digits=2, lower_is_better=False, no_difference=""),
        batch=lambda: (torch.randn(128, 1, 28, 28), torch.randint(0, 10, (128,))),  # the recipe's batch
        data_shape={"num_classes": 10, "in_channels": 1},
    ),
    "gpt": Setting(
        backbone="gpt",
        depth=4,
        options={"dim": 128, "heads": 4, "context": 128},
        train=(
            *("--data", "text:fortunes", "--recipe", "text", "--batch-size", "32", "--eval-windows", "256"),
            *("--lr", "2e-3", "--amp", "none", "--device", "cpu"),
        ),
        epochs=2,
        budget_option="--epoch-tokens",
        budget=196_608,  # 48 steps of 32 windows x 128 tokens
        unit=32 * 128,
        data_name="tokens",
        metric="final_val_loss",
        metric_name="val loss (nats/byte)",
        scale=1.0,
        measure=Measure(unit="nats", digits=4, lower_is_better=True, no_difference=""),
        batch=lambda: (torch.randint(0, 256, (32, 128)), torch.randint(0, 256, (32, 128))),
        data_shape={"num_classes": 256},  # bytes
    ),
}


def cpu_step_costs(setting: Setting, formulas: list[str], rounds: int) -> dict[str, float]:
    """Median process CPU seconds of one training step of each formula, in turns, one thread."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    x, targets = setting.batch()
    steps = {}
    for name in formulas:
        net = formulac.load(EXAMPLES / f"{name}.rec").compile(
            backbone=setting.backbone, depth=setting.depth, **setting.data_shape, **setting.options
        )
        optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4)

        def step(net=net, optimizer=optimizer) -> float:
            start = time.process_time()
            optimizer.zero_grad(set_to_none=True)
            logits = net(x)
            torch.nn.functional.cross_entropy(logits.flatten(0, -2), targets.flatten()).backward()
            optimizer.step()
            return time.process_time() - start

        steps[name] = step
    for step in steps.values():  # warm-up
        step(), step()
    samples: dict[str, list[float]] = {name: [] for name in formulas}
    for _ in range(rounds):
        for name, step in steps.items():
            samples[name].append(step())
    return {name: statistics.median(s) for name, s in samples.items()}


def plan_budgets(setting: Setting, costs: dict[str, float], baseline: str) -> dict[str, dict]:
    """Each formula's budget (``setting.budget_option``) for the baseline's compute."""
    plan = {}
    for name, cost in costs.items():
        ratio = cost / costs[baseline]
        units = min(setting.budget, math.floor(setting.budget / ratio)) // setting.unit
        plan[name] = {"cpu_s_per_step": cost, "ratio": ratio, "budget": units * setting.unit}
    return plan


def extended_plan(setting: Setting, plan_file: Path, formulas: list[str], rounds: int) -> dict[str, dict]:
    """The budgets of ``formulas`` (the first the baseline): those of an earlier call to the same
    folder are kept (a resumed benchmark trains what it planned); formulas it did not have are
    measured with the baseline, in the same rounds, and added. A new baseline starts over."""
    plan = json.loads(plan_file.read_text()) if plan_file.is_file() else {}
    if next(iter(plan), None) != formulas[0]:
        plan = {}
    new = [f for f in formulas if f not in plan]
    if new:
        measured = plan_budgets(setting, cpu_step_costs(setting, [formulas[0], *new], rounds), formulas[0])
        plan.update({name: measured[name] for name in new if name not in plan})
        plan_file.write_text(json.dumps(plan, indent=1))
    return {name: plan[name] for name in formulas}


def train_command(
    setting: Setting, name: str, budget: int, seed: int, epochs: int, run_dir: Path
) -> list[str]:
    command = [sys.executable, "-m", "formulac", "train", str(EXAMPLES / f"{name}.rec")]
    command += ["--backbone", setting.backbone, "--depth", str(setting.depth), *setting.train]
    for key, value in setting.options.items():
        command += ["-O", f"{key}={value}"]
    command += ["--epochs", str(epochs), "--threads", "1", "--seed", str(seed), "--no-progress"]
    return command + [setting.budget_option, str(budget), "-o", str(run_dir), "--overwrite"]


def run_all(setting: Setting, plan: dict, args, out: Path) -> None:
    """Train every (formula, seed) without a summary, seed by seed, ``args.jobs`` at a time."""
    todo = [
        (name, seed)
        for seed in range(args.seeds)
        for name in plan
        if not (out / name / f"seed{seed}" / "summary.json").is_file()
    ]
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)

    def one(item: tuple[str, int]) -> int:
        name, seed = item
        run_dir = out / name / f"seed{seed}"
        command = train_command(setting, name, plan[name]["budget"], seed, args.epochs, run_dir)
        with open(logs / f"{name}_seed{seed}.log", "w") as log:
            code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT).returncode
        print(f"{time.strftime('%H:%M:%S')} {name} seed {seed}: exit {code}", flush=True)
        return code

    with ThreadPoolExecutor(args.jobs) as pool:
        failed = [item for item, code in zip(todo, pool.map(one, todo)) if code]
    if failed:
        sys.exit(f"failed runs (see {logs}): {failed}")


def table(setting: Setting, plan: dict, out: Path, seeds: int) -> tuple[list[str], dict]:
    """The markdown table of the finished runs and its figures: the statistics of `formulac
    compare` (paired by seed against the first formula, Holm-adjusted t-tests, Wilcoxon,
    Friedman over all)."""
    names = list(plan)
    summaries = {
        name: [json.loads((out / name / f"seed{s}" / "summary.json").read_text()) for s in range(seeds)]
        for name in names
    }
    value = {name: [setting.scale * r[setting.metric] for r in rs] for name, rs in summaries.items()}
    test, pairwise = pairwise_statistics(
        names, [value[name] for name in names], "difference", setting.metric_name
    )
    by_model = {pw["model"]: pw for pw in pairwise}
    head = ["formula", "parameters", "step CPU ratio", f"{setting.data_name} / epoch", setting.metric_name]
    head += [
        f"vs {names[0]}",
        "95% CI",
        "p (t)",
        "d_z",
        "p (Wilcoxon)",
        "train CPU s (median)",
        "wall min (median)",
    ]
    rows = []
    for name in names:
        rs = summaries[name]
        rows.append(
            [name, f"{rs[0]['parameters']:,}", f"{plan[name]['ratio']:.3f}", f"{plan[name]['budget']:,}"]
            + [mean_sd_text(value[name], setting.measure.digits)]
            + pairwise_cells(by_model.get(name), len(names) > 2, "difference", setting.measure)
            + [f"{statistics.median(r['train_cpu_time_s'] for r in rs):.0f}"]
            + [f"{statistics.median(r['wall_time_s'] for r in rs) / 60:.1f}"]
        )
    d = setting.measure.digits
    lines = markdown_table(head, rows) + [
        "",
        test.describe() if test else "",
        f"Per seed ({setting.metric_name}):",
        "",
    ]
    lines += [f"- {name}: " + ", ".join(f"{v:.{d}f}" for v in value[name]) for name in names]
    runs = {
        name: {
            setting.metric: value[name],
            "train_cpu_s": [r["train_cpu_time_s"] for r in summaries[name]],
            "wall_s": [r["wall_time_s"] for r in summaries[name]],
            **plan[name],
        }
        for name in names
    }
    return lines, {"runs": runs, "test": test and test.to_dict(), "pairwise": pairwise}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("backbone", choices=sorted(SETTINGS))
    parser.add_argument("-o", "--out", type=Path, help="default: runs/<backbone>-mixing-equal-time")
    parser.add_argument(
        "--formulas", default=",".join(FORMULAS), help="comma-separated; the first is the baseline"
    )
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, help="default: the setting's (vit 4, gpt 2)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=20, help="rounds of the step-time measurement")
    parser.add_argument("--measure-only", action="store_true", help="measure and plan, train nothing")
    args = parser.parse_args()
    setting = SETTINGS[args.backbone]
    args.epochs = args.epochs or setting.epochs
    formulas = [f for f in args.formulas.split(",") if f]
    if args.seeds < 1 or args.jobs < 1 or args.epochs < 1 or args.rounds < 1:
        parser.error("--seeds, --jobs, --epochs and --rounds are at least 1")
    missing = [f for f in formulas if not (EXAMPLES / f"{f}.rec").is_file()]
    if missing:
        parser.error(f"no examples/<name>.rec for {missing}")
    out = args.out or ROOT / "runs" / f"{args.backbone}-mixing-equal-time"
    out.mkdir(parents=True, exist_ok=True)
    plan = extended_plan(setting, out / "plan.json", formulas, args.rounds)
    for name, row in plan.items():
        print(
            f"{name:30} {1000 * row['cpu_s_per_step']:8.1f} CPU ms/step  ratio {row['ratio']:.3f}  "
            f"{row['budget']:7d} {setting.data_name}/epoch"
        )
    if args.measure_only:
        return
    run_all(setting, plan, args, out)
    lines, figures = table(setting, plan, out, args.seeds)
    (out / "equal_time.md").write_text("\n".join(lines) + "\n")
    (out / "equal_time.json").write_text(json.dumps(figures, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
