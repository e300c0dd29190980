"""The GPT backbone: a decoder-only language model in the layout of Hugging Face's GPT-2.

Input: a ``(B, T)`` int64 tensor of token ids, ``T <= context``. Stem: a token embedding and
learned positions (``positions="none"``: no positions), dropout. The formula's steps run over
the stream ``(B, T, dim)`` with three kinds of block, each a pre-norm sublayer without its
residual addition (the formula supplies it):

* ``A``: ``dropout(c_proj(attention(ln(x))))``, causal multi-head self-attention through
  ``torch.nn.functional.scaled_dot_product_attention(is_causal=True)``;
* ``M``: ``dropout(c_proj(GELU(c_fc(ln(x)))))``, GELU tanh-approximated as GPT-2's
  (``gelu="exact"``: the exact one);
* ``F``: a whole pre-norm block's branch, ``a + M(x + a)`` with ``a = A(x)``.

Head: a final LayerNorm and the LM head tied to the token embedding: ``(B, T, vocab)`` logits
(a formula that ends wider than ``dim``, through ``cat``, gets a bias-free Linear back to ``dim``
between the two).
With ``h_<n+1> = x_n + A(x_n)``, ``x_<n+1> = h_<n+1> + M(h_<n+1>)`` the network computes
``transformers.GPT2LMHeadModel`` (``formulac.hf.load`` maps its weights in).

This file depends on torch alone: the code generator copies its classes and functions verbatim
into the modules it writes, so each definition is self-contained.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class GPTNet(nn.Module):
    """Stem and head of the GPT backbone; the steps are added by the code generator.

    Stem: token_embedding, position_embedding (``positions="learned"``), dropout. Head:
    final_norm (LayerNorm) and the token embedding's transpose as the LM head. ``context``:
    the longest sequence the network reads; ``vocab_size``: its vocabulary (``num_classes``
    when not given)."""

    def __init__(
        self,
        num_classes=256,
        in_channels=1,
        context=128,
        dim=128,
        vocab_size=0,
        positions="learned",
        dropout=0.0,
        layer_norm_eps=1e-5,
    ):
        super().__init__()
        if positions not in ("learned", "none"):
            raise ValueError("positions must be 'learned' or 'none', got %r" % (positions,))
        self.vocab_size = vocab_size or num_classes
        self.context = context
        self.stem_width = dim
        self.layer_norm_eps = layer_norm_eps
        self.token_embedding = nn.Embedding(self.vocab_size, dim)
        self.position_embedding = nn.Embedding(context, dim) if positions == "learned" else None
        self.dropout = nn.Dropout(dropout)

    def build_head(self, width):
        self.final_norm = nn.LayerNorm(width, eps=self.layer_norm_eps)
        # a formula that concatenates states (cat) ends wider than the tied embedding: a
        # bias-free Linear brings it back to dim; GPT-2's own layout needs none
        dim = self.token_embedding.embedding_dim
        self.head_projection = nn.Linear(width, dim, bias=False) if width != dim else None
        self.init_weights()

    def init_weights(self):
        """GPT-2's initialisation: normal (std 0.02) weights and embeddings, zero biases,
        LayerNorm weight one and bias zero; the projections back into the stream (``c_proj``)
        std 0.02 / sqrt(their number), GPT-2's 0.02 / sqrt(2 * layers)."""
        projections = sum(1 for name, _ in self.named_modules() if name.endswith("c_proj"))
        for name, m in self.named_modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                std = 0.02 / math.sqrt(max(projections, 1)) if name.endswith("c_proj") else 0.02
                nn.init.normal_(m.weight, mean=0.0, std=std)
                if isinstance(m, nn.Linear) and m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def stem(self, x):
        if x.dim() != 2 or x.dtype != torch.long:
            raise ValueError(
                "GPT input must be a (batch, tokens) LongTensor, got %s %s" % (x.dtype, tuple(x.shape))
            )
        if x.shape[1] > self.context:
            raise ValueError("%d tokens exceed the context of %d" % (x.shape[1], self.context))
        h = self.token_embedding(x)
        if self.position_embedding is not None:
            h = h + self.position_embedding(torch.arange(x.shape[1], device=x.device))
        return self.dropout(h)

    def head(self, x):
        x = self.final_norm(x)
        if self.head_projection is not None:
            x = self.head_projection(x)
        return F.linear(x, self.token_embedding.weight)


