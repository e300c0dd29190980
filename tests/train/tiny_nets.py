"""Small classifiers for the training tests: they train in a fraction of a second on the
synthetic 8x8 images, so that the tests exercise the loop rather than the network."""

import torch.nn as nn


def conv_pool_net(in_channels: int, num_classes: int, input_size: int, width: int = 8) -> nn.Module:
    """One 3x3 convolution to ``width`` channels, ReLU, 2x2 average pooling and a linear
    classifier (the ``build_model(in_channels, num_classes, input_size)`` factory interface,
    with ``width`` bound by ``functools.partial``)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, padding=1),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(width * (input_size // 2) ** 2, num_classes),
    )
