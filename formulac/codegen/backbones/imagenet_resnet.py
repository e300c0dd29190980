"""ImageNet ResNets (He et al. 2015) in the torchvision layout: ResNet-18/34/50/101/152,
Wide ResNet-50-2 and ResNeXt-50 (32x4d) through the ``width_per_group`` and ``groups`` options.

Attribute names, module creation order and weight initialisation are torchvision's
(torchvision.models.resnet, "ResNet v1.5": the stride of a bottleneck is on its 3x3
convolution), so the compiled ResNet formula has torchvision's state_dict keys.

This file depends on torch alone (and the torch-only :mod:`.layers`): the code generator copies
its classes and functions verbatim into the modules it writes, with the shared layers they use,
so each definition is self-contained.
"""

import torch
import torch.nn as nn

from .layers import conv_bn, shortcut_projection


class ImageNetResNet(nn.Module):
    """Stem and head of the torchvision ResNet; the stages are added by the code generator.

    Stem: conv1 (7x7, stride 2) - bn1 - relu - maxpool (3x3, stride 2).
    Head: avgpool (global) - flatten - fc.
    Build order: ``__init__`` creates the stem, the generator registers the stages
    (``layer1``..``layer4``, each an ``nn.ModuleList`` of steps), then calls
    ``build_head(width)``, which creates the head and initialises all weights, so the
    state_dict keys come in torchvision's order (conv1, bn1, layer1..layer4, fc).
    Its options are exactly its arguments: a misspelled one is a TypeError.
    """

    stem_width = 64

    def __init__(self, num_classes=1000, in_channels=3):
        super().__init__()
        self.num_classes = num_classes
        self.conv1, self.bn1 = conv_bn(in_channels, 64, 7, 2)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

    def build_head(self, width):
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(width, self.num_classes)
        self.init_weights()

    def init_weights(self):
        """torchvision's initialisation: Kaiming-normal (fan_out, ReLU) convolutions,
        batch norm weight 1 and bias 0, linear layers left at PyTorch's default."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def stem(self, x):
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def head(self, x):
        return self.fc(torch.flatten(self.avgpool(x), 1))


class ResNetBranch(nn.Module):
    """The residual branch of torchvision's BasicBlock (``bottleneck=False``) or Bottleneck.

    basic:      conv1 (3x3, stride) - bn1 - relu - conv2 (3x3) - bn2;  width = planes
    bottleneck: conv1 (1x1) - bn1 - relu - conv2 (3x3, stride, groups) - bn2 - relu
                - conv3 (1x1) - bn3;  width = 4 * planes, inner width
                ``int(planes * base_width / 64) * groups``
                (ResNeXt-50 32x4d: groups=32, base_width=4; Wide ResNet-50-2: base_width=128).
    No residual addition and no activation after it: the formula supplies those.
    """

    def __init__(self, in_width, width, stride=1, bottleneck=False, groups=1, base_width=64):
        super().__init__()
        self.bottleneck = bottleneck
        if bottleneck:
            inner = int(width // 4 * (base_width / 64.0)) * groups
            self.conv1, self.bn1 = conv_bn(in_width, inner, 1)
            self.conv2, self.bn2 = conv_bn(inner, inner, 3, stride, groups)
            self.conv3, self.bn3 = conv_bn(inner, width, 1)
            self.relu = nn.ReLU(inplace=True)
        else:
            if groups != 1 or base_width != 64:
                raise ValueError("the basic branch supports only groups=1 and base_width=64")
            self.conv1, self.bn1 = conv_bn(in_width, width, 3, stride)
            self.relu = nn.ReLU(inplace=True)
            self.conv2, self.bn2 = conv_bn(width, width, 3)

    def forward(self, x):
        if self.bottleneck:
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.relu(self.bn2(self.strided_conv(self.conv2, out)))
            return self.bn3(self.conv3(out))
        out = self.relu(self.bn1(self.strided_conv(self.conv1, x)))
        return self.bn2(self.conv2(out))

    @staticmethod
    def strided_conv(conv, x):
        """``conv(x)`` for the strided 3x3 convolution (padding 1). On a 1x1 input only its
        centre tap meets the input (the other eight see padding), so it is the 1x1 convolution
        with the centre weights: the same output, and a gradient of exactly 0 for the other
        taps. Computed whole, oneDNN's bfloat16 weight gradient of a strided 3x3 convolution on
        a 1x1 input leaves those taps' entries uninitialised (torch 2.13 on CPUs, wrong in most
        backward passes and now and then NaN), which a ResNet meets on small images (from
        layer3 on 8x8 inputs) under bf16 autocast."""
        if x.shape[-2:] == (1, 1) and conv.stride != (1, 1):
            return torch.nn.functional.conv2d(x, conv.weight[:, :, 1:2, 1:2], conv.bias, 1, 0, 1, conv.groups)
        return conv(x)


def imagenet_projection(in_width, width, stride, shortcut="B"):
    """torchvision's ``downsample``: 1x1 convolution with the stride, then batch norm
    (keys ``0.weight``, ``1.*``); None (identity) when ``in_width == width`` and ``stride == 1``.
    Only shortcut "B" exists for this backbone."""
    if shortcut != "B":
        raise ValueError("the ImageNet ResNet has only shortcut 'B', got %r" % (shortcut,))
    return shortcut_projection(in_width, width, stride, "B", batch_norm=True)
