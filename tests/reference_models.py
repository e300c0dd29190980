"""Hand-written reference networks and the deterministic-weights recipe.

Plain PyTorch, written the obvious way, independent of ``formulac`` (in particular of the
backbone files): tests and benchmarks compare the networks that formulac compiles against
these. Key names follow the ``cifar-resnet`` backbone layout (``conv1``, ``bn1``,
``layer1``..``layer3`` holding blocks with ``conv1``/``bn1``/``conv2``/``bn2`` and a
``downsample`` where a stage changes width or resolution, ``linear``), so a state_dict moves
between a compiled network and its reference with ``load_state_dict``.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "deterministic_weights_",
    "spread_step_coefficients_",
    "PadShortcut",
    "HandBasicBlock",
    "HandResNetCifar",
    "HandLMResNetCifar",
    "HandMomentumResNetCifar",
]


@torch.no_grad()
def deterministic_weights_(model: nn.Module) -> nn.Module:
    """Overwrite every state_dict entry of ``model`` by the recipe of
    ``shared/fixtures/torchvision_resnet_golden.json`` (reproducible without torchvision).

    Entries are taken in state_dict order; entry ``i`` draws from
    ``torch.Generator().manual_seed(1000 + i)``:

    * ``*.num_batches_tracked`` -> 0
    * ``*.running_var``         -> ``rand(shape) + 0.5``
    * ``*.running_mean``        -> ``randn(shape) * 0.1``
    * 1-d ``*.weight`` (batch norm) -> ``1 + 0.1 * randn(shape)``
    * 1-d ``*.bias``            -> ``0.1 * randn(shape)``
    * ``*.weight`` of 2 or more dimensions (conv, linear) -> ``randn(shape) * sqrt(2 / fan_in)``,
      ``fan_in = prod(shape[1:])``

    Any other entry (e.g. a learnable scalar coefficient ``k``) is left unchanged.
    Returns ``model``.
    """
    for i, (name, tensor) in enumerate(model.state_dict().items()):
        g = torch.Generator().manual_seed(1000 + i)
        shape = tuple(tensor.shape)
        if name.endswith("num_batches_tracked"):
            tensor.zero_()
        elif name.endswith("running_var"):
            tensor.copy_(torch.rand(shape, generator=g) + 0.5)
        elif name.endswith("running_mean"):
            tensor.copy_(torch.randn(shape, generator=g) * 0.1)
        elif name.endswith(".weight") and tensor.dim() == 1:
            tensor.copy_(1 + 0.1 * torch.randn(shape, generator=g))
        elif name.endswith("bias") and tensor.dim() == 1:
            tensor.copy_(0.1 * torch.randn(shape, generator=g))
        elif name.endswith("weight") and tensor.dim() >= 2:
            fan_in = math.prod(shape[1:])
            tensor.copy_(torch.randn(shape, generator=g) * math.sqrt(2.0 / fan_in))
    return model


@torch.no_grad()
def spread_step_coefficients_(model: nn.Module) -> nn.Module:
    """Set every per-step coefficient ``*.k`` to ``0.9 + 0.01 * (i % 20)``, ``i`` its position
    among the named parameters, so that the steps differ and x_<n-1> matters. Returns ``model``."""
    for i, (name, p) in enumerate(model.named_parameters()):
        if name.endswith(".k"):
            p.fill_(0.9 + 0.01 * (i % 20))
    return model


class PadShortcut(nn.Module):
    """He et al. 2015 option A: ``x[:, :, ::stride, ::stride]`` and zero channels padded
    symmetrically, ``(out - in) // 2`` in front and the rest behind (akamaster's LambdaLayer
    with ``planes // 4`` on each side). No parameters."""

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.stride = stride
        self.front = (planes - in_planes) // 2
        self.back = planes - in_planes - self.front

    def forward(self, x):
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.front, self.back), "constant", 0.0)


