"""Pre-activation ResNet for CIFAR (He et al. 2016, "Identity Mappings in Deep Residual
Networks"), depth 6n+2 with basic branches.

Stem: a 3x3 convolution with 16 filters (no batch norm: the first branch pre-activates);
three stages of n steps with 16, 32 and 64 channels (strides 1, 2, 2); head: batch norm,
ReLU, global average pooling and a linear classifier (attributes ``bn`` and ``linear``).
The natural formula is ``x_<n+1> = x_n + F(x_n)``.

This file depends on torch alone (and the torch-only :mod:`.layers`): the code generator copies
its classes and functions verbatim into the modules it writes, with the shared layers they use,
so each definition is self-contained.
"""

import torch.nn as nn
import torch.nn.functional as F

from .layers import global_average_pool, init_fan_out, shortcut_projection


class PreActCifarResNet(nn.Module):
    """Stem and head of the pre-activation CIFAR ResNet; the stages are added by the generator.

    Stem: conv3x3(in_channels, 16). Head: bn - ReLU - global average pool - linear.
    Build order: ``__init__`` creates the stem, the generator registers the stages
    (``layer1``..``layer3``), then calls ``build_head(width)``, which creates the head and
    initialises all weights. Its options are exactly its arguments: a misspelled one is a
    TypeError.
    """

    stem_width = 16

    def __init__(self, num_classes=10, in_channels=3):
        super().__init__()
        self.num_classes = num_classes
        self.conv1 = nn.Conv2d(in_channels, 16, kernel_size=3, stride=1, padding=1, bias=False)

    def build_head(self, width):
        self.bn = nn.BatchNorm2d(width)
        self.linear = nn.Linear(width, self.num_classes)
        self.init_weights()

    def init_weights(self):
        """Kaiming-normal (fan_out) convolutions as in He et al.'s code, batch norm 1 and 0,
        linear bias 0."""
        init_fan_out(self)

    def stem(self, x):
        return self.conv1(x)

    def head(self, x):
        return self.linear(global_average_pool(F.relu(self.bn(x))))


class PreActBranch(nn.Module):
    """The pre-activation branch F(x) = conv3x3(dropout(ReLU(BN(conv3x3(ReLU(BN(x)), stride))))).

    Layer names: bn1, conv1, bn2, dropout, conv2 (relu and dropout hold no parameters; dropout
    is an identity at probability 0, as in the pre-activation ResNet; the Wide ResNet uses it).
    The branch output is returned without residual addition: the formula supplies it. Note
    that the shortcut of a projection step sees the raw state x (as the formula says), not the
    pre-activated one that some implementations feed it.
    """

    def __init__(self, in_width, width, stride=1, dropout=0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_width)
        self.relu = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_width, width, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.dropout = nn.Dropout(p=dropout) if dropout > 0 else nn.Identity()
        self.conv2 = nn.Conv2d(width, width, kernel_size=3, stride=1, padding=1, bias=False)

    def forward(self, x):
        out = self.conv1(self.relu(self.bn1(x)))
        out = self.dropout(self.relu(self.bn2(out)))
        return self.conv2(out)


def preact_projection(in_width, width, stride, shortcut="B"):
    """Shortcut projection for a state entering a stage with another width or resolution.

    Returns None (identity) when ``in_width == width`` and ``stride == 1``.
    shortcut="B" (default, as He et al.'s pre-activation code): a 1x1 convolution with the
    stride, no batch norm (key ``0.weight``).
    shortcut="A": parameter-free, ``x[:, :, ::stride, ::stride]`` (a 1x1 average pool) and
    zero-padding of the channels, ``(width - in_width) // 2`` in front and the rest behind.
    When ``width < in_width`` (a formula that concatenates states) padding cannot work and the
    projection is the 1x1 convolution whatever the option.
    """
    return shortcut_projection(in_width, width, stride, shortcut, batch_norm=False)
