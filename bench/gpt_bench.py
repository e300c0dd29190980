"""Tokens per second of the compiled GPT (pre-norm formula, ``gpt`` backbone) against
``transformers.GPT2LMHeadModel`` with the same weights (``formulac.hf.load``).

One training step (forward, next-token cross-entropy, backward, AdamW step) on random token
windows, timed in alternating runs (formulac, Hugging Face, formulac, ...) after a warm-up; the
medians of tokens per second and their ratio (target: formulac >= 1 / 1.05 of Hugging Face) are
printed, with the process CPU time per step (less disturbed than wall time on a shared machine).
Both models use the same attention kernel (``scaled_dot_product_attention``, Hugging Face's
``attn_implementation="sdpa"``) unless ``--hf-attention eager``.

    .venv/bin/python bench/gpt_bench.py [--depth 4 --dim 128 --heads 4 --context 128 --batch 8]
    python bench/gpt_bench.py --device cuda --amp bf16 --depth 12 --dim 768 --heads 12 \
        --context 1024 --batch 8 --steps 20      # GPT-2 small on a GPU
"""

from __future__ import annotations

import contextlib
import platform
import statistics

import torch
import torch.nn.functional as F
from bench_timing import add_whole_numbers, seconds_per_call, whole_number_options

import formulac
from formulac import hf

PRE_NORM = "h_<n+1> = x_n + A(x_n)\nx_<n+1> = h_<n+1> + M(h_<n+1>)\n"


def models(args):
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=args.vocab,
        n_positions=args.context,
        n_embd=args.dim,
        n_layer=args.depth,
        n_head=args.heads,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        attn_implementation=args.hf_attention,
        bos_token_id=None,
        eos_token_id=None,
    )
    torch.manual_seed(0)
    reference = GPT2LMHeadModel(config)
    ours = formulac.compile(
        PRE_NORM,
        backbone="gpt",
        depth=args.depth,
        dim=args.dim,
        heads=args.heads,
        context=args.context,
        vocab_size=args.vocab,
    )
    hf.load(ours, reference.state_dict())
    return ours.to(args.device), reference.to(args.device)


def step_time(model, batch, args, logits_of) -> tuple[float, float]:
    """(wall seconds, CPU seconds) per training step, over ``args.steps`` steps."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x, y = batch
    amp = (
        torch.autocast(device_type=args.device.split(":")[0], dtype=torch.bfloat16)
        if args.amp == "bf16"
        else contextlib.nullcontext()
    )

    def one():
        optimizer.zero_grad(set_to_none=True)
        with amp:
            logits = logits_of(model, x)
        F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1)).backward()
        optimizer.step()

    for _ in range(2):
        one()
    return seconds_per_call(
        one, args.steps, torch.cuda.synchronize if args.device.startswith("cuda") else None
    )


def main() -> None:
    p = whole_number_options(__doc__.split("\n\n")[0], depth=4, dim=128, heads=4, context=128, vocab=256)
    add_whole_numbers(p, batch=8, steps=5, repeats=3, threads=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--amp", choices=["none", "bf16"], default="none")
    p.add_argument("--hf-attention", choices=["sdpa", "eager"], default="sdpa")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    ours, reference = models(args)
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, args.vocab, (args.batch, args.context + 1), generator=g).to(args.device)
    batch = (tokens[:, :-1], tokens[:, 1:])
    with torch.no_grad():
        a, b = ours.eval()(batch[0]), reference.eval()(batch[0]).logits
        rel = ((a - b).norm() / b.norm()).item()
    ours.train(), reference.train()
    runs = {"formulac": [], "hf": []}
    for _ in range(args.repeats):
        runs["formulac"].append(step_time(ours, batch, args, lambda m, x: m(x)))
        runs["hf"].append(step_time(reference, batch, args, lambda m, x: m(x).logits))
    per_step = args.batch * args.context
    wall = {k: per_step / statistics.median(t for t, _ in v) for k, v in runs.items()}
    cpu = {k: per_step / statistics.median(c for _, c in v) for k, v in runs.items()}
    print(
        f"GPT {args.depth} x {args.dim}, {args.heads} heads, context {args.context}, vocabulary {args.vocab}, "
        f"batch {args.batch}, {args.device} ({platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads), amp {args.amp}, HF attention {args.hf_attention}; "
        f"logits rel. difference {rel:.2e}"
    )
    print("| model | tokens/s (wall) | tokens/s (CPU time) |")
    print("|---|---:|---:|")
    for k in runs:
        print(f"| {k} | {wall[k]:,.0f} | {cpu[k]:,.0f} |")
    print(f"| formulac / hf | {wall['formulac'] / wall['hf']:.3f} | {cpu['formulac'] / cpu['hf']:.3f} |")


if __name__ == "__main__":
    main()
