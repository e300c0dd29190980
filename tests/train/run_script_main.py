"""What the subprocess run scripts of the training tests share: their common arguments and
their main (one thread, an optional sleep after each epoch so that a test can kill the run
mid-way, a TrainError as the CLI prints it with exit status 2, the final metric printed)."""

import argparse
import sys
import time
from collections.abc import Callable

import torch

from formulac.train import TrainError


def script_parser(epochs: int) -> argparse.ArgumentParser:
    """OUT [--resume] [--sleep S] [--epochs N]; a script adds its own."""
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--sleep", type=float, default=0.0)
    p.add_argument("--epochs", type=int, default=epochs)
    return p


def run_script(
    parser: argparse.ArgumentParser,
    trainer: Callable,
    model_of: Callable,
    config_of: Callable,
    name: str,
    metric: str,
) -> int:
    """Train ``model_of(args)`` under ``config_of(args)`` with ``trainer`` (``train`` or
    ``train_language``) into OUT, quietly, resuming with --resume, the run described as
    ``name``; print the summary's ``metric``."""
    args = parser.parse_args()
    torch.set_num_threads(1)

    def slow(record):
        time.sleep(args.sleep)

    try:
        summary = trainer(
            model_of(args),
            config_of(args),
            args.out,
            resume=args.resume,
            progress=False,
            quiet=True,
            on_epoch_end=slow if args.sleep else None,
            describe={"name": name},
        )
    except TrainError as e:
        print(e.format(), file=sys.stderr)
        return 2
    print(f"{metric}={summary[metric]}")
    return 0
