"""Training step time of the compiled ViT against Hugging Face's with the same weights.

The pre-norm formula (examples/transformers/pre_norm.rec) is compiled on the ``vit`` backbone,
``transformers.ViTForImageClassification`` is built from a matching ``ViTConfig`` (random
weights, no download) and its weights are copied in with ``formulac.hf.load``. Both then run the
same training steps (forward, cross-entropy, backward, AdamW) on the same batch, alternating
(compiled, HF, compiled, HF, ...) so that load on the machine hits both alike. Wall time and
process CPU time per step are reported as medians; the ratio compiled/HF is the figure
(target <= 1.05). HF runs with ``attn_implementation="sdpa"``, as the compiled network does.
``--precision`` instead times the compiled network in fp32 against itself under bf16 autocast
(what the transformer recipe's ``--amp`` chooses between), alternating the same way.

    .venv/bin/python bench/vit_step_time.py                       # small, for a loaded CPU
    python bench/vit_step_time.py --dim 384 --heads 6 --depth 12 --image 224 --patch 16 \
        --batch 64 --device cuda --repeats 20                      # ViT-S/16, the full run
"""

from __future__ import annotations

import statistics
from pathlib import Path

import torch
import transformers
from bench_timing import add_whole_numbers, seconds_per_call, whole_number_options

import formulac
import formulac.hf

PRE_NORM = Path(__file__).resolve().parents[1] / "examples" / "transformers" / "pre_norm.rec"


def build(args):
    config = transformers.ViTConfig(
        hidden_size=args.dim,
        num_hidden_layers=args.depth,
        num_attention_heads=args.heads,
        intermediate_size=args.dim * args.mlp_ratio,
        image_size=args.image,
        patch_size=args.patch,
        num_channels=3,
        num_labels=args.classes,
        attn_implementation="sdpa",
    )
    hf = transformers.ViTForImageClassification(config)
    net = formulac.load(PRE_NORM).compile(
        backbone="vit",
        depth=args.depth,
        dim=args.dim,
        heads=args.heads,
        patch=args.patch,
        mlp_ratio=args.mlp_ratio,
        in_channels=3,
        num_classes=args.classes,
        input_size=args.image,
    )
    formulac.hf.load(net, hf.state_dict())
    return net.to(args.device), hf.to(args.device)


def stepper(model, x, y, logits_of, autocast=None):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()

    def step():
        optimizer.zero_grad(set_to_none=True)
        if autocast is None:
            loss = torch.nn.functional.cross_entropy(logits_of(model, x), y)
        else:
            with torch.autocast(x.device.type, dtype=autocast):
                loss = torch.nn.functional.cross_entropy(logits_of(model, x), y)
        loss.backward()
        optimizer.step()
        if x.is_cuda:
            torch.cuda.synchronize()

    return step


def main() -> None:
    parser = whole_number_options(__doc__.splitlines()[0], dim=64, heads=4, depth=4, mlp_ratio=2)
    add_whole_numbers(parser, image=28, patch=4, classes=10, batch=64)
    add_whole_numbers(parser, steps=(5, "steps per timed run"), repeats=(5, "alternating runs of each model"))
    add_whole_numbers(parser, threads=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--precision", action="store_true", help="time the compiled network in fp32 against bf16 autocast"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net, hf = build(args)
    x = torch.randn(args.batch, 3, args.image, args.image, device=args.device)
    y = torch.randint(0, args.classes, (args.batch,), device=args.device)
    if args.precision:
        steps = {
            "fp32": stepper(net, x, y, lambda m, v: m(v)),
            "bf16": stepper(net, x, y, lambda m, v: m(v), autocast=torch.bfloat16),
        }
    else:
        steps = {
            "compiled": stepper(net, x, y, lambda m, v: m(v)),
            "hf": stepper(hf, x, y, lambda m, v: m(pixel_values=v).logits),
        }
    first, second = steps
    for step in steps.values():  # warm-up
        step()
    times: dict[str, list] = {name: [] for name in steps}
    for _ in range(args.repeats):
        for name, step in steps.items():
            times[name].append(seconds_per_call(step, args.steps))
    medians = {
        name: (statistics.median(t[0] for t in runs), statistics.median(t[1] for t in runs))
        for name, runs in times.items()
    }
    print(
        f"ViT dim {args.dim}, heads {args.heads}, depth {args.depth}, image {args.image}, patch "
        f"{args.patch}, batch {args.batch}, {args.device}, {args.threads} thread(s); medians of "
        f"{args.repeats} alternating runs of {args.steps} steps"
    )
    for name, (wall, cpu) in medians.items():
        print(f"  {name:<9} {wall * 1e3:9.1f} ms/step wall  {cpu * 1e3:9.1f} ms/step CPU")
    wall_ratio = medians[first][0] / medians[second][0]
    cpu_ratio = medians[first][1] / medians[second][1]
    target = "" if args.precision else " (target <= 1.05)"
    print(f"  {first} / {second}: {wall_ratio:.3f} wall, {cpu_ratio:.3f} CPU{target}")


if __name__ == "__main__":
    main()
