"""Small models for the transform tests: Hugging Face models from tiny configs (random weights,
nothing downloaded), a torchvision-style ResNet written out by hand, and a plain stack of
residual MLP blocks."""

from __future__ import annotations

import torch
import torch.nn as nn
import transformers


def _seeded_eager(model_class, config) -> nn.Module:
    """``model_class(config)`` with eager attention and seed 0's random weights, in eval mode."""
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    return model_class(config).eval()


def _encoder(layers: int, width: int) -> dict:
    """What the ViT and BERT configs share: 2 heads, an MLP twice as wide, no dropout."""
    return dict(
        hidden_size=width,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=2 * width,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )


def gpt2(layers: int = 3, width: int = 32) -> nn.Module:
    config = transformers.GPT2Config(
        vocab_size=61,
        n_positions=32,
        n_embd=width,
        n_layer=layers,
        n_head=2,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        use_cache=False,
    )
    return _seeded_eager(transformers.GPT2LMHeadModel, config)


def vit(layers: int = 3, width: int = 32) -> nn.Module:
    config = transformers.ViTConfig(
        **_encoder(layers, width), image_size=16, patch_size=8, num_channels=3, num_labels=5
    )
    return _seeded_eager(transformers.ViTForImageClassification, config)


def bert(layers: int = 3, width: int = 32) -> nn.Module:
    config = transformers.BertConfig(vocab_size=61, max_position_embeddings=32, **_encoder(layers, width))
    return _seeded_eager(transformers.BertModel, config)


class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock, written out: relu(bn2(conv2(relu(bn1(conv1(x))))) + x)."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNet(nn.Module):
    """torchvision's ResNet layout (conv1, bn1, relu, maxpool, layer1..layer4, avgpool, fc),
    small: two stages of ``blocks`` BasicBlocks."""

    def __init__(self, blocks: int = 3, width: int = 8, num_classes: int = 5):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = nn.Sequential(*[BasicBlock(width, width) for _ in range(blocks)])
        down = nn.Sequential(nn.Conv2d(width, 2 * width, 1, 2, bias=False), nn.BatchNorm2d(2 * width))
        self.layer2 = nn.Sequential(
            BasicBlock(width, 2 * width, 2, down),
            *[BasicBlock(2 * width, 2 * width) for _ in range(blocks - 1)],
        )
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet(blocks: int = 3) -> nn.Module:
    torch.manual_seed(0)
    model = ResNet(blocks)
    with torch.no_grad():  # batch-norm statistics that are not the identity
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model.eval()


class MLPBlock(nn.Module):
    """x + W2 tanh(W1 x): a pre-activation residual block."""

    def __init__(self, width: int):
        super().__init__()
        self.branch = nn.Sequential(nn.Linear(width, 2 * width), nn.Tanh(), nn.Linear(2 * width, width))

    def forward(self, x):
        return x + self.branch(x)


class MLPStack(nn.Module):
    def __init__(self, depth: int = 6, width: int = 16):
        super().__init__()
        self.layers = nn.ModuleList(MLPBlock(width) for _ in range(depth))
        self.head = nn.Linear(width, 1)

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return self.head(x)


def mlp_stack(depth: int = 6, width: int = 16) -> nn.Module:
    torch.manual_seed(0)
    return MLPStack(depth, width)
