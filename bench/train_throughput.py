"""Throughput of formulac.train.train() against a bare training loop on the CPU.

Same model, same data (synthetic, CIFAR-shaped), same batch size, same optimizer (SGD with
momentum and weight decay), no augmentation on either side.  The runs alternate (bare, train,
bare, train, ...) and the medians are compared.  Two ratios are printed:

* train phase: the images/s that train() reports for its training phase (what metrics.jsonl
  and summary.json say), against the bare loop;
* end to end: all training images over the wall time of the whole train() call, which also
  evaluates once, writes a checkpoint every epoch and draws the curves;
* end to end, CPU time: the same over the process's CPU time, which other processes on a
  shared machine disturb much less than the wall time (meaningful with --threads 1);
* train phase, CPU time: the training phase's images per CPU second (metrics.jsonl's
  train_cpu_seconds) against the bare loop's, the robust form of the first ratio.

Target: ratio >= 0.95.

Both sides use the same settings: ``--device`` (cpu or cuda; the data then lives on the device),
``--amp bf16``, ``--channels-last``, ``--compile`` (torch.compile of the model on both sides).

    .venv/bin/python bench/train_throughput.py [--epochs 2] [--repeats 3] [--threads 1]
    python bench/train_throughput.py --device cuda --amp bf16 --channels-last --compile \
        --train-size 50000 --batch-size 512 --width 64      # the GPU check's figure
"""

from __future__ import annotations

import contextlib
import statistics
import tempfile
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from bench_timing import add_whole_numbers, whole_number_options, write_json

import formulac
from formulac.train import make_config, read_metrics, train
from formulac.train.data import synthetic_dataset

RESNET = "x_<n+1> = relu(x_n + F(x_n))"
NETWORK = {"depth": 8, "width": 16, "stem_stride": 1}
SETTINGS = {"device": "cpu", "amp": "none", "channels_last": False, "compile": False}
# with torch.compile the first epoch pays for compiling: compare the last epochs (steady state)
STEADY = False


def compiled_resnet(in_channels: int, num_classes: int, input_size: int) -> nn.Module:
    """The compiled ResNet formula on cifar-resnet (depth, width, stem stride from the flags)."""
    return formulac.compile(
        RESNET, backbone="cifar-resnet", in_channels=in_channels, num_classes=num_classes, **NETWORK
    )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_loop(data, epochs: int, batch: int, lr: float, seed: int) -> tuple[float, float, float]:
    """The textbook loop over float tensors normalised once (on the device, in the memory
    format the model uses); returns (images/s, images per CPU second, images/s of the last
    epoch alone)."""
    device = torch.device(SETTINGS["device"])
    torch.manual_seed(seed)
    net = compiled_resnet(data.in_channels, data.num_classes, data.input_size).to(device)
    fmt = torch.channels_last if SETTINGS["channels_last"] else torch.contiguous_format
    net = net.to(memory_format=fmt)
    model = torch.compile(net) if SETTINGS["compile"] else net
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    mean = torch.tensor(data.mean).view(1, -1, 1, 1)
    std = torch.tensor(data.std).view(1, -1, 1, 1)
    x_all = ((data.train_images.float() / 255 - mean) / std).to(device).contiguous(memory_format=fmt)
    y_all = data.train_labels.to(device)
    n = x_all.shape[0]
    amp = SETTINGS["amp"]
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)
        if amp != "none"
        else contextlib.nullcontext()
    )
    model.train()
    _sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    for _epoch in range(epochs):
        _sync(device)
        e0 = time.perf_counter()
        perm = torch.randperm(n, device=device)
        for i in range(0, n, batch):
            idx = perm[i : i + batch]
            x, y = x_all[idx], y_all[idx]
            opt.zero_grad(set_to_none=True)
            with autocast:
                out = model(x)
            loss = F.cross_entropy(out.float(), y)
            loss.backward()
            opt.step()
        _sync(device)
        last = n / (time.perf_counter() - e0)
    return (n * epochs / (time.perf_counter() - t0), n * epochs / (time.process_time() - c0), last)


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
        threads=threads,
        eval_every=epochs,
        **SETTINGS,
    )
    with tempfile.TemporaryDirectory() as d:
        t0, c0 = time.perf_counter(), time.process_time()
        s = train(compiled_resnet, config, d, progress=False, quiet=True, dataset=data)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        rows = read_metrics(d)
    n = data.train_images.shape[0]
    phase = rows[-1]["images_per_s"] if STEADY else s["images_per_s"]
    phase_cpu = n / rows[-1]["train_cpu_seconds"] if STEADY else n * epochs / s["train_cpu_time_s"]
    return phase, n * epochs / wall, n * epochs / cpu, phase_cpu


