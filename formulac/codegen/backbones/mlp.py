"""A small fully connected backbone for fast tests and 1-D data.

Stem: flatten, Linear(in_channels * input_size**2, width), ReLU; stages of fully connected
steps (``layer1``, ``layer2``, ...); branch Linear-ReLU-Linear, optionally after a LayerNorm;
projection a Linear map where the width changes; head a Linear classifier. Image inputs
(B, C, H, W) are flattened; for 1-D data of F features use in_channels=F, input_size=1.

This file depends on torch alone: the code generator copies its classes and functions verbatim
into the modules it writes, so each definition is self-contained.
"""

import torch
import torch.nn as nn


class MLPNet(nn.Module):
    """Stem and head of the MLP backbone; the stages are added by the code generator.

    Stem: flatten - embed (Linear) - relu. Head: fc (Linear).
    Build order: ``__init__`` creates the stem, the generator registers the stages, then
    calls ``build_head(width)``. Its options are exactly its arguments: a misspelled one is
    a TypeError.
    """

    def __init__(self, num_classes=10, in_channels=1, input_size=28, width=64):
        super().__init__()
        self.num_classes = num_classes
        self.stem_width = width
        self.embed = nn.Linear(in_channels * input_size * input_size, width)
        self.relu = nn.ReLU(inplace=True)

    def build_head(self, width):
        self.fc = nn.Linear(width, self.num_classes)
        self.init_weights()

    def init_weights(self):
        """PyTorch's default initialisation of linear layers (nothing to change)."""

    def stem(self, x):
        return self.relu(self.embed(torch.flatten(x, 1)))

    def head(self, x):
        return self.fc(x)


class MLPBranch(nn.Module):
    """F(x) = fc2(ReLU(fc1(norm(x)))), norm a LayerNorm when ``layernorm`` else an identity.

    The stride must be 1 (there is no resolution to reduce). No residual addition: the
    formula supplies it.
    """

    def __init__(self, in_width, width, stride=1, layernorm=False):
        super().__init__()
        if stride != 1:
            raise ValueError("the MLP branch has no stride, got stride=%r" % (stride,))
        self.norm = nn.LayerNorm(in_width) if layernorm else nn.Identity()
        self.fc1 = nn.Linear(in_width, width)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(width, width)

    def forward(self, x):
        return self.fc2(self.relu(self.fc1(self.norm(x))))


def mlp_projection(in_width, width, stride=1, shortcut="B"):
    """A Linear map without bias where the width changes (key ``weight``); None (identity)
    when ``in_width == width``. The stride must be 1 and only shortcut "B" exists."""
    if shortcut != "B":
        raise ValueError("the MLP backbone has only shortcut 'B', got %r" % (shortcut,))
    if stride != 1:
        raise ValueError("the MLP backbone has no stride, got stride=%r" % (stride,))
    if in_width == width:
        return None
    return nn.Linear(in_width, width, bias=False)
