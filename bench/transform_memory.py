"""Activation memory and step time of a Hugging Face GPT-2 transformed by formulac.transform.

A GPT2LMHeadModel with random weights (nothing downloaded), trained on random tokens on CPU:
the model as it is ("original"), its transform by the model's own connection ("standard",
which must match the original), and the Momentum transform (gamma = 0.9) under
``memory="standard"``, ``"reversible"`` and ``"checkpoint"``. For each:

* activation memory: the bytes autograd saves for backward in one training forward
  (``torch.autograd.graph.saved_tensors_hooks``, each storage once, parameters excluded), which
  load on the machine does not distort: of the whole model with its loss (the LM head's logits
  over 50,257 tokens are a large share) and of the transformer body alone (``model.transformer``);
  beside them ``info()``'s prediction per sample for each mode. Checkpoint's saved tensors are
  held by ``torch.utils.checkpoint`` under its own hooks, out of sight: only predicted;
* time: CPU and wall time of one training step (forward, backward), ``--repeats`` rounds with the
  variants alternating in each round after one warm-up step each; the median ratio to
  "original" (a loaded machine inflates wall time; CPU time less so).

    .venv/bin/python bench/transform_memory.py [--layers 12] [--width 768] [--heads 12]
        [--batch 4] [--context 512] [--repeats 2] [--threads 2] [--no-time] [--out FILE.json]
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
from pathlib import Path

import torch
import transformers
from bench_timing import seconds_per_call, whole_number_options, write_json

# the tests' measurement of saved activations, so the benchmark and the tests read one recorder
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from saved_memory import saved_bytes

import formulac

OWN = "x_<n+1> = x_n + F(x_n)"
MOMENTUM = "gamma = 0.9\nv_<n+1> = gamma*v_n + (1 - gamma)*F(x_n)\nx_<n+1> = x_n + v_<n+1>"


def build(args):
    config = transformers.GPT2Config(
        vocab_size=50257,
        n_positions=max(1024, args.context),
        n_embd=args.width,
        n_layer=args.layers,
        n_head=args.heads,
        use_cache=False,
    )
    torch.manual_seed(0)
    return transformers.GPT2LMHeadModel(config).train()


def step(model, ids) -> tuple[float, float]:
    model.zero_grad(set_to_none=True)
    wall, cpu = seconds_per_call(lambda: model(ids, labels=ids).loss.backward())
    return cpu, wall


def main() -> None:
    parser = whole_number_options(
        __doc__.split("\n\n")[0], layers=12, width=768, heads=12, batch=4, context=512, repeats=2, threads=2
    )
    parser.add_argument("--no-time", action="store_true", help="measure memory only")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = build(args)
    ids = torch.randint(0, 50257, (args.batch, args.context), generator=torch.Generator().manual_seed(0))
    # weights shared: one set of parameters and gradients in memory for all the variants
    share = {"weights": "share"}
    variants = {
        "original": model,
        "standard": formulac.transform(model, OWN, "transformer.h", **share),
        "momentum": formulac.transform(model, MOMENTUM, "transformer.h", **share),
        "momentum reversible": formulac.transform(
            model, MOMENTUM, "transformer.h", memory="reversible", **share
        ),
        "momentum checkpoint": formulac.transform(
            model, MOMENTUM, "transformer.h", memory="checkpoint", **share
        ),
    }
    with torch.no_grad():  # in eval mode: dropout off
        reference = model.eval()(ids[:1, :64]).logits
        own = variants["standard"].eval()(ids[:1, :64]).logits
    for m in variants.values():
        m.train()
    identity = float((own - reference).norm() / reference.norm())
    predicted = {
        e.mode: e.bytes_per_image for e in variants["momentum"].info(ids[:1], labels=ids[:1]).memory_estimates
    }
    memory, body = {}, {}
    for name, m in variants.items():
        if name == "momentum checkpoint":  # its saved tensors are checkpoint's, out of the hooks' sight
            continue
        memory[name] = saved_bytes(m, lambda m=m: m(ids, labels=ids).loss)
        body[name] = saved_bytes(m, lambda m=m: m.transformer(ids).last_hidden_state)
        print(
            f"{name:<22} saved activations {memory[name] / 2**20:10.1f} MiB, "
            f"of which the transformer body {body[name] / 2**20:10.1f} MiB",
            flush=True,
        )
    times: dict[str, list] = {name: [] for name in variants}
    for m in variants.values() if not args.no_time else ():  # warm-up
        step(m, ids)
    for _ in range(args.repeats if not args.no_time else 0):
        for name, m in variants.items():
            times[name].append(step(m, ids))
    ratios = {}
    for name in variants if not args.no_time else ():
        cpu = statistics.median(t[0] / o[0] for t, o in zip(times[name], times["original"]))
        wall = statistics.median(t[1] / o[1] for t, o in zip(times[name], times["original"]))
        ratios[name] = {"cpu": cpu, "wall": wall}
    result = {
        "config": vars(args),
        "machine": platform.processor() or platform.machine(),
        "own_connection_relative_error_float32": identity,
        "saved_bytes": memory,
        "saved_bytes_transformer_body": body,
        "predicted_bytes_per_sample_momentum": predicted,
        "step_seconds": {k: [list(t) for t in v] for k, v in times.items()},
        "time_ratio_to_original": ratios,
    }
    shown = (
        "saved_bytes",
        "saved_bytes_transformer_body",
        "predicted_bytes_per_sample_momentum",
        "time_ratio_to_original",
    )
    print(json.dumps({k: result[k] for k in shown}, indent=1))
    print(f"own connection vs original (float32): relative error {identity:.2e}")
    reduction = body["momentum"] / max(1, body["momentum reversible"])
    print(f"in the transformer body, reversible momentum saves {reduction:.1f}x less than standard momentum")
    if args.out:
        write_json(args.out, result)


if __name__ == "__main__":
    main()
