"""Fixtures of the training tests."""

import pytest

from formulac.train import data as D


@pytest.fixture(scope="module")
def data():
    """The synthetic 3x8x8 images of 4 classes (``tiny_nets.SYNTHETIC``): 256 to train on, 128 to test."""
    return D.synthetic_dataset((3, 8, 8), 4, train=256, test=128)
