"""Small classifiers for the training tests and the synthetic runs they train in: they train in
a fraction of a second on the synthetic 8x8 images, so that the tests exercise the loop rather
than the network."""

import torch.nn as nn

from formulac.train import TrainConfig, make_config

#: The synthetic data set of the image-training tests: 3x8x8 images of 4 classes.
SYNTHETIC = "synthetic:3x8x8:4"


def synthetic_config(recipe: str, **knobs) -> TrainConfig:
    """``recipe`` on :data:`SYNTHETIC` for 3 epochs of batches of 32, on one CPU thread;
    ``knobs`` change any of these or the recipe's other values."""
    base = dict(data=SYNTHETIC, epochs=3, batch_size=32, threads=1, device="cpu")
    return make_config(recipe, **{**base, **knobs})


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


def bn_dropout_net(in_channels: int, num_classes: int, input_size: int) -> nn.Module:
    """A convolution, batch norm and dropout: a network whose training and evaluation modes
    differ, and whose batch-norm statistics a resumed run must restore."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Dropout(0.2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, num_classes),
    )


def two_conv_bn_net(in_channels: int, num_classes: int, input_size: int) -> nn.Module:
    """A bias-free convolution into batch norm, a second convolution with a bias and a linear
    classifier: parameters of every kind the optimizer groups (matrices, norm weights, biases)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(32, num_classes),
    )
