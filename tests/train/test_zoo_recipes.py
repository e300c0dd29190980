"""Each backbone's default recipe trains every stable formula of the zoo on its default data
(a synthetic set of the backbone's input shape, tiny sizes) without diverging: the loss stays
finite and ends below chance."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from formulac.analysis import analyze
from formulac.codegen import get_backbone_info
from formulac.formula import network_factory
from formulac.parse import load
from formulac.train import make_config, train

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CLASSES = 10


def stable_zoo() -> list[Path]:
    """The zoo's formulas that the analysis calls stable (contracting or neutral)."""
    stable = []
    for path in sorted(EXAMPLES.glob("*.rec")):
        rec = load(path)
        if not rec.free_symbols and analyze(rec, depth=8, paths=False).stability in (
            "contracting",
            "neutral",
        ):
            stable.append(path)
    return stable


# backbone -> its smallest depth and a batch that gives 2 epochs of 1,024 images enough steps
# (cifar-fast's batch of 256 leaves 8: too few to learn, whatever the recipe); the data has
# the backbone's default input shape
BACKBONES = {"mlp": (4, None), "cifar-resnet": (8, 64)}


@pytest.mark.slow
@pytest.mark.parametrize("backbone", list(BACKBONES))
@pytest.mark.parametrize("path", stable_zoo(), ids=lambda p: p.stem)
def test_the_default_recipe_trains_every_stable_formula(tmp_path, backbone, path):
    info = get_backbone_info(backbone)
    size, channels = info.default_input_size, info.default_in_channels
    data = f"synthetic:{channels}x{size}x{size}:{CLASSES}"
    depth, batch = BACKBONES[backbone]
    config = make_config(
        None, backbone=backbone, data=data, epochs=2, limit_train=1024, limit_test=256, batch_size=batch
    )
    build, _ = network_factory(load(path), {"backbone": backbone, "depth": depth})
    summary = train(build, config, tmp_path / "run", progress=False, quiet=True)
    assert math.isfinite(summary["final_test_loss"])
    assert summary["final_train_loss"] < math.log(CLASSES), summary
