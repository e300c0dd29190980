"""Throughput of formulac.train.train() against a bare training loop on the CPU.

Same model, same data (synthetic, CIFAR-shaped), same batch size, same optimizer (SGD with
momentum and weight decay), no augmentation on either side.  The runs alternate (bare, train,
bare, train, ...) and the medians are compared.  Two ratios are printed:

* train phase: the images/s that train() reports for its training phase (what metrics.jsonl
  and summary.json say), against the bare loop;
* end to end: all training images over the wall time of the whole train() call, which also
  evaluates once, writes a checkpoint every epoch and draws the curves;
* end to end, CPU time: the same over the process's CPU time, which other processes on a
  shared machine disturb much less than the wall time (meaningful with --threads 1).

Target: ratio >= 0.95.

    .venv/bin/python bench/train_throughput.py [--epochs 2] [--repeats 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

import formulac
from formulac.train import make_config, train
from formulac.train.data import synthetic_dataset

DEPTH = 8

RESNET = "x_<n+1> = relu(x_n + F(x_n))"


def compiled_resnet(in_channels: int, num_classes: int, input_size: int) -> nn.Module:
    """The compiled ResNet formula on cifar-resnet (depth from --depth)."""
    return formulac.compile(
        RESNET, backbone="cifar-resnet", depth=DEPTH, in_channels=in_channels, num_classes=num_classes
    )


def bare_loop(data, epochs: int, batch: int, lr: float, seed: int) -> float:
    """The textbook loop over float tensors normalised once; returns images/s."""
    torch.manual_seed(seed)
    model = compiled_resnet(data.in_channels, data.num_classes, data.input_size)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    mean = torch.tensor(data.mean).view(1, -1, 1, 1)
    std = torch.tensor(data.std).view(1, -1, 1, 1)
    x_all = (data.train_images.float() / 255 - mean) / std
    y_all = data.train_labels
    n = x_all.shape[0]
    model.train()
    t0, c0 = time.perf_counter(), time.process_time()
    for _epoch in range(epochs):
        perm = torch.randperm(n)
        for i in range(0, n, batch):
            idx = perm[i : i + batch]
            x, y = x_all[idx], y_all[idx]
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
    return (n * epochs / (time.perf_counter() - t0), n * epochs / (time.process_time() - c0))


def formulac_train(
    data, epochs: int, batch: int, lr: float, seed: int, threads: int
) -> tuple[float, float, float]:
    config = make_config(
        "cifar",
        data="synthetic",
        epochs=epochs,
        batch_size=batch,
        lr=lr,
        momentum=0.9,
        weight_decay=1e-4,
        nesterov=False,
        schedule="constant",
        crop_padding=0,
        flip=False,
        seed=seed,
        device="cpu",
        threads=threads,
        eval_every=epochs,
    )
    with tempfile.TemporaryDirectory() as d:
        t0, c0 = time.perf_counter(), time.process_time()
        s = train(compiled_resnet, config, d, progress=False, quiet=True, dataset=data)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    n = data.train_images.shape[0]
    return s["images_per_s"], n * epochs / wall, n * epochs / cpu


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--train-size", type=int, default=2048)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--depth", type=int, default=8, help="cifar-resnet depth (6n+2)")
    args = p.parse_args()
    global DEPTH
    DEPTH = args.depth
    torch.set_num_threads(args.threads)
    data = synthetic_dataset(train=args.train_size, test=256)
    lr = 0.05
    # warm-up (allocator, kernels), not timed
    bare_loop(data.limit(256), 1, args.batch_size, lr, 0)
    formulac_train(data.limit(256), 1, args.batch_size, lr, 0, args.threads)
    bare, bare_cpu, phase, e2e, e2e_cpu = [], [], [], [], []
    for r in range(args.repeats):
        a, b = bare_loop(data, args.epochs, args.batch_size, lr, r)
        bare.append(a)
        bare_cpu.append(b)
        a, b, c = formulac_train(data, args.epochs, args.batch_size, lr, r, args.threads)
        phase.append(a)
        e2e.append(b)
        e2e_cpu.append(c)
        print(
            f"run {r + 1}: bare {bare[-1]:.0f} img/s, train() {phase[-1]:.0f} img/s "
            f"(end to end {e2e[-1]:.0f} img/s; CPU time: bare {bare_cpu[-1]:.0f}, "
            f"train() {e2e_cpu[-1]:.0f} img/s)"
        )
    med = statistics.median
    mb, mp, me, mbc, mec = (med(v) for v in (bare, phase, e2e, bare_cpu, e2e_cpu))
    print(
        f"\ncompiled ResNet-{args.depth} formula, CPU, {args.threads} thread(s), {args.train_size} images x {args.epochs} epochs, "
        f"batch {args.batch_size}, median of {args.repeats}"
    )
    print(f"bare loop                 {mb:8.0f} img/s   (CPU time {mbc:.0f} img/s)")
    print(f"train(), train phase      {mp:8.0f} img/s   ratio {mp / mb:.3f}")
    print(f"train(), end to end       {me:8.0f} img/s   ratio {me / mb:.3f}")
    print(f"train(), end to end (CPU) {mec:8.0f} img/s   ratio {mec / mbc:.3f}")
    print("target: ratio >= 0.95")


if __name__ == "__main__":
    main()