class HandBasicBlock(nn.Module):
    """A CIFAR basic block. ``branch(x)`` = bn2(conv2(relu(bn1(conv1(x))))) and
    ``shortcut(x)`` = downsample(x) or x; the network decides how they combine."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1, shortcut: str = "A"):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        if stride != 1 or in_planes != planes:
            if shortcut == "A":
                self.downsample = PadShortcut(in_planes, planes, stride)
            else:
                self.downsample = nn.Sequential(
                    nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                    nn.BatchNorm2d(planes),
                )
        else:
            self.downsample = None

    def branch(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return self.bn2(self.conv2(out))

    def shortcut(self, x):
        return x if self.downsample is None else self.downsample(x)

    def forward(self, x):
        """The original ResNet step: relu(shortcut(x) + branch(x))."""
        return F.relu(self.shortcut(x) + self.branch(x))


def _check_cifar_depth(depth: int) -> int:
    if depth < 8 or (depth - 2) % 6:
        raise ValueError("depth must be 6n+2, got %r" % (depth,))
    return (depth - 2) // 6


class _HandCifarBase(nn.Module):
    """conv1 - bn1 - relu, three stages of n blocks (16, 32, 64 channels), pool, linear."""

    block_class = HandBasicBlock

    def __init__(self, depth: int = 56, num_classes: int = 10, shortcut: str = "A", post_relu: bool = False):
        super().__init__()
        self.post_relu = post_relu  # relu of each step's output (the formula's relu(...))
        n = _check_cifar_depth(depth)
        self.conv1 = nn.Conv2d(3, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        in_planes = 16
        for name, planes, stride in (("layer1", 16, 1), ("layer2", 32, 2), ("layer3", 64, 2)):
            blocks = []
            for i in range(n):
                blocks.append(self.make_block(in_planes, planes, stride if i == 0 else 1, shortcut))
                in_planes = planes
            setattr(self, name, nn.Sequential(*blocks))
        self.linear = nn.Linear(64, num_classes)
        for m in self.modules():  # akamaster's _weights_init
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def make_block(self, in_planes, planes, stride, shortcut):
        return HandBasicBlock(in_planes, planes, stride, shortcut)

    def stages(self):
        return (self.layer1, self.layer2, self.layer3)

    def stem(self, x):
        return F.relu(self.bn1(self.conv1(x)))

    def head(self, x):
        return self.linear(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class HandResNetCifar(_HandCifarBase):
    """The CIFAR ResNet of He et al. 2015 as in akamaster/pytorch_resnet_cifar10.

    Formula: x_{n+1} = relu(P(x_n) + F(x_n)), where P is the identity except at a stage's
    first step (option A: subsample + zero-pad channels; option B: 1x1 conv + BN).
    Depth 6n+2; with option A and 10 classes ResNet-20/32/44/56/110 have
    269,722 / 464,154 / 658,586 / 853,018 / 1,727,962 parameters.
    """

    def __init__(self, depth: int = 56, num_classes: int = 10, shortcut: str = "A"):
        super().__init__(depth, num_classes, shortcut)

    def forward(self, x):
        x = self.stem(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.head(x)


class LMBlock(HandBasicBlock):
    """A basic block with LM-ResNet's learnable scalar ``k`` (registered after the layers and
    the downsample)."""

    def __init__(self, in_planes, planes, stride=1, shortcut="A", k_init=1.0):
        super().__init__(in_planes, planes, stride, shortcut)
        self.k = nn.Parameter(torch.tensor(float(k_init)))


class HandLMResNetCifar(_HandCifarBase):
    """LM-ResNet (Lu et al. 2018, "Beyond Finite Layer Neural Networks") on the CIFAR ResNet.

    Formula (one learnable scalar ``k`` per block, ``layerS.i.k``, initialised to ``k_init``):

        x_{n+1} = k_n * x_n + (1 - k_n) * x_{n-1} + F_n(x_n)

    and, with ``post_relu=True``, ``relu(...)`` of that. Boundary policy "reset": at the first
    step of every stage both history states are the projected stage input p = P(x) (P is the
    option-A or option-B shortcut, the identity where width and resolution do not change),
    while the branch sees the raw input: x_1 = k*p + (1-k)*p + F(x). At the later steps of the
    stage x_{n-1} is the previous state. With k_init=1 the network computes the plain
    x_{n+1} = x_n + F(x_n) at initialisation.
    """

    def __init__(self, k_init: float = 1.0, **options):
        self.k_init = k_init  # read by make_block, which the base's __init__ calls
        super().__init__(**options)

    def make_block(self, in_planes, planes, stride, shortcut):
        return LMBlock(in_planes, planes, stride, shortcut, self.k_init)

    def forward(self, x):
        x = self.stem(x)
        for stage in self.stages():
            x_prev = None
            for i, block in enumerate(stage):
                if i == 0:
                    # reset: both history states are the projected stage input
                    x_cur = block.shortcut(x)
                    x_prev = x_cur
                else:
                    x_cur = x
                new = block.k * x_cur + (1 - block.k) * x_prev + block.branch(x)
                if self.post_relu:
                    new = F.relu(new)
                x_prev, x = x_cur, new
        return self.head(x)


class HandMomentumResNetCifar(_HandCifarBase):
    """Momentum ResNet (Sander et al. 2021) on the CIFAR ResNet, fixed ``gamma``.

    Formula:

        v_{n+1} = gamma * v_n + (1 - gamma) * F_n(x_n)
        x_{n+1} = x_n + v_{n+1}

    and, with ``post_relu=True``, x_{n+1} = relu(x_n + v_{n+1}). Boundary policy "reset": v
    starts at 0 at the first step of every stage; at that step x_n outside the branch is the
    projected stage input P(x) (option A or B shortcut), while the branch sees the raw input.
    """

    def __init__(self, gamma: float = 0.9, **options):
        self.gamma = gamma
        super().__init__(**options)

    def forward(self, x):
        x = self.stem(x)
        for stage in self.stages():
            for i, block in enumerate(stage):
                if i == 0:
                    x_cur = block.shortcut(x)
                    v = torch.zeros_like(x_cur)  # the velocity restarts at every stage
                else:
                    x_cur = x
                v = self.gamma * v + (1 - self.gamma) * block.branch(x)
                x = x_cur + v
                if self.post_relu:
                    x = F.relu(x)
        return self.head(x)
