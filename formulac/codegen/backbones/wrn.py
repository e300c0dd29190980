"""Wide Residual Networks WRN-d-k (Zagoruyko & Komodakis 2016) for CIFAR-sized inputs.

Depth d = 6n+4, widen factor k: a 3x3 convolution with 16 filters, three stages of n
pre-activation steps with 16k, 32k and 64k channels (strides 1, 2, 2), and a head of batch
norm, ReLU, global average pooling and a linear classifier. The branch is
BN-ReLU-conv3x3-BN-ReLU-dropout-conv3x3; projections are 1x1 convolutions. WRN-28-10 has
36.5M parameters on CIFAR-10, WRN-40-4 8.9M. The natural formula is ``x_<n+1> = x_n + F(x_n)``.

This file depends on torch alone: the code generator copies its classes and functions verbatim
into the modules it writes, so each definition is self-contained.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


class WideResNet(nn.Module):
    """Stem and head of the Wide ResNet; the stages are added by the code generator.

    Stem: conv3x3(in_channels, 16). Head: bn - ReLU - global average pool - linear.
    Build order: ``__init__`` creates the stem, the generator registers the stages
    (``layer1``..``layer3``), then calls ``build_head(width)``, which creates the head and
    initialises all weights. Options meant for other parts of the backbone are accepted and
    ignored.
    """

    stem_width = 16

    def __init__(self, num_classes=10, in_channels=3, **options):
        super().__init__()
        self.num_classes = num_classes
        self.conv1 = nn.Conv2d(in_channels, 16, kernel_size=3, stride=1, padding=1, bias=False)

    def build_head(self, width):
        self.bn = nn.BatchNorm2d(width)
        self.linear = nn.Linear(width, self.num_classes)
        self.init_weights()

    def init_weights(self):
        """As the authors' PyTorch code: Kaiming-normal (fan_out) convolutions, batch norm 1
        and 0, linear bias 0."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def stem(self, x):
        return self.conv1(x)

    def head(self, x):
        x = F.relu(self.bn(x))
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.linear(x)


class WideBranch(nn.Module):
    """The wide pre-activation branch
    F(x) = conv3x3(dropout(ReLU(BN(conv3x3(ReLU(BN(x)), stride))))).

    Layer names: bn1, conv1, bn2, dropout, conv2 (relu and dropout hold no parameters;
    dropout is an identity when its probability is 0). No residual addition: the formula
    supplies it.
    """

    def __init__(self, in_width, width, stride=1, dropout=0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_width)
        self.relu = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_width, width, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.dropout = nn.Dropout(p=dropout) if dropout > 0 else nn.Identity()
        self.conv2 = nn.Conv2d(width, width, kernel_size=3, stride=1, padding=1, bias=False)

    def forward(self, x):
        out = self.conv1(self.relu(self.bn1(x)))
        out = self.dropout(self.relu(self.bn2(out)))
        return self.conv2(out)


def wrn_projection(in_width, width, stride, shortcut="B"):
    """The Wide ResNet shortcut: a 1x1 convolution with the stride, no batch norm
    (key ``0.weight``); None (identity) when ``in_width == width`` and ``stride == 1``.
    Only shortcut "B" exists for this backbone."""
    if shortcut != "B":
        raise ValueError("the Wide ResNet has only shortcut 'B', got %r" % (shortcut,))
    if in_width == width and stride == 1:
        return None
    return nn.Sequential(nn.Conv2d(in_width, width, kernel_size=1, stride=stride, bias=False))
