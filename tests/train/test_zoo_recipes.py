"""Each backbone's default recipe trains every stable formula of the zoo (``examples/*.rec`` and
``examples/transformers/*.rec``, where the formula compiles on that backbone) on its default data
(a synthetic set of the backbone's channels, or a small generated text for ``gpt``), tiny
sizes: no NaN, a finite test loss, and a training loss that falls from the first epoch to the
last.

The default recipe is the one ``formulac train`` uses when no ``--recipe`` is given (the
backbone's own, else the data set's with the backbone's changes). Two tiny epochs need more
steps than a recipe's batch gives, so image runs use smaller batches and, for SGD, the
recipe's learning rate scaled by that batch / its batch (the linear scaling rule, Goyal et al. 2017: the same
lr per example); AdamW keeps its lr."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from formulac.analysis import analyze
from formulac.codegen import get_backbone, get_backbone_info
from formulac.errors import FormulacError
from formulac.formula import network_factory
from formulac.parse import load
from formulac.train import make_config
from formulac.train.objectives import objective_for

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CLASSES = 10

# backbone -> (depth, options, input size, training images, batch): the smallest network of each
# family; 2 epochs of 16 steps (the heavy ImageNet ResNet-18 on batches of 16)
BACKBONES = {
    "mlp": (4, {}, 28, 1024, 64),
    "cifar-resnet": (8, {}, 8, 1024, 64),
    "preact-cifar": (8, {}, 8, 1024, 64),
    "wrn": (10, {"widen_factor": 1}, 8, 1024, 64),
    "resnext": (11, {"cardinality": 2, "base_width": 4}, 8, 512, 32),
    "imagenet-resnet": (18, {}, 8, 512, 32),
    "vit": (2, {"dim": 16, "heads": 2, "patch": 4, "input_size": 8}, 8, 1024, 64),
    "gpt": (2, {"dim": 16, "heads": 2, "context": 16}, 16, None, 64),
}


def stable_zoo() -> list[Path]:
    """The zoo's formulas that the analysis calls stable (contracting or neutral), one file per
    distinct formula (``transformers/momentum.rec`` is ``momentum.rec``)."""
    stable, seen = [], set()
    for path in sorted(EXAMPLES.glob("*.rec")) + sorted((EXAMPLES / "transformers").glob("*.rec")):
        formula = load(path)
        if formula.free_symbols or formula.text in seen:
            continue
        if analyze(formula, depth=8, paths=False).stability in ("contracting", "neutral"):
            seen.add(formula.text)
            stable.append(path)
    return stable


# ResNet-18 costs about 25 CPU s a formula even at this size (its 11.7 M parameters, not the
# images, set the price), so the ImageNet ResNet trains one formula of each kind the zoo has (one
# state, two steps, momentum, a learned coefficient, learned stream mixing, k = 4 streams); every
# formula runs on every other backbone.
SAMPLED = {
    "imagenet-resnet": {"resnet", "two_step", "momentum", "lm_resnet", "mhc_k2", "hyper_connections_k4"}
}


def cases() -> list:
    """(backbone, path) pairs: every stable formula on every backbone, a sample on SAMPLED's."""
    out, zoo = [], stable_zoo()
    for backbone in BACKBONES:
        for path in zoo:
            label = str(path.relative_to(EXAMPLES).with_suffix(""))
            if backbone not in SAMPLED or label in SAMPLED[backbone]:
                out.append(pytest.param(backbone, path, id=f"{backbone}-{label}"))
    return out


def _default_config(backbone: str, data: str, text: bool):
    *_, images, batch = BACKBONES[backbone]
    recipe = get_backbone(backbone).default_recipe or None
    config = make_config(recipe, backbone=backbone, data=data, device="cpu", threads=1)
    if text:  # 16 steps of 64 windows an epoch, 16 evaluation windows
        return config.replace(epochs=2, epoch_tokens=16 * batch * 16, eval_windows=16, batch_size=batch)
    lr = config.lr * batch / config.batch_size if config.optimizer == "sgd" else config.lr
    return config.replace(epochs=2, limit_train=images, limit_test=128, batch_size=batch, lr=lr)


@pytest.mark.slow
@pytest.mark.parametrize(("backbone", "path"), cases())
def test_the_default_recipe_trains_every_stable_formula(tmp_path, backbone, path):
    depth, options, size, *_ = BACKBONES[backbone]
    info = get_backbone_info(backbone)
    text = "context" in info.defaults
    if text:
        corpus = tmp_path / "corpus.txt"
        corpus.write_text("the quick brown fox jumps over the lazy dog; " * 400, encoding="utf-8")
        data = f"text:{corpus}"
    else:
        data = f"synthetic:{info.default_in_channels}x{size}x{size}:{CLASSES}"
    try:
        build, _ = network_factory(load(path), {"backbone": backbone, "depth": depth, **options})
    except FormulacError as refusal:  # e.g. a block name the transformer has no sublayer for
        assert "has no block" in str(refusal), refusal
        return
    config = _default_config(backbone, data, text)
    summary = objective_for(data).train(build, config, tmp_path / "run", progress=False, quiet=True)
    losses = [
        json.loads(line)["train_loss"]
        for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    assert all(math.isfinite(v) for v in losses), losses
    assert math.isfinite(summary["final_test_loss"]), summary
    assert losses[-1] < losses[0], losses
