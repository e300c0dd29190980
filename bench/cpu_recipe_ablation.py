"""CPU accuracy per second: the fast recipes' training techniques added one at a time, at equal time.

Study ``ablation``: the compiled ResNet formula ``x_<n+1> = relu(x_n + F(x_n))`` on cifar-resnet,
trained on all 60,000 Fashion-MNIST training images and tested on all 10,000 test images.  Row 0
is He et al.'s recipe (SGD 0.1, momentum 0.9, weight decay 1e-4, lr x0.1 at 50 % and 75 %,
batch 128, crop with 2-pixel padding and flips), fp32, NCHW.  Each further row tries one more
technique on top of the best configuration so far; it is kept when its test accuracy beats that
configuration's (speed techniques pay through the extra epochs they buy).  "Width against depth"
tries a deeper and a wider-at-lower-resolution network of about the same cost.

Equal time: every row gets the same budget of CPU seconds (``--budget``, one thread).  A short
calibration (2 epochs on 4,096 images) measures the configuration's training images per CPU
second, and the row trains as many whole epochs as fit (at least one).  Techniques that leave
the cost of a step unchanged (schedule, smoothing, decay groups, EMA, TTA, augmentation) train
the epochs of the row they build on; the others are calibrated anew.  With one thread the
CPU time is the wall time of a quiet machine; on a shared machine it is much less disturbed by
other jobs than the wall time (both are recorded, with the load average).

Study ``frontier``: test accuracy against time for the chosen recipe (``--recipe``, default
``fashion``) and several networks, one run per (network, epochs) pair.

Study ``recipe``: the chosen recipe (``--recipe``) on the demo's network, then with one
technique taken out (or added) at a time, ``--seeds`` seeds each.

Study ``speed``: training images per CPU second of one step for several networks (bf16,
channels_last, batch 128), in alternating rounds.

Writes OUT/STUDY.json and OUT/STUDY.md (the table, the machine, the command, the load).

    .venv/bin/python bench/cpu_recipe_ablation.py --study ablation --budget 120
    .venv/bin/python bench/cpu_recipe_ablation.py --study frontier --epochs-list 2,3,4,5
    .venv/bin/python bench/cpu_recipe_ablation.py --study speed --networks 8,16,1 8,32,2 8,24,2
    .venv/bin/python bench/cpu_recipe_ablation.py --dry-run      # every row on 512 images, 1 epoch
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

import formulac
from formulac.train import load_dataset, make_config, read_metrics, train

RESNET = "x_<n+1> = relu(x_n + F(x_n))"
CALIBRATION_IMAGES = 4096


@dataclass
class Row:
    name: str
    technique: str
    network: dict  # depth, width, stem_stride
    changes: dict  # TrainConfig overrides
    results: list[dict] = field(default_factory=list)
    kept: bool | None = None  # ablation: did it beat the best row before it

    def mean_acc(self) -> float:
        return statistics.fmean(r["test_acc"] for r in self.results)


def _load() -> str:
    try:
        with open("/proc/loadavg") as f:
            return f.read().split()[0]
    except OSError:
        return "n/a"


def _machine() -> dict:
    model = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), model)
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "formulac": formulac.__version__ if hasattr(formulac, "__version__") else "dev",
        "platform": platform.platform(),
    }


def _builder(network: dict):
    def build(in_channels, num_classes, input_size):
        return formulac.compile(
            RESNET,
            backbone="cifar-resnet",
            in_channels=in_channels,
            num_classes=num_classes,
            depth=network["depth"],
            width=network["width"],
            stem_stride=network["stem_stride"],
        )

    return build


def _config(changes: dict, args, **extra):
    base = dict(data=args.data, device="cpu", threads=args.threads)
    base.update(changes)
    base.update(extra)
    recipe = base.pop("recipe", "cifar")
    return make_config(recipe, **base)


def _train(row: Row, data, args, seed: int, epochs: int, workdir: Path, limit=None) -> dict:
    config = _config(row.changes, args, epochs=epochs, seed=seed, eval_every=epochs, limit_train=limit)
    out = workdir / f"{row.name}-s{seed}-e{epochs}-{limit or 'all'}"
    load_before = _load()
    t0, c0 = time.perf_counter(), time.process_time()
    s = train(_builder(row.network), config, out, overwrite=True, progress=False, quiet=True, dataset=data)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {
        "seed": seed,
        "epochs": epochs,
        "test_acc": s["final_test_acc"],
        "wall_s": wall,
        "cpu_s": cpu,
        "train_cpu_s": s["train_cpu_time_s"],
        "images_per_s": s["images_per_s"],
        "parameters": s["parameters"],
        "load": f"{load_before}->{_load()}",
        "metrics": read_metrics(out),
    }


def _epochs_for_budget(row: Row, data, args, workdir: Path) -> tuple[int, float]:
    """(epochs that fit in the budget, training images per CPU second) by calibration."""
    if args.dry_run:
        return 1, float("nan")
    cal = _train(row, data, args, 0, 2, workdir, limit=CALIBRATION_IMAGES)
    last = cal["metrics"][-1]
    per_cpu_s = CALIBRATION_IMAGES / last["train_cpu_seconds"]
    n_train = data.train_images.shape[0]
    return max(1, round(args.budget * per_cpu_s / n_train)), per_cpu_s


def _run_row(row: Row, data, args, workdir: Path, like: Row | None = None) -> None:
    """Train ``row``; with ``like``, for as many epochs as that row (same cost per step)."""
    if like is not None:
        epochs, per_cpu_s = like.results[0]["epochs"], like.results[0]["calibrated_images_per_cpu_s"]
    else:
        epochs, per_cpu_s = _epochs_for_budget(row, data, args, workdir)
    for seed in range(args.seeds):
        r = _train(row, data, args, seed, epochs, workdir, limit=512 if args.dry_run else None)
        r["calibrated_images_per_cpu_s"] = per_cpu_s
        row.results.append(r)
    print(
        f"{row.name:28s} {row.technique:46s} epochs {epochs:2d}  acc {100 * row.mean_acc():.2f}%  "
        f"cpu {statistics.fmean(r['cpu_s'] for r in row.results):6.1f}s  "
        f"wall {statistics.fmean(r['wall_s'] for r in row.results):6.1f}s  load {row.results[-1]['load']}",
        flush=True,
    )


# ------------------------------------------------------------------------------------------------
# the studies

BASE_NET = {"depth": 8, "width": 16, "stem_stride": 1}

# (name, technique in words, network changes, config changes, changes the cost of a step);
# each is tried on the best row so far. A technique that leaves a step's cost as it is trains
# the best row's number of epochs (a fresh calibration would only add its noise); the others
# are calibrated anew.
STEPS = [
    (
        "schedule",
        "linear decay after a 0.3-epoch warm-up, Nesterov",
        {},
        dict(schedule="linear", warmup_epochs=0.3, nesterov=True),
        False,
    ),
    ("label_smoothing", "label smoothing 0.1", {}, dict(label_smoothing=0.1), False),
    (
        "no_norm_bias_decay",
        "no weight decay on batch norm and biases",
        {},
        dict(norm_bias_decay=False),
        False,
    ),
    ("ema", "EMA of the weights (decay 0.999)", {}, dict(ema_decay=0.999), False),
    ("tta", "flip test-time augmentation", {}, dict(tta=True), False),
    ("no_crop", "flips only, no random crop", {}, dict(crop_padding=0), False),
    ("channels_last", "channels_last", {}, dict(channels_last=True), True),
    ("bf16", "bf16 autocast", {}, dict(amp="bf16"), True),
    ("batch_256", "batch 256, lr 0.2", {}, dict(batch_size=256, lr=0.2), True),
    ("deeper", "depth 14 (width 16)", {"depth": 14}, {}, True),
    ("wider_stride2", "width 32, stem stride 2 (14x14 stages)", {"width": 32, "stem_stride": 2}, {}, True),
    ("compile", "torch.compile (compile time counted)", {}, dict(compile=True), True),
]


def ablation(data, args, workdir: Path) -> dict:
    base = Row(
        "baseline",
        "He et al. (step schedule, wd 1e-4 everywhere), fp32, NCHW",
        dict(BASE_NET),
        dict(recipe="cifar", crop_padding=2),
    )
    _run_row(base, data, args, workdir)
    rows, best = [base], base
    for name, technique, net, changes, costs in STEPS:
        if args.only and name not in args.only:
            continue
        row = Row(name, technique, {**best.network, **net}, {**best.changes, **changes})
        try:
            _run_row(row, data, args, workdir, like=None if costs else best)
        except Exception as e:  # e.g. torch.compile without a working compiler
            row.results.append({"error": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"})
            print(f"{name}: failed ({row.results[-1]['error']})", flush=True)
            rows.append(row)
            continue
        row.kept = row.mean_acc() > best.mean_acc()
        rows.append(row)
        if row.kept:
            best = row
    return {"rows": rows, "best": best}


FRONTIER_NETS = [
    {"depth": 8, "width": 16, "stem_stride": 1},
    {"depth": 8, "width": 32, "stem_stride": 2},
    {"depth": 8, "width": 24, "stem_stride": 1},
]


def frontier(data, args, workdir: Path) -> dict:
    rows = []
    nets = FRONTIER_NETS if not args.networks else [_parse_net(s) for s in args.networks]
    for net in nets:
        for epochs in args.epochs_list:
            name = f"d{net['depth']}-w{net['width']}-s{net['stem_stride']}-e{epochs}"
            row = Row(name, f"{args.recipe} recipe, {epochs} epochs", net, dict(recipe=args.recipe))
            for seed in range(args.seeds):
                row.results.append(
                    _train(row, data, args, seed, epochs, workdir, limit=512 if args.dry_run else None)
                )
            print(
                f"{name:24s} acc {100 * row.mean_acc():.2f}%  wall {statistics.fmean(r['wall_s'] for r in row.results):6.1f}s  "
                f"cpu {statistics.fmean(r['cpu_s'] for r in row.results):6.1f}s  load {row.results[-1]['load']}",
                flush=True,
            )
            rows.append(row)
    return {"rows": rows, "best": None}


# one change at a time to the chosen recipe (none changes the cost of a training step, so the
# same epochs are the same time)
RECIPE_TOGGLES = [
    ("no_ema", "without the EMA of the weights", dict(ema_decay=0.0)),
    ("no_label_smoothing", "without label smoothing", dict(label_smoothing=0.0)),
    ("no_tta", "without flip TTA", dict(tta=False)),
    ("no_norm_bias_decay", "with no weight decay on batch norm and biases", dict(norm_bias_decay=False)),
    ("crop_2", "with random crops (2-pixel padding)", dict(crop_padding=2)),
]


def recipe(data, args, workdir: Path) -> dict:
    """The recipe as it is, then with one technique taken out (or added) at a time, at the
    recipe's epochs on the first of --networks (default: the demo's network)."""
    net = _parse_net(args.networks[0]) if args.networks else {"depth": 8, "width": 32, "stem_stride": 2}
    epochs = 1 if args.dry_run else make_config(args.recipe).epochs
    rows = []
    for name, technique, changes in [("recipe", f"the {args.recipe} recipe as it is", {})] + [
        t for t in RECIPE_TOGGLES if not args.only or t[0] in args.only
    ]:
        row = Row(name, technique, net, {"recipe": args.recipe, **changes})
        for seed in range(args.seeds):
            row.results.append(
                _train(row, data, args, seed, epochs, workdir, limit=512 if args.dry_run else None)
            )
        print(
            f"{name:22s} {technique:48s} acc {100 * row.mean_acc():.2f}%  {[r['test_acc'] for r in row.results]}",
            flush=True,
        )
        rows.append(row)
    return {"rows": rows, "best": None}


def speed(data, args, workdir: Path) -> dict:
    """Training images per CPU second of one step (bf16, channels_last, batch 128, one thread)
    for each network, in alternating rounds; no data loading, no augmentation."""
    import torch.nn.functional as F

    nets = FRONTIER_NETS if not args.networks else [_parse_net(s) for s in args.networks]
    runs = []
    for net in nets:
        torch.manual_seed(0)
        model = _builder(net)(1, 10, 28).to(memory_format=torch.channels_last)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        x = torch.randn(128, 1, 28, 28).contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, 10, (128,))
        runs.append((net, model, opt, x, y, []))

    def step(model, opt, x, y):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x)
        loss = F.cross_entropy(out.float(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _net, model, opt, x, y, _ in runs:
        for _ in range(3):
            step(model, opt, x, y)
    rounds = 2 if args.dry_run else 8
    for r in range(rounds):
        for _net, model, opt, x, y, rates in runs if r % 2 == 0 else runs[::-1]:
            c0 = time.process_time()
            for _ in range(4):
                step(model, opt, x, y)
            rates.append(4 * x.shape[0] / (time.process_time() - c0))
    rows = []
    for net, *_, rates in runs:
        row = Row(f"d{net['depth']}-w{net['width']}-s{net['stem_stride']}", "one training step", net, {})
        row.results.append({"images_per_cpu_s": statistics.median(rates), "rounds": rates, "load": _load()})
        print(f"{row.name:16s} {statistics.median(rates):7.0f} training images per CPU second", flush=True)
        rows.append(row)
    return {"rows": rows, "best": None}


def _parse_net(text: str) -> dict:
    depth, width, stride = (int(v) for v in text.split(","))
    return {"depth": depth, "width": width, "stem_stride": stride}


# ------------------------------------------------------------------------------------------------
# reporting


def _row_dict(row: Row) -> dict:
    return {
        "name": row.name,
        "technique": row.technique,
        "network": row.network,
        "config": row.changes,
        "kept": row.kept,
        "results": [{k: v for k, v in r.items() if k != "metrics"} for r in row.results],
        "curves": [r.get("metrics") for r in row.results],
    }


def _markdown(study: str, result: dict, args, header: dict) -> str:
    lines = [
        {
            "ablation": "# CPU ablation: test accuracy at equal time",
            "frontier": "# CPU accuracy-against-time frontier",
            "speed": "# CPU training speed per network",
            "recipe": "# The chosen recipe, one technique changed at a time",
        }[study],
        "",
        f"Command: `{header['command']}`",
        "",
        f"Machine: {header['machine']['cpu']}, {header['machine']['cores']} cores, torch "
        f"{header['machine']['torch']}, Python {header['machine']['python']}; {args.threads} thread(s) per run; "
        f"load average {header['load_start']} at the start, {header['load_end']} at the end. "
        f"Started {header['started']}, took {header['elapsed_s'] / 60:.1f} min.",
        "",
    ]
    if study == "ablation":
        lines += [
            f"Budget {args.budget:.0f} CPU seconds of training per row, {args.seeds} seed(s); each row adds one "
            "technique to the best row so far (kept: it beat that row).",
            "",
            "| row | technique | network | epochs | img / CPU s | test acc (%) | CPU s | wall s | kept |",
            "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
    elif study == "recipe":
        lines += [
            f"{args.seeds} seed(s) per row, the recipe's epochs (every change leaves a step's cost as it is).",
            "",
            "| row | change | network | epochs | test acc (%) per seed | mean | vs recipe |",
            "| --- | --- | --- | ---: | --- | ---: | ---: |",
        ]
        base = result["rows"][0].mean_acc()
        for r in result["rows"]:
            net = f"d{r.network['depth']} w{r.network['width']} s{r.network['stem_stride']}"
            per = ", ".join(f"{100 * x['test_acc']:.2f}" for x in r.results)
            diff = "" if r is result["rows"][0] else f"{100 * (r.mean_acc() - base):+.2f}"
            lines.append(
                f"| {r.name} | {r.technique} | {net} | {r.results[0]['epochs']} | {per} | {100 * r.mean_acc():.2f} | {diff} |"
            )
        return "\n".join(lines) + "\n"
    elif study == "speed":
        lines += ["| network | training images per CPU s (median) |", "| --- | ---: |"]
        lines += [f"| {r.name} | {r.results[0]['images_per_cpu_s']:.0f} |" for r in result["rows"]]
        return "\n".join(lines) + "\n"
    else:
        lines += [
            "| network | epochs | test acc (%) | wall s | CPU s | img/s |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
    for row in result["rows"]:
        net = f"d{row.network['depth']} w{row.network['width']} s{row.network['stem_stride']}"
        ok = [r for r in row.results if "error" not in r]
        if not ok:
            lines.append(
                f"| {row.name} | {row.technique} | {net} | | | failed: {row.results[0]['error']} | | | |"
            )
            continue
        acc = statistics.fmean(100 * r["test_acc"] for r in ok)
        acc_s = f"{acc:.2f}" + (
            f" ± {statistics.stdev(100 * r['test_acc'] for r in ok):.2f}" if len(ok) > 1 else ""
        )
        cpu = statistics.fmean(r["cpu_s"] for r in ok)
        wall = statistics.fmean(r["wall_s"] for r in ok)
        if study == "ablation":
            rate = ok[0].get("calibrated_images_per_cpu_s")
            kept = {True: "yes", False: "no", None: ""}[row.kept]
            lines.append(
                f"| {row.name} | {row.technique} | {net} | {ok[0]['epochs']} | {rate:.0f} | {acc_s} | {cpu:.0f} | {wall:.0f} | {kept} |"
            )
        else:
            ips = statistics.fmean(r["images_per_s"] for r in ok)
            lines.append(f"| {net} | {ok[0]['epochs']} | {acc_s} | {wall:.0f} | {cpu:.0f} | {ips:.0f} |")
    if result.get("best") is not None:
        best = result["best"]
        lines += ["", f"Best: `{best.name}`: network {best.network}, config {json.dumps(best.changes)}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--study", choices=["ablation", "frontier", "speed", "recipe"], default="ablation")
    p.add_argument("--budget", type=float, default=120.0, help="CPU seconds of training per ablation row")
    p.add_argument("--seeds", type=int, default=1, help="seeds per row (their mean decides what is kept)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data", default="fashion-mnist")
    p.add_argument("--only", type=lambda s: s.split(","), default=None, help="ablation: only these steps")
    p.add_argument("--recipe", default="fashion", help="frontier: the recipe")
    p.add_argument("--epochs-list", type=lambda s: [int(x) for x in s.split(",")], default=[2, 3, 4, 5])
    p.add_argument("--networks", nargs="*", help="frontier: DEPTH,WIDTH,STEM_STRIDE ...")
    p.add_argument("--out", default="out/bench/cpu_recipes")
    p.add_argument(
        "--dry-run", action="store_true", help="every row on 512 images for 1 epoch: checks the script"
    )
    args = p.parse_args()
    if args.dry_run:
        args.epochs_list = [1]
    torch.set_num_threads(args.threads)
    data = load_dataset(args.data, limit_test=512 if args.dry_run else None)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    header = {
        "command": " ".join(shlex.quote(a) for a in [sys.executable.split("/")[-1], *sys.argv]),
        "machine": _machine(),
        "load_start": _load(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="formulac-bench-") as d:
        studies = {"ablation": ablation, "frontier": frontier, "speed": speed, "recipe": recipe}
        result = studies[args.study](data, args, Path(d))
    header["elapsed_s"] = time.perf_counter() - t0
    header["load_end"] = _load()
    record = {**header, "args": vars(args), "rows": [_row_dict(r) for r in result["rows"]]}
    (out / f"{args.study}.json").write_text(json.dumps(record, indent=1) + "\n")
    md = _markdown(args.study, result, args, header)
    (out / f"{args.study}.md").write_text(md)
    print("\n" + md)


if __name__ == "__main__":
    main()
