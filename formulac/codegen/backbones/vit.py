"""The Vision Transformer backbone (Dosovitskiy et al. 2021) in the layout of Hugging Face's ViT.

Stem: a patch embedding (a ``patch`` x ``patch`` convolution of stride ``patch``), a class
token (``pool="cls"``) and learned positions. The formula's steps run over the token stream
``(B, T, dim)`` with three kinds of block, each a pre-norm sublayer without its residual
addition (the formula supplies it):

* ``A``: ``out(attention(LayerNorm(x)))``, multi-head self-attention through
  ``torch.nn.functional.scaled_dot_product_attention``;
* ``M``: ``fc2(GELU(fc1(LayerNorm(x))))``, GELU exact;
* ``F``: a whole pre-norm block's branch, ``a + M(x + a)`` with ``a = A(x)``, so that
  ``x_<n+1> = x_n + F(x_n)`` is one ViT layer.

Head: a final LayerNorm, the class token (or the mean of the tokens, ``pool="mean"``), a
linear classifier. With ``h_<n+1> = x_n + A(x_n)``, ``x_<n+1> = h_<n+1> + M(h_<n+1>)`` the
network computes ``transformers.ViTForImageClassification`` (``formulac.hf.load`` maps its
weights in).

This file depends on torch alone: the code generator copies its classes and functions verbatim
into the modules it writes, so each definition is self-contained.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


class ViTNet(nn.Module):
    """Stem and head of the ViT backbone; the steps are added by the code generator.

    Stem: patch_embed (Conv2d), cls_token, position, dropout. Head: norm (LayerNorm),
    classifier (Linear). Build order: ``__init__`` creates the stem, the generator registers
    the steps, then calls ``build_head(width)``.
    """

    def __init__(
        self,
        num_classes=10,
        in_channels=3,
        input_size=32,
        patch=4,
        dim=128,
        pool="cls",
        dropout=0.0,
        layer_norm_eps=1e-12,
    ):
        super().__init__()
        if pool not in ("cls", "mean"):
            raise ValueError("pool must be 'cls' or 'mean', got %r" % (pool,))
        if input_size % patch:
            raise ValueError("patch %d does not divide the image size %d" % (patch, input_size))
        self.num_classes = num_classes
        self.stem_width = dim
        # the learned positions fix the number of patches, so the image size too
        self.image_shape = (in_channels, input_size, input_size)
        self.pool = pool
        self.layer_norm_eps = layer_norm_eps
        self.patch_embed = nn.Conv2d(in_channels, dim, patch, stride=patch)
        tokens = (input_size // patch) ** 2
        if pool == "cls":
            self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
            tokens += 1
        self.position = nn.Parameter(torch.zeros(1, tokens, dim))
        self.dropout = nn.Dropout(dropout)

    def build_head(self, width):
        self.norm = nn.LayerNorm(width, eps=self.layer_norm_eps)
        self.classifier = nn.Linear(width, self.num_classes)
        self.init_weights()

    def init_weights(self):
        """Hugging Face's ViT initialisation: truncated normal (std 0.02) weights, positions
        and class token; zero biases; LayerNorm weight one, bias zero."""
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.trunc_normal_(self.position, std=0.02)
        if self.pool == "cls":
            nn.init.trunc_normal_(self.cls_token, std=0.02)

    def stem(self, x):
        # another size would fail deep in torch, at the positions
        if x.dim() != 4 or tuple(x.shape[1:]) != self.image_shape:
            raise ValueError(
                "this ViT was compiled for images of shape %s (in_channels=%d, input_size=%d), got "
                "an input of shape %s" % (self.image_shape, *self.image_shape[:2], tuple(x.shape))
            )
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2)
        if self.pool == "cls":
            tokens = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), tokens), dim=1)
        return self.dropout(tokens + self.position)

    def head(self, x):
        x = self.norm(x)
        pooled = x[:, 0] if self.pool == "cls" else x.mean(dim=1)
        return self.classifier(pooled)


class ViTAttention(nn.Module):
    """A(x) = dropout(out(attention(LayerNorm(x)))): multi-head self-attention over the tokens,
    ``heads`` heads of ``width // heads`` features, query/key/value in one Linear (``qkv``)."""

    def __init__(self, in_width, width, stride=1, heads=4, mlp_ratio=2, dropout=0.0, layer_norm_eps=1e-12):
        super().__init__()
        if stride != 1:
            raise ValueError("a transformer sublayer has no stride, got stride=%r" % (stride,))
        if width % heads:
            raise ValueError("width %d is not divisible by heads %d" % (width, heads))
        self.heads = heads
        self.attention_dropout = dropout
        self.norm = nn.LayerNorm(in_width, eps=layer_norm_eps)
        self.qkv = nn.Linear(in_width, 3 * width)
        self.out = nn.Linear(width, width)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        batch, tokens, _ = x.shape
        qkv = self.qkv(self.norm(x)).view(batch, tokens, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        p = self.attention_dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], dropout_p=p)
        return self.drop(self.out(y.transpose(1, 2).reshape(batch, tokens, -1)))


class ViTMLP(nn.Module):
    """M(x) = dropout(fc2(GELU(fc1(LayerNorm(x))))), fc1 widening ``mlp_ratio`` times."""

    def __init__(self, in_width, width, stride=1, heads=4, mlp_ratio=2, dropout=0.0, layer_norm_eps=1e-12):
        super().__init__()
        if stride != 1:
            raise ValueError("a transformer sublayer has no stride, got stride=%r" % (stride,))
        hidden = round(width * mlp_ratio)
        self.norm = nn.LayerNorm(in_width, eps=layer_norm_eps)
        self.fc1 = nn.Linear(in_width, hidden)
        self.fc2 = nn.Linear(hidden, width)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        return self.drop(self.fc2(F.gelu(self.fc1(self.norm(x)))))


class ViTBlock(nn.Module):
    """F(x) = a + M(x + a) with a = A(x): the branch of one pre-norm layer, so that
    x + F(x) is the layer (attention then MLP, each with its residual addition)."""

    def __init__(self, in_width, width, stride=1, heads=4, mlp_ratio=2, dropout=0.0, layer_norm_eps=1e-12):
        super().__init__()
        self.attention = ViTAttention(in_width, width, stride, heads, mlp_ratio, dropout, layer_norm_eps)
        self.mlp = ViTMLP(width, width, stride, heads, mlp_ratio, dropout, layer_norm_eps)

    def forward(self, x):
        a = self.attention(x)
        return a + self.mlp(x + a)


def vit_projection(in_width, width, stride=1, shortcut="B"):
    """None: a ViT has one stage, whose width is the stem's (the registry refuses the rest)."""
    if in_width != width or stride != 1:
        raise ValueError("the ViT stream keeps one width, got %d -> %d" % (in_width, width))
    return None
