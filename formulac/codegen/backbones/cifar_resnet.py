"""CIFAR ResNet of He et al. 2015 ("Deep Residual Learning for Image Recognition", section 4.2).

Depth 6n+2: a 3x3 convolution with 16 filters, three stages of n basic residual steps with
16, 32 and 64 channels (the second and third start with stride 2), global average pooling and a
linear classifier. Two options beyond the paper: ``width`` (the stem's and first stage's
channels; the stages have width, 2*width and 4*width) and ``stem_stride`` (the stem
convolution's stride; 2 makes every stage work at half the resolution, a quarter of the cost). Attribute names follow the widely used akamaster/pytorch_resnet_cifar10
implementation (conv1, bn1, layer1..layer3, linear), with the shortcut named ``downsample``.

This file depends on torch alone (and the torch-only :mod:`.layers`): the code generator copies
its classes and functions verbatim into the modules it writes, with the shared layers they use,
so each definition is self-contained.
"""

import torch.nn as nn
import torch.nn.functional as F

from .layers import conv_bn, global_average_pool, shortcut_projection


class CifarResNet(nn.Module):
    """Stem and head of the CIFAR ResNet; the stages are added by the code generator.

    Stem: conv3x3(in_channels, width, stride=stem_stride) - BN - ReLU (16 and 1 in the paper).
    Head: global average pool - linear.
    Build order: ``__init__`` creates the stem, the generator registers the stages
    (``layer1``..``layer3``, each an ``nn.ModuleList`` of steps), then calls
    ``build_head(width)``, which creates the head and initialises all weights.
    Its options are exactly its arguments: a misspelled one is a TypeError.
    """

    stem_width = 16

    def __init__(self, num_classes=10, in_channels=3, width=16, stem_stride=1):
        super().__init__()
        self.num_classes = num_classes
        self.stem_width = width
        self.conv1, self.bn1 = conv_bn(in_channels, width, 3, stem_stride)

    def build_head(self, width):
        self.linear = nn.Linear(width, self.num_classes)
        self.init_weights()

    def init_weights(self):
        """Kaiming-normal convolutions and linear layers, as akamaster's ``_weights_init``."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def stem(self, x):
        return F.relu(self.bn1(self.conv1(x)))

    def head(self, x):
        return self.linear(global_average_pool(x))


class CifarBasicBranch(nn.Module):
    """The basic branch F(x) = BN(conv3x3(ReLU(BN(conv3x3(x, stride))))).

    No residual addition and no activation after it: the formula supplies those.
    Layer names are torchvision's BasicBlock names (conv1, bn1, relu, conv2, bn2).
    """

    def __init__(self, in_width, width, stride=1):
        super().__init__()
        self.conv1, self.bn1 = conv_bn(in_width, width, 3, stride)
        self.relu = nn.ReLU(inplace=True)
        self.conv2, self.bn2 = conv_bn(width, width, 3)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        return self.bn2(self.conv2(out))


def cifar_projection(in_width, width, stride, shortcut="A"):
    """Shortcut projection for a state entering a stage with another width or resolution.

    Returns None (identity) when ``in_width == width`` and ``stride == 1``.

    shortcut="A" (He et al. 2015, option A; parameter-free): subsample by ``stride``, i.e.
    ``x[:, :, ::stride, ::stride]`` (written as a 1x1 average pool, which is exactly that), then
    zero-pad the channels, ``(width - in_width) // 2`` in front and the rest behind, as in
    akamaster's ``F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4))``.
    shortcut="B": 1x1 convolution with the stride, then batch norm (keys ``0.weight``, ``1.*``).
    Padding cannot shrink channels, so when ``width < in_width`` (a formula that concatenates
    states) the projection is the 1x1 convolution + batch norm whatever the option.
    """
    return shortcut_projection(in_width, width, stride, shortcut, batch_norm=True)
