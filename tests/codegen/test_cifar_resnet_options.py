"""cifar-resnet's width and stem_stride options: the paper's network by default, the stated
widths and resolutions otherwise."""

import pytest
import torch
from fixtures_path import REPO

import formulac
from formulac.errors import FormulacError

RESNET_POST = formulac.load(str(REPO / "examples" / "resnet_post.rec"))


def _params(net):
    return sum(p.numel() for p in net.parameters())


def test_defaults_are_he_et_al():
    net = formulac.compile(RESNET_POST, backbone="cifar-resnet", depth=20)
    assert _params(net) == 269_722  # He et al.'s ResNet-20, option A
    explicit = formulac.compile(RESNET_POST, backbone="cifar-resnet", depth=20, width=16, stem_stride=1)
    assert _params(explicit) == 269_722


@pytest.mark.parametrize("width, stem_stride", [(8, 1), (24, 2), (32, 2)])
def test_width_and_stem_stride(width, stem_stride):
    net = formulac.compile(
        RESNET_POST, backbone="cifar-resnet", depth=8, width=width, stem_stride=stem_stride, in_channels=1
    )
    seen = {}
    # each stage is a ModuleList of steps: its last step's output is the stage's
    for name in ("layer1", "layer2", "layer3"):
        getattr(net, name)[-1].register_forward_hook(
            lambda m, i, o, name=name: seen.__setitem__(name, o.shape)
        )
    out = net(torch.randn(2, 1, 28, 28))
    assert out.shape == (2, 10)
    assert net.conv1.out_channels == width and net.conv1.stride == (stem_stride, stem_stride)
    side = 28 // stem_stride
    assert seen["layer1"][1:] == (width, side, side)
    assert seen["layer2"][1] == 2 * width and seen["layer3"][1] == 4 * width
    assert net.linear.in_features == 4 * width
    # parameters: stem conv+BN, 1 step per stage of two 3x3 convs and BNs (option A shortcuts), head
    w = width
    expected = 9 * w + 2 * w
    for cin, cout in ((w, w), (w, 2 * w), (2 * w, 4 * w)):
        expected += 9 * cin * cout + 9 * cout * cout + 4 * cout
    expected += 4 * w * 10 + 10
    assert _params(net) == expected


@pytest.mark.parametrize("bad", [{"width": 0}, {"width": 1.5}, {"stem_stride": 0}, {"stem_stride": "2"}])
def test_bad_values_are_user_errors(bad):
    with pytest.raises(FormulacError, match="must be a positive integer"):
        formulac.compile(RESNET_POST, backbone="cifar-resnet", depth=8, **bad)
