"""Helper for the subprocess tests of language-model training (resume after SIGKILL).

python language_run_script.py OUT CORPUS [--resume] [--sleep S] [--epochs N] [--model tiny|tiny-no-dropout|gpt]

Trains :func:`build_tiny_lm` or :func:`build_gpt` (both with dropout) on the text file CORPUS with deterministic CPU
settings and prints ``final_val_loss=...``. Exit status 2 and the message on stderr for a
TrainError (as the CLI prints it).
"""

import sys

import torch
import torch.nn as nn
from run_script_main import run_script, script_parser

import formulac
from formulac.train import make_config
from formulac.train.language import train_language


class TinyLM(nn.Module):
    """Token and position embeddings, a causal mix of each position with its predecessor,
    dropout, a linear head: ``(B, T)`` ids -> ``(B, T, vocab)`` logits."""

    def __init__(self, vocab: int, context: int = 16, dim: int = 24, dropout: float = 0.2):
        super().__init__()
        self.context = context
        self.embed = nn.Embedding(vocab, dim)
        self.position = nn.Embedding(context, dim)
        self.mix = nn.Linear(2 * dim, dim)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(dim, vocab)

    def forward(self, x):
        h = self.embed(x) + self.position(torch.arange(x.shape[1], device=x.device))
        previous = torch.cat([torch.zeros_like(h[:, :1]), h[:, :-1]], dim=1)
        return self.out(self.drop(torch.tanh(self.mix(torch.cat([h, previous], dim=-1)))))


def build_tiny_lm(in_channels: int, vocab: int, input_size: int) -> nn.Module:
    return TinyLM(vocab)


def build_tiny_lm_without_dropout(in_channels: int, vocab: int, input_size: int) -> nn.Module:
    return TinyLM(vocab, dropout=0.0)


PRE_NORM = "h_<n+1> = x_n + A(x_n)\nx_<n+1> = h_<n+1> + M(h_<n+1>)\n"


def build_gpt(in_channels: int, vocab: int, input_size: int) -> nn.Module:
    """The pre-norm formula on the gpt backbone: 2 layers of 16 dimensions, dropout 0.1."""
    return formulac.compile(
        PRE_NORM, backbone="gpt", depth=2, dim=16, heads=2, context=16, dropout=0.1, vocab_size=vocab
    )


def config(corpus: str, epochs: int = 4, **overrides):
    values = dict(
        data=f"text:{corpus}",
        epochs=epochs,
        epoch_tokens=2048,
        batch_size=8,
        eval_windows=16,
        lr=1e-2,
        deterministic=True,
        device="cpu",
        threads=1,
        amp="none",
    )
    values.update(overrides)
    return make_config(**values)


def main() -> int:
    p = script_parser(epochs=4)
    p.add_argument("corpus")
    p.add_argument("--model", choices=["tiny", "tiny-no-dropout", "gpt"], default="tiny")
    builds = {"gpt": build_gpt, "tiny": build_tiny_lm, "tiny-no-dropout": build_tiny_lm_without_dropout}

    return run_script(
        p,
        train_language,
        lambda args: builds[args.model],
        lambda args: config(args.corpus, args.epochs),
        "tiny-lm",
        "final_val_loss",
    )


if __name__ == "__main__":
    sys.exit(main())