class GPTAttention(nn.Module):
    """A(x) = dropout(c_proj(causal attention(ln(x)))): ``heads`` heads of ``width // heads``
    features, query/key/value in one Linear (``c_attn``), scaled dot products masked causally."""

    def __init__(
        self, in_width, width, stride=1, heads=4, mlp_ratio=4, dropout=0.0, layer_norm_eps=1e-5, gelu="tanh"
    ):
        super().__init__()
        if stride != 1:
            raise ValueError("a transformer sublayer has no stride, got stride=%r" % (stride,))
        if width % heads:
            raise ValueError("width %d is not divisible by heads %d" % (width, heads))
        self.heads = heads
        self.attention_dropout = dropout
        self.ln = nn.LayerNorm(in_width, eps=layer_norm_eps)
        self.c_attn = nn.Linear(in_width, 3 * width)
        self.c_proj = nn.Linear(width, width)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        batch, tokens, _ = x.shape
        qkv = self.c_attn(self.ln(x)).view(batch, tokens, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        p = self.attention_dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], dropout_p=p, is_causal=True)
        return self.drop(self.c_proj(y.transpose(1, 2).reshape(batch, tokens, -1)))


class GPTMLP(nn.Module):
    """M(x) = dropout(c_proj(GELU(c_fc(ln(x))))), ``c_fc`` widening ``mlp_ratio`` times; GELU
    tanh-approximated (GPT-2's ``gelu_new``) or exact (``gelu="exact"``)."""

    def __init__(
        self, in_width, width, stride=1, heads=4, mlp_ratio=4, dropout=0.0, layer_norm_eps=1e-5, gelu="tanh"
    ):
        super().__init__()
        if stride != 1:
            raise ValueError("a transformer sublayer has no stride, got stride=%r" % (stride,))
        if gelu not in ("tanh", "exact"):
            raise ValueError("gelu must be 'tanh' or 'exact', got %r" % (gelu,))
        hidden = round(width * mlp_ratio)
        self.approximate = "tanh" if gelu == "tanh" else "none"
        self.ln = nn.LayerNorm(in_width, eps=layer_norm_eps)
        self.c_fc = nn.Linear(in_width, hidden)
        self.c_proj = nn.Linear(hidden, width)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        return self.drop(self.c_proj(F.gelu(self.c_fc(self.ln(x)), approximate=self.approximate)))


class GPTBlock(nn.Module):
    """F(x) = a + M(x + a) with a = A(x): the branch of one pre-norm GPT-2 layer, so that
    x + F(x) is the layer (attention then MLP, each with its residual addition)."""

    def __init__(
        self, in_width, width, stride=1, heads=4, mlp_ratio=4, dropout=0.0, layer_norm_eps=1e-5, gelu="tanh"
    ):
        super().__init__()
        self.attention = GPTAttention(
            in_width, width, stride, heads, mlp_ratio, dropout, layer_norm_eps, gelu
        )
        self.mlp = GPTMLP(width, width, stride, heads, mlp_ratio, dropout, layer_norm_eps, gelu)

    def forward(self, x):
        a = self.attention(x)
        return a + self.mlp(x + a)


def gpt_projection(in_width, width, stride=1, shortcut="B"):
    """None: a GPT has one stage, whose width is the stem's (the registry refuses the rest)."""
    if in_width != width or stride != 1:
        raise ValueError("the GPT stream keeps one width, got %d -> %d" % (in_width, width))
    return None


def gpt_example_input(batch, in_channels, input_size, generator=None, context=128, **options):
    """A ``(batch, context)`` LongTensor of token ids 0 and 1 (random draws from ``generator``,
    zeros without): ids every vocabulary has."""
    if generator is None:
        return torch.zeros(batch, context, dtype=torch.long)
    return torch.randint(0, 2, (batch, context), generator=generator)
