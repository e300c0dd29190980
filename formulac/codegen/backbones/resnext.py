"""ResNeXt for CIFAR (Xie et al. 2017, "Aggregated Residual Transformations for Deep Neural
Networks", section 5.3), depth 9n+2 (ResNeXt-29: n = 3).

Stem: a 3x3 convolution with 64 filters, batch norm and ReLU; three stages of n bottleneck
steps with output widths 256, 512 and 1024 (strides 1, 2, 2); head: global average pooling
and a linear classifier. The bottleneck's grouped 3x3 convolution has ``cardinality`` groups
of ``base_width * width / 256`` channels (ResNeXt-29 8x64d: 34.4M parameters, 16x64d: 68.1M).
Projections are 1x1 convolution + batch norm. The natural formula is
``x_<n+1> = relu(x_n + F(x_n))``.

This file depends on torch alone (and the torch-only :mod:`.layers`): the code generator copies
its classes and functions verbatim into the modules it writes, with the shared layers they use,
so each definition is self-contained.
"""

import torch.nn as nn

from .layers import conv_bn, global_average_pool, init_fan_out, shortcut_projection


class CifarResNeXt(nn.Module):
    """Stem and head of the CIFAR ResNeXt; the stages are added by the code generator.

    Stem: conv1 (3x3, 64) - bn1 - relu. Head: global average pool - fc.
    Build order: ``__init__`` creates the stem, the generator registers the stages
    (``layer1``..``layer3``), then calls ``build_head(width)``, which creates the head and
    initialises all weights. Its options are exactly its arguments: a misspelled one is a
    TypeError.
    """

    stem_width = 64

    def __init__(self, num_classes=10, in_channels=3):
        super().__init__()
        self.num_classes = num_classes
        self.conv1, self.bn1 = conv_bn(in_channels, 64, 3)
        self.relu = nn.ReLU(inplace=True)

    def build_head(self, width):
        self.fc = nn.Linear(width, self.num_classes)
        self.init_weights()

    def init_weights(self):
        """Kaiming-normal (fan_out) convolutions, batch norm 1 and 0, linear bias 0."""
        init_fan_out(self)

    def stem(self, x):
        return self.relu(self.bn1(self.conv1(x)))

    def head(self, x):
        return self.fc(global_average_pool(x))


class ResNeXtBranch(nn.Module):
    """The aggregated bottleneck branch
    conv1 (1x1) - bn1 - relu - conv2 (3x3, stride, ``cardinality`` groups) - bn2 - relu
    - conv3 (1x1) - bn3, with inner width ``cardinality * int(base_width * width / 256)``.
    No residual addition and no activation after it: the formula supplies those.
    """

    def __init__(self, in_width, width, stride=1, cardinality=8, base_width=64):
        super().__init__()
        inner = cardinality * int(base_width * width / 256)
        self.conv1, self.bn1 = conv_bn(in_width, inner, 1)
        self.conv2, self.bn2 = conv_bn(inner, inner, 3, stride, cardinality)
        self.conv3, self.bn3 = conv_bn(inner, width, 1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out))


def resnext_projection(in_width, width, stride, shortcut="B"):
    """1x1 convolution with the stride, then batch norm (keys ``0.weight``, ``1.*``);
    None (identity) when ``in_width == width`` and ``stride == 1``.
    Only shortcut "B" exists for this backbone."""
    if shortcut != "B":
        raise ValueError("the CIFAR ResNeXt has only shortcut 'B', got %r" % (shortcut,))
    return shortcut_projection(in_width, width, stride, "B", batch_norm=True)
