"""Where the shared fixtures live: the folder ``shared`` beside the repository root.

CI clones the repository into some folder and puts a copy of ``shared/`` beside it, so the
path is found from this file, never from the working directory.
"""

from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
FIXTURES = SHARED / "fixtures"


def load_fixture(name: str):
    """The parsed JSON of ``shared/fixtures/NAME``."""
    with open(FIXTURES / name, encoding="utf-8") as handle:
        return json.load(handle)


#: torchvision model name -> (imagenet-resnet depth, backbone options) giving that network.
TORCHVISION = {
    "resnet18": (18, {}),
    "resnet34": (34, {}),
    "resnet50": (50, {}),
    "resnet101": (101, {}),
    "resnet152": (152, {}),
    "wide_resnet50_2": (50, {"width_per_group": 128}),
    "resnext50_32x4d": (50, {"groups": 32, "width_per_group": 4}),
}


def assert_matches_golden(model, model_name: str) -> None:
    """``model`` (weights set by ``deterministic_weights_``) gives the golden torchvision logits,
    to 1e-4 of the logits' scale."""
    import pytest
    import torch

    golden = load_fixture("torchvision_resnet_golden.json")["models"][model_name]
    s = golden["input_size"]
    x = torch.randn(2, 3, s, s, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        logits = model.eval()(x)
    scale = golden["logits_absmax"]
    assert logits.shape == (2, 1000)
    torch.testing.assert_close(
        logits[:, :16], torch.tensor(golden["logits_first16"]), rtol=0, atol=1e-4 * scale
    )
    torch.testing.assert_close(logits.sum(1), torch.tensor(golden["logits_sum"]), rtol=0, atol=1e-3 * scale)
    assert logits.abs().max().item() == pytest.approx(scale, rel=1e-4)
