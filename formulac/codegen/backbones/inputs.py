"""Example inputs of backbones whose file names no ``example_input_function``: image batches.

Torch only, like the backbone files (but never copied into emitted modules).
"""

import torch


def image_batch(batch, in_channels, input_size, generator=None):
    """A ``(batch, in_channels, input_size, input_size)`` float batch: zeros, or standard normal
    draws from ``generator``."""
    shape = (batch, in_channels, input_size, input_size)
    if generator is None:
        return torch.zeros(shape)
    return torch.randn(shape, generator=generator)
