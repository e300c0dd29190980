"""A vit network called on images of another size or channel count than it was compiled for
raises a ValueError naming both shapes (it was torch's RuntimeError about tensor sizes from the
position embedding, or a silent wrong count of patches); the emitted file does the same."""

from __future__ import annotations

import re

import pytest
import torch
from fixtures_path import REPO
from hypothesis import given, settings
from hypothesis import strategies as st

import formulac
from formulac.codegen import compile_source, load_source

RESNET = REPO / "examples" / "resnet.rec"


@settings(max_examples=12, deadline=None, derandomize=True, database=None)
@given(st.sampled_from([8, 12, 16]), st.sampled_from([4, 8, 12, 16, 20]), st.sampled_from([1, 3]))
def test_another_image_shape_names_both(compiled, given_size, channels):
    net = formulac.load(RESNET).compile(backbone="vit", depth=1, dim=8, heads=2, input_size=compiled)
    x = torch.zeros(2, channels, given_size, given_size)
    if (channels, given_size) == (3, compiled):
        assert net(x).shape == (2, 10)
        return
    message = (
        f"this ViT was compiled for images of shape (3, {compiled}, {compiled}) (in_channels=3, "
        f"input_size={compiled}), got an input of shape (2, {channels}, {given_size}, {given_size})"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        net(x)


def test_the_emitted_file_checks_too():
    rec = formulac.load(RESNET).rec
    module = load_source(
        compile_source(rec, backbone="vit", depth=1, dim=8, heads=2, input_size=8), "vit_input_size"
    )
    net = module.FormulaNet()
    with pytest.raises(ValueError, match=r"compiled for images of shape \(3, 8, 8\).*\(1, 3, 16, 16\)"):
        net(torch.zeros(1, 3, 16, 16))
    with pytest.raises(ValueError, match=r"got an input of shape \(3, 8, 8\)"):  # no batch dimension
        net(torch.zeros(3, 8, 8))