def main(argv=None) -> dict:
    p = whole_number_options(__doc__.split("\n\n")[0], epochs=2, repeats=3, train_size=2048, batch_size=128)
    add_whole_numbers(p, threads=1, depth=(8, "cifar-resnet depth (6n+2)"), width=(16, "cifar-resnet width"))
    add_whole_numbers(p, stem_stride=1)
    p.add_argument("--shape", default="3x32x32", help="synthetic images CxHxW (1x28x28: Fashion-MNIST's)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--amp", choices=["none", "bf16", "fp16"], default="none")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--json", help="also write the figures to this file")
    args = p.parse_args(argv)
    NETWORK.update(depth=args.depth, width=args.width, stem_stride=args.stem_stride)
    SETTINGS.update(device=args.device, amp=args.amp, channels_last=args.channels_last, compile=args.compile)
    global STEADY
    STEADY = args.compile
    if STEADY and args.epochs < 2:
        p.error("--compile needs --epochs 2 or more (the last epoch is the steady state)")
    torch.set_num_threads(args.threads)
    shape = tuple(int(v) for v in args.shape.split("x"))
    data = synthetic_dataset(shape, train=args.train_size, test=256)
    lr = 0.05
    # warm-up (allocator, kernels), not timed
    bare_loop(data.limit(256), 1, args.batch_size, lr, 0)
    formulac_train(data.limit(256), 2 if STEADY else 1, args.batch_size, lr, 0, args.threads)
    bare, bare_cpu, phase, e2e, e2e_cpu, phase_cpu = [], [], [], [], [], []
    for r in range(args.repeats):
        a, b, last = bare_loop(data, args.epochs, args.batch_size, lr, r)
        bare.append(last if STEADY else a)
        bare_cpu.append(b)
        a, b, c, d = formulac_train(data, args.epochs, args.batch_size, lr, r, args.threads)
        phase.append(a)
        e2e.append(b)
        e2e_cpu.append(c)
        phase_cpu.append(d)
        print(
            f"run {r + 1}: bare {bare[-1]:.0f} img/s, train() {phase[-1]:.0f} img/s "
            f"(end to end {e2e[-1]:.0f} img/s; CPU time: bare {bare_cpu[-1]:.0f}, "
            f"train() {e2e_cpu[-1]:.0f} img/s)"
        )
    med = statistics.median
    mb, mp, me, mbc, mec, mpc = (med(v) for v in (bare, phase, e2e, bare_cpu, e2e_cpu, phase_cpu))
    print(
        f"\ncompiled ResNet-{args.depth} formula (width {args.width}, stem stride {args.stem_stride}), "
        f"{args.device}, {args.threads} thread(s), amp {args.amp}, channels_last {args.channels_last}, "
        f"compile {args.compile}, {args.train_size} images {args.shape} x {args.epochs} epochs, "
        f"batch {args.batch_size}, median of {args.repeats}"
    )
    print(f"bare loop                 {mb:8.0f} img/s   (CPU time {mbc:.0f} img/s)")
    print(f"train(), train phase      {mp:8.0f} img/s   ratio {mp / mb:.3f}")
    print(
        f"train(), train phase (CPU){mpc:8.0f} img/s   ratio {mpc / mbc:.3f}   (CPU time: robust under load)"
    )
    print(f"train(), end to end       {me:8.0f} img/s   ratio {me / mb:.3f}")
    print(f"train(), end to end (CPU) {mec:8.0f} img/s   ratio {mec / mbc:.3f}")
    print("target: ratio >= 0.95")
    figures = {
        "settings": vars(args),
        "bare_images_per_s": mb,
        "train_phase_images_per_s": mp,
        "end_to_end_images_per_s": me,
        "ratio_train_phase": mp / mb,
        "ratio_end_to_end": me / mb,
        "ratio_end_to_end_cpu_time": mec / mbc,
        "ratio_train_phase_cpu_time": mpc / mbc,
        "runs": {
            "bare": bare,
            "train_phase": phase,
            "end_to_end": e2e,
            "bare_cpu": bare_cpu,
            "train_phase_cpu": phase_cpu,
        },
    }
    if args.json:
        write_json(args.json, figures)
    return figures


if __name__ == "__main__":
    main()
