"""The ImageNet ResNet on images so small that its later stages see 1x1 feature maps (8x8
inputs: layer3 and layer4), trained under bf16 autocast on the CPU as the default recipes do.

There a stride-2 3x3 convolution meets its input with its centre tap only: the other eight taps
see padding, so their weight gradient is exactly 0 (the reference: the geometry, whatever the
weights and data). oneDNN's bfloat16 weight gradient of such a convolution (torch 2.13) left
those entries uninitialised: garbage in most backward passes and now and then inf or NaN, which
made ``examples/transformers/parallel.rec`` train to NaN in about one run of three of the zoo
recipe test (tests/train/test_zoo_recipes.py). Each pass here uses new data and new allocations,
so a few passes meet the old fault almost surely; CPUs without native bf16 take another path,
where the property holds as well."""

from __future__ import annotations

import pytest
import torch
from fixtures_path import REPO

from formulac import load

PARALLEL = REPO / "examples" / "transformers" / "parallel.rec"


def _one_by_one_strided_convs(net: torch.nn.Module, x: torch.Tensor) -> dict[str, torch.nn.Conv2d]:
    """The strided 3x3 convolutions whose input is 1x1 on ``x`` (name -> module), found from
    the inputs of the residual branches that hold them."""
    seen: dict[str, torch.nn.Conv2d] = {}

    def record(name, branch, args):
        conv = branch.conv2 if branch.bottleneck else branch.conv1
        if args[0].shape[-2:] == (1, 1) and conv.stride != (1, 1):
            seen[f"{name}.{'conv2' if branch.bottleneck else 'conv1'}"] = conv

    hooks = [
        module.register_forward_pre_hook(lambda m, args, name=name: record(name, m, args))
        for name, module in net.named_modules()
        if type(module).__name__ == "ResNetBranch"
    ]
    with torch.no_grad():
        net(x)
    for hook in hooks:
        hook.remove()
    return seen


@pytest.fixture(scope="module")
def resnet18() -> torch.nn.Module:
    torch.manual_seed(0)
    return load(PARALLEL).compile(backbone="imagenet-resnet", depth=18, num_classes=10, in_channels=3)


def test_padding_only_taps_get_a_zero_gradient_under_bf16(resnet18):
    """channels_last, as the recipes train (the contiguous layout had the fault as well)."""
    net = resnet18.to(memory_format=torch.channels_last)
    convs = _one_by_one_strided_convs(net.eval(), torch.randn(2, 3, 8, 8))
    net.train()
    assert sorted(convs) == ["layer3.0.A.conv1", "layer3.0.M.conv1", "layer4.0.A.conv1", "layer4.0.M.conv1"]
    outside = torch.ones(3, 3, dtype=torch.bool)
    outside[1, 1] = False
    for _ in range(3):  # before the fix one such gradient was wrong in 17 passes of 20 (10 not finite)
        x = torch.randn(16, 3, 8, 8)
        x = x.contiguous(memory_format=torch.channels_last)
        net.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = net(x)
        torch.nn.functional.cross_entropy(logits.float(), torch.randint(0, 10, (16,))).backward()
        for name, conv in convs.items():
            grad = conv.weight.grad
            assert torch.isfinite(grad).all(), name
            assert (grad[:, :, outside] == 0).all(), f"{name}: a padding-only tap has a gradient"
            assert grad[:, :, 1, 1].abs().sum() > 0, name  # the centre tap does learn
        assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)


def test_the_one_by_one_path_computes_the_whole_convolution():
    """The centre-tap shortcut is the same function as the branch with its full convolutions
    (torchvision's forward, written out here), in float64: outputs and gradients agree."""
    from formulac.codegen.backbones.imagenet_resnet import ResNetBranch

    def whole(b, x):  # torchvision's BasicBlock / Bottleneck branch, every convolution whole
        out = b.relu(b.bn1(b.conv1(x)))
        out = b.bn2(b.conv2(out))
        return b.bn3(b.conv3(b.relu(out))) if b.bottleneck else out

    torch.manual_seed(1)
    for bottleneck in (False, True):
        branch = ResNetBranch(64, 256 if bottleneck else 128, stride=2, bottleneck=bottleneck).double()
        x = torch.randn(4, 64, 1, 1, dtype=torch.float64, requires_grad=True)
        grads = []
        for forward in (branch, lambda inp, b=branch: whole(b, inp)):
            branch.zero_grad(set_to_none=True)
            x.grad = None
            out = forward(x)
            out.square().sum().backward()
            grads.append([out.detach(), x.grad, *(p.grad for p in branch.parameters())])
        for shortcut, reference in zip(*grads):
            torch.testing.assert_close(shortcut, reference)
