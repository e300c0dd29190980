"""Helper for the subprocess tests of formulac.train (resume after SIGKILL, DDP under torchrun).

python train_run_script.py OUT [--resume] [--dropout] [--sleep S] [--epochs N] [--limit N]

Trains a tiny CNN on synthetic:3x8x8:4 with deterministic CPU settings.  Exit status 2 and the
message on stderr for a TrainError (as the CLI prints it).
"""

import sys

import torch.nn as nn
from run_script_main import run_script, script_parser

from formulac.train import make_config, train


def build(dropout: bool):
    def build_model(in_channels: int, num_classes: int, input_size: int) -> nn.Module:
        layers = [nn.Conv2d(in_channels, 8, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten()]
        if dropout:
            layers.append(nn.Dropout(0.3))
        layers.append(nn.Linear(8 * (input_size // 2) ** 2, num_classes))
        return nn.Sequential(*layers)

    return build_model


def config(epochs: int = 5, limit: int = 249):
    return make_config(
        "cifar",
        data="synthetic:3x8x8:4",
        epochs=epochs,
        batch_size=32,
        lr=0.05,
        limit_train=limit,
        limit_test=64,
        deterministic=True,
        device="cpu",
        threads=1,
    )


def main() -> int:
    p = script_parser(epochs=5)
    p.add_argument("--dropout", action="store_true")
    p.add_argument("--limit", type=int, default=249)

    return run_script(
        p,
        train,
        lambda args: build(args.dropout),
        lambda args: config(args.epochs, args.limit),
        "tiny",
        "final_test_acc",
    )


if __name__ == "__main__":
    sys.exit(main())
