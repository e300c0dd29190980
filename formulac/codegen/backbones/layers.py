"""Layers that several backbone files build alike, torch only.

A backbone file imports what it uses from here (``from .layers import NAME``); the code
generator copies those functions into the modules it writes, before the backbone's classes
(:attr:`~formulac.codegen.backbones.BackboneInfo.definitions`), so each function here stands
alone: it reads nothing of this module but torch.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


def conv_bn(in_width, width, kernel_size, stride=1, groups=1):
    """A bias-free ``kernel_size`` x ``kernel_size`` convolution, padded to keep the resolution
    at stride 1, and the batch norm of its output: the pair a ResNet's stem and branches are
    made of (as ``conv1, bn1``, ``conv2, bn2``, ...)."""
    conv = nn.Conv2d(
        in_width, width, kernel_size, stride=stride, padding=kernel_size // 2, groups=groups, bias=False
    )
    return conv, nn.BatchNorm2d(width)


def global_average_pool(x):
    """``(N, C, H, W) -> (N, C)``: each channel's mean over the positions (a ResNet head's
    input)."""
    return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)


def shortcut_projection(in_width, width, stride, shortcut, batch_norm):
    """He et al.'s shortcut for a state entering a stage with another width or resolution; None
    (the identity) when ``in_width == width`` and ``stride == 1``.

    ``shortcut="A"``, parameter-free: ``x[:, :, ::stride, ::stride]`` (a 1x1 average pool of
    that stride, which is exactly that), then the channels zero-padded, ``(width - in_width) //
    2`` in front and the rest behind. ``"B"``, and ``"A"`` when ``width < in_width`` (padding
    cannot shrink channels): a 1x1 convolution with the stride, then batch norm when
    ``batch_norm`` (keys ``0.weight``, ``1.*``)."""
    if shortcut not in ("A", "B"):
        raise ValueError("shortcut must be 'A' or 'B', got %r" % (shortcut,))
    if in_width == width and stride == 1:
        return None
    if shortcut == "A" and width >= in_width:
        layers = []
        if stride != 1:
            layers.append(nn.AvgPool2d(kernel_size=1, stride=stride))
        if width != in_width:
            front = (width - in_width) // 2
            # (W, W, H, H, C front, C back): pads the channel dimension of an (N, C, H, W) tensor
            layers.append(nn.ConstantPad3d((0, 0, 0, 0, front, width - in_width - front), 0.0))
        return nn.Sequential(*layers)
    layers = [nn.Conv2d(in_width, width, kernel_size=1, stride=stride, bias=False)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(width))
    return nn.Sequential(*layers)


def init_fan_out(net):
    """Kaiming-normal (fan_out, ReLU) convolutions as in He et al.'s code, batch norm weight 1
    and bias 0, linear biases 0 (linear weights keep PyTorch's default)."""
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.zeros_(m.bias)
