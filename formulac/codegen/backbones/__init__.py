"""The backbone registry: what a learned block ``F`` stands for, and what surrounds the steps.

A backbone is one torch-only file in this package (copied verbatim, definition by definition,
into the modules the code generator writes, with the functions it imports from the torch-only
:mod:`.layers`: :attr:`BackboneInfo.definitions`) plus an entry here that says, in pure Python,
how its stages are laid out (one ``check`` of its options and its ``stages``: :func:`_rules`)
and which options it takes. The options are checked here, before any
torch code runs (the torch-only files cannot raise formulac's errors): a bad or misspelled one
is a :class:`BackboneError` naming the known ones. Importing this package does not import
torch; ``BackboneInfo.module`` imports the torch-only file on first use.

The contract between a backbone file and the code generator:

* ``net_class(num_classes=..., in_channels=..., **net_options)``: an ``nn.Module`` whose
  ``__init__`` creates only the stem and takes exactly ``num_classes``, ``in_channels`` and
  the options that ``BackboneInfo.net_options`` names. It has ``stem_width`` (int),
  ``stem(x)``, ``head(x)`` and ``build_head(width)``. The generator registers each stage as
  the attribute ``Stage.name`` (an ``nn.ModuleList`` of steps), then calls
  ``build_head(width)`` with the width of the final state; ``build_head`` creates the head and
  then calls ``init_weights()``, which initialises every Conv/BN/Linear in the network, the
  stages included. So state_dict keys come in the order stem, stages, head.
* ``branch_class(in_width, width, stride=1, **Stage.branch_options)``: the branch ``F``; its
  ``forward`` returns the branch output without residual addition or activation after it.
  The generator's step module subclasses it and adds ``downsample``.
* ``projection_function(in_width, width, stride, **Stage.projection_options)``: the shortcut
  projection across a stage boundary, or None when ``in_width == width and stride == 1``.

What a backbone says beyond the CNN shape (so that a transformer, or a sequence model whose
input is a ``(B, T)`` LongTensor and whose output is ``(B, T, V)`` logits, fits too):

* ``feature_dim``: the tensor dimension that ``cat`` joins (1 for ``(B, C, H, W)`` images,
  -1 for ``(B, T, D)`` token streams); ``cat`` joins features, never tokens.
* ``block_kinds``: block names -> :class:`BlockKind` (the class built for a block of that
  name). Empty: every block name is the backbone's one branch ``branch_class``, as for the
  CNNs. A transformer names its sublayers, e.g. ``A`` (norm + attention), ``M`` (norm + MLP),
  ``F`` (a whole pre-norm block); :meth:`BackboneInfo.block_class` refuses any other name
  with a :class:`BackboneError` naming the kinds. Every kind class takes the branch
  constructor's arguments above; the generator copies each one used.
* ``fixed_width``: the blocks take inputs of the stage's width only (a transformer's
  sublayers); an input of another width (``cat``) is refused before torch runs.
* ``example_input_function``: the name of a function of the backbone file,
  ``f(batch, in_channels, input_size, generator=None, **net_options)``, returning an input the
  network accepts (zeros, or random draws from ``generator``); empty: an image batch
  ``(batch, in_channels, input_size, input_size)`` (:func:`.inputs.image_batch`). The head, and
  so the output's shape, is the net class's business.
* ``default_recipe``: the training recipe (``formulac.train.RECIPES``) that ``train``,
  ``compare``, ``search`` and ``learned`` use on this backbone when none is named; empty: the
  data set's.
* the number of multiply-adds is counted by ``formulac.codegen.info`` from the operations the
  network runs (``torch.utils.flop_counter``): convolutions, matrix products, attention.

``DEFAULT_BACKBONE`` (from ``formulac.limits``) is the one default; the CLI's choices and help
come from :data:`BACKBONES`.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType, ModuleType
from typing import Any

from ...errors import UsageError
from ...limits import DEFAULT_BACKBONE

__all__ = [
    "Stage",
    "BlockKind",
    "BackboneInfo",
    "BackboneError",
    "BACKBONES",
    "DEFAULT_BACKBONE",
    "get_backbone",
    "backbone_names",
    "backbone_key",
    "backbones_help",
]


class BackboneError(UsageError):
    """An unknown backbone, or an option a backbone does not take or cannot use."""


@dataclass(frozen=True)
class Stage:
    """One stage of a backbone: ``steps`` formula steps whose states have ``width`` channels.

    ``stride`` applies to the stage's first step (its branch and the projection of the states
    that enter the stage). ``branch_options`` are extra keyword arguments of the branch
    constructor, ``projection_options`` of the projection function (e.g. ``{"shortcut": "A"}``).
    """

    name: str
    width: int
    stride: int
    steps: int
    branch_options: dict = field(default_factory=dict)
    projection_options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class BlockKind:
    """What a block called ``name`` is on a backbone: an instance of ``class_name`` (a class of
    the backbone file, built like the branch), described in ``description``."""

    name: str
    class_name: str
    description: str


@dataclass(frozen=True)
class BackboneInfo:
    """A registered backbone. ``layout(depth=None, **options)`` returns the list of stages,
    ``validate(**options)`` raises :class:`BackboneError` for bad options
    (``depth`` included; ``num_classes`` and ``in_channels`` are accepted and checked too)."""

    name: str
    module_name: str
    net_class: str
    branch_class: str
    projection_function: str
    description: str
    default_depth: int
    default_input_size: int
    layout: Callable[..., list]
    validate: Callable[..., None]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    net_options: tuple = ()
    stem_width: Callable[..., int] = lambda **options: 0
    default_num_classes: int = 10
    default_in_channels: int = 3
    depth_rule: str = ""
    feature_dim: int = 1
    block_kinds: tuple[BlockKind, ...] = ()
    fixed_width: bool = False
    example_input_function: str = ""
    default_recipe: str = ""

    @property
    def module(self) -> ModuleType:
        """The torch-only module (imported on first use)."""
        return importlib.import_module(self.module_name)

    @property
    def definitions(self) -> tuple[str, ...]:
        """What the code generator copies into a module it writes, in order: the functions the
        backbone file imports from :mod:`.layers` (in the order that defines them), the net class, the
        block classes and the projection function; each a name in :attr:`module`."""
        layers = importlib.import_module(__name__ + ".layers")
        helpers = tuple(
            name
            for name, value in vars(layers).items()
            if inspect.isfunction(value)
            and value.__module__ == layers.__name__
            and getattr(self.module, name, None) is value
        )
        return (*helpers, self.net_class, *self.kind_classes, self.projection_function)

    @property
    def net(self) -> type:
        return getattr(self.module, self.net_class)

    @property
    def branch(self) -> type:
        return getattr(self.module, self.branch_class)

    @property
    def projection(self) -> Callable:
        return getattr(self.module, self.projection_function)

    @property
    def kind_classes(self) -> tuple[str, ...]:
        """Every block class of the backbone file, in declaration order, without repeats."""
        if not self.block_kinds:
            return (self.branch_class,)
        return tuple(dict.fromkeys(kind.class_name for kind in self.block_kinds))

    def block_class(self, block: str) -> str:
        """The class built for a block called ``block``; a :class:`BackboneError` naming the
        kinds the backbone has when it has no such block."""
        if not self.block_kinds:
            return self.branch_class
        for kind in self.block_kinds:
            if kind.name == block:
                return kind.class_name
        kinds = "; ".join(f"{kind.name} ({kind.description})" for kind in self.block_kinds)
        raise BackboneError(f"backbone {self.name!r} has no block {block!r}; its blocks are: {kinds}")

    def example_input(
        self, batch: int, in_channels: int, input_size: int, generator=None, options: Mapping | None = None
    ):
        """An input of ``batch`` examples the network accepts: zeros, or random draws from the
        torch ``generator`` (``options``: the network's options; others are ignored)."""
        if self.example_input_function:
            make = getattr(self.module, self.example_input_function)
            return make(
                batch, in_channels, input_size, generator=generator, **self.net_kwargs(**(options or {}))
            )
        inputs = importlib.import_module(__name__ + ".inputs")
        return inputs.image_batch(batch, in_channels, input_size, generator=generator)

    def resolve(self, depth: int | None = None, **options: Any) -> dict:
        """Validate and complete the options: ``{"depth": ..., **defaults, **options}``
        (``num_classes`` and ``in_channels`` are checked and kept if given)."""
        self.validate(depth=depth, **options)
        resolved = {"depth": self.default_depth if depth is None else depth}
        resolved.update(self.defaults)
        resolved.update(options)
        return resolved

    def net_kwargs(self, **options: Any) -> dict:
        """The options to pass to ``net_class`` (defaults filled in), without num_classes and
        in_channels."""
        full = dict(self.defaults)
        full.update(options)
        return {k: full[k] for k in self.net_options}


# ----------------------------------------------------------------------------------------
# option checking


def _fail(backbone: str, message: str) -> None:
    raise BackboneError("backbone %r: %s" % (backbone, message))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_positive_int(backbone: str, name: str, value: Any) -> None:
    if not _is_int(value) or value < 1:
        _fail(backbone, "option %r must be a positive integer, got %r" % (name, value))


def _check_common(backbone: str, defaults: Mapping[str, Any], options: dict) -> dict:
    """Reject unknown options, check num_classes/in_channels, return the completed options."""
    unknown = sorted(set(options) - set(defaults) - {"num_classes", "in_channels"})
    if unknown:
        known = ", ".join(["depth", "num_classes", "in_channels", *defaults])
        _fail(
            backbone,
            "unknown option%s %s (known options: %s)"
            % ("s" if len(unknown) > 1 else "", ", ".join(repr(u) for u in unknown), known),
        )
    for name in ("num_classes", "in_channels"):
        if name in options:
            _check_positive_int(backbone, name, options[name])
    full = dict(defaults)
    full.update({k: v for k, v in options.items() if k in defaults})
    return full


def _check_depth(backbone: str, depth: Any, step: int, offset: int, examples: str) -> int:
    if not _is_int(depth) or depth < step + offset or (depth - offset) % step:
        _fail(backbone, "depth must be %dn+%d with n >= 1 (%s), got %r" % (step, offset, examples, depth))
    return (depth - offset) // step


def _check_shortcut(backbone: str, shortcut: Any, allowed: tuple) -> None:
    if shortcut not in allowed:
        _fail(
            backbone,
            "option 'shortcut' must be %s, got %r" % (" or ".join(repr(a) for a in allowed), shortcut),
        )


def _rules(
    check: Callable[..., tuple[Any, dict]], stages: Callable[[Any, dict], list[Stage]]
) -> tuple[Callable[..., None], Callable[..., list[Stage]]]:
    """``(validate, layout)`` of a registry entry from its one ``check(depth=None, **options)``
    (a :class:`BackboneError` for bad options, else the depth as the stages take it and the
    completed options) and ``stages(depth, options)``."""

    def validate(**options: Any) -> None:
        check(**options)

    def layout(depth: int | None = None, **options: Any) -> list[Stage]:
        return stages(*check(depth, **options))

    return validate, layout


# ----------------------------------------------------------------------------------------
# cifar-resnet


# width: channels of the stem and the first stage (the stages have width, 2*width, 4*width);
# stem_stride: the stem convolution's stride (2 halves the resolution every stage works at)
_CIFAR_DEFAULTS = MappingProxyType({"shortcut": "A", "width": 16, "stem_stride": 1})
_CIFAR_DEPTH = 56


def _cifar_family(name: str, defaults: Mapping[str, Any], default_depth: int):
    """``(validate, layout)`` of a depth-6n+2 CIFAR network: 16/32/64 channels (or, where the
    backbone has the ``width`` option, width/2*width/4*width), shortcut A or B."""

    def check(depth: Any = None, **options: Any) -> tuple[int, dict]:
        full = _check_common(name, defaults, options)
        n = _check_depth(
            name, default_depth if depth is None else depth, 6, 2, "20, 32, 44, 56, 110, 1202, ..."
        )
        _check_shortcut(name, full["shortcut"], ("A", "B"))
        for knob in ("width", "stem_stride"):
            if knob in full:
                _check_positive_int(name, knob, full[knob])
        return n, full

    def stages(n: int, full: dict) -> list[Stage]:
        proj = {"shortcut": full["shortcut"]}
        base = full.get("width", 16)
        return [
            Stage("layer%d" % (i + 1), width, stride, n, {}, dict(proj))
            for i, (width, stride) in enumerate(((base, 1), (2 * base, 2), (4 * base, 2)))
        ]

    return _rules(check, stages)


cifar_validate, cifar_layout = _cifar_family("cifar-resnet", _CIFAR_DEFAULTS, _CIFAR_DEPTH)


# ----------------------------------------------------------------------------------------
# imagenet-resnet


_IMAGENET_DEFAULTS = MappingProxyType({"width_per_group": 64, "groups": 1})
_IMAGENET_DEPTH = 50
_IMAGENET_BLOCKS = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
}


def _imagenet_check(depth: Any = None, **options: Any) -> tuple[int, dict]:
    name = "imagenet-resnet"
    full = _check_common(name, _IMAGENET_DEFAULTS, options)
    depth = _IMAGENET_DEPTH if depth is None else depth
    if not _is_int(depth) or depth not in _IMAGENET_BLOCKS:
        _fail(name, "depth must be one of 18, 34, 50, 101, 152, got %r" % (depth,))
    _check_positive_int(name, "width_per_group", full["width_per_group"])
    _check_positive_int(name, "groups", full["groups"])
    if depth < 50 and (full["groups"] != 1 or full["width_per_group"] != 64):
        _fail(
            name,
            "depth %d uses basic branches, which support only groups=1 and "
            "width_per_group=64 (use depth 50, 101 or 152 for ResNeXt or wide "
            "ResNets)" % depth,
        )
    return depth, full


def _imagenet_stages(depth: int, full: dict) -> list[Stage]:
    bottleneck = depth >= 50
    expansion = 4 if bottleneck else 1
    if bottleneck:
        branch = {"bottleneck": True, "groups": full["groups"], "base_width": full["width_per_group"]}
    else:
        branch = {"bottleneck": False}
    return [
        Stage(
            "layer%d" % (i + 1),
            planes * expansion,
            1 if i == 0 else 2,
            steps,
            dict(branch),
            {"shortcut": "B"},
        )
        for i, (planes, steps) in enumerate(zip((64, 128, 256, 512), _IMAGENET_BLOCKS[depth]))
    ]


imagenet_validate, imagenet_layout = _rules(_imagenet_check, _imagenet_stages)


# ----------------------------------------------------------------------------------------
# preact-cifar


_PREACT_DEFAULTS = MappingProxyType({"shortcut": "B"})
_PREACT_DEPTH = 110


preact_validate, preact_layout = _cifar_family("preact-cifar", _PREACT_DEFAULTS, _PREACT_DEPTH)


# ----------------------------------------------------------------------------------------
# wrn


_WRN_DEFAULTS = MappingProxyType({"widen_factor": 10, "dropout": 0.0})
_WRN_DEPTH = 28


def _wrn_check(depth: Any = None, **options: Any) -> tuple[int, dict]:
    full = _check_common("wrn", _WRN_DEFAULTS, options)
    n = _check_depth("wrn", _WRN_DEPTH if depth is None else depth, 6, 4, "16, 22, 28, 40, ...")
    _check_positive_int("wrn", "widen_factor", full["widen_factor"])
    p = full["dropout"]
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p < 1:
        _fail("wrn", "option 'dropout' must be a probability in [0, 1), got %r" % (p,))
    return n, full


def _wrn_stages(n: int, full: dict) -> list[Stage]:
    k = full["widen_factor"]
    branch = {"dropout": float(full["dropout"])}
    return [
        Stage("layer1", 16 * k, 1, n, dict(branch), {"shortcut": "B"}),
        Stage("layer2", 32 * k, 2, n, dict(branch), {"shortcut": "B"}),
        Stage("layer3", 64 * k, 2, n, dict(branch), {"shortcut": "B"}),
    ]


wrn_validate, wrn_layout = _rules(_wrn_check, _wrn_stages)


# ----------------------------------------------------------------------------------------
# resnext


_RESNEXT_DEFAULTS = MappingProxyType({"cardinality": 8, "base_width": 64})
_RESNEXT_DEPTH = 29


def _resnext_check(depth: Any = None, **options: Any) -> tuple[int, dict]:
    full = _check_common("resnext", _RESNEXT_DEFAULTS, options)
    n = _check_depth("resnext", _RESNEXT_DEPTH if depth is None else depth, 9, 2, "11, 20, 29, ...")
    _check_positive_int("resnext", "cardinality", full["cardinality"])
    _check_positive_int("resnext", "base_width", full["base_width"])
    return n, full


def _resnext_stages(n: int, full: dict) -> list[Stage]:
    branch = {"cardinality": full["cardinality"], "base_width": full["base_width"]}
    return [
        Stage("layer1", 256, 1, n, dict(branch), {"shortcut": "B"}),
        Stage("layer2", 512, 2, n, dict(branch), {"shortcut": "B"}),
        Stage("layer3", 1024, 2, n, dict(branch), {"shortcut": "B"}),
    ]


resnext_validate, resnext_layout = _rules(_resnext_check, _resnext_stages)


# ----------------------------------------------------------------------------------------
# mlp


_MLP_DEFAULTS = MappingProxyType({"width": 64, "stages": None, "input_size": 28, "layernorm": False})
_MLP_DEPTH = 4


def _mlp_check(depth: Any = None, **options: Any) -> tuple[int, dict]:
    full = _check_common("mlp", _MLP_DEFAULTS, options)
    depth = _MLP_DEPTH if depth is None else depth
    if not _is_int(depth) or depth < 1:
        _fail("mlp", "depth (the number of steps per stage) must be a positive integer, got %r" % (depth,))
    _check_positive_int("mlp", "width", full["width"])
    _check_positive_int("mlp", "input_size", full["input_size"])
    stages = full["stages"]
    if stages is not None and (
        isinstance(stages, (str, bytes))
        or not hasattr(stages, "__iter__")
        or not list(stages)
        or not all(_is_int(w) and w >= 1 for w in stages)
    ):
        _fail("mlp", "option 'stages' must be a non-empty list of positive widths, got %r" % (stages,))
    if not isinstance(full["layernorm"], bool):
        _fail("mlp", "option 'layernorm' must be true or false, got %r" % (full["layernorm"],))
    return depth, full


def _mlp_stages(depth: int, full: dict) -> list[Stage]:
    widths = list(full["stages"]) if full["stages"] is not None else [full["width"]]
    branch = {"layernorm": True} if full["layernorm"] else {}
    return [
        Stage("layer%d" % (i + 1), w, 1, depth, dict(branch), {"shortcut": "B"}) for i, w in enumerate(widths)
    ]


mlp_validate, mlp_layout = _rules(_mlp_check, _mlp_stages)


# ----------------------------------------------------------------------------------------
# vit


# dim: the stream's features; heads: attention heads (dim % heads == 0); patch: side of the
# square patches (it divides input_size); mlp_ratio: the MLP's hidden width over dim; pool:
# "cls" (class token, as Hugging Face's ViT) or "mean" (mean of the tokens);
# layer_norm_eps: Hugging Face's default
_VIT_DEFAULTS = MappingProxyType(
    {
        "dim": 128,
        "heads": 4,
        "patch": 4,
        "mlp_ratio": 2,
        "dropout": 0.0,
        "pool": "cls",
        "input_size": 32,
        "layer_norm_eps": 1e-12,
    }
)
_VIT_DEPTH = 6


def _check_probability(backbone: str, name: str, p: Any) -> None:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p < 1:
        _fail(backbone, "option %r must be a probability in [0, 1), got %r" % (name, p))


def _check_transformer_shape(name: str, full: dict, depth: Any, knobs: tuple[str, ...]) -> None:
    """The depth (steps = layers), the positive integer ``knobs`` and heads dividing dim."""
    if not _is_int(depth) or depth < 1:
        _fail(name, "depth (the number of steps) must be a positive integer, got %r" % (depth,))
    for knob in knobs:
        _check_positive_int(name, knob, full[knob])
    if full["dim"] % full["heads"]:
        _fail(name, "dim %d is not divisible by heads %d" % (full["dim"], full["heads"]))


def _check_transformer_sublayers(name: str, full: dict) -> None:
    """The MLP's hidden width (a whole dim * mlp_ratio) and the dropout probability."""
    ratio = full["mlp_ratio"]
    # not (ratio > 0) refuses nan; the infinity test keeps round() below from overflowing
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio < float("inf"):
        _fail(name, "option 'mlp_ratio' must be a positive number, got %r" % (ratio,))
    if full["dim"] * ratio != round(full["dim"] * ratio):
        _fail(name, "dim * mlp_ratio must be a whole number, got %d * %r" % (full["dim"], ratio))
    _check_probability(name, "dropout", full["dropout"])


def _check_layer_norm_eps(name: str, eps: Any) -> None:
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps < 1:
        _fail(name, "option 'layer_norm_eps' must be a number in (0, 1), got %r" % (eps,))


def _transformer_layers(depth: int, full: dict, **branch: Any) -> list[Stage]:
    """One stage of ``depth`` blocks on the (B, T, dim) stream; ``branch``: options beyond the
    ones every transformer block takes."""
    common = {
        "heads": full["heads"],
        "mlp_ratio": full["mlp_ratio"],
        "dropout": float(full["dropout"]),
        "layer_norm_eps": float(full["layer_norm_eps"]),
    }
    return [Stage("layers", full["dim"], 1, depth, {**common, **branch}, {})]


def _transformer_kinds(prefix: str, attention: str) -> tuple[BlockKind, ...]:
    """The A, M, F blocks of a pre-norm transformer whose classes start with ``prefix``."""
    return (
        BlockKind("A", prefix + "Attention", "attention sublayer: LayerNorm then " + attention),
        BlockKind("M", prefix + "MLP", "MLP sublayer: LayerNorm then Linear-GELU-Linear"),
        BlockKind("F", prefix + "Block", "a whole pre-norm block's branch, A(x) + M(x + A(x))"),
    )


def _vit_check(depth: Any = None, **options: Any) -> tuple[int, dict]:
    name = "vit"
    full = _check_common(name, _VIT_DEFAULTS, options)
    depth = _VIT_DEPTH if depth is None else depth
    _check_transformer_shape(name, full, depth, ("dim", "heads", "patch", "input_size"))
    if full["input_size"] % full["patch"]:
        _fail(name, "patch %d does not divide the image size %d" % (full["patch"], full["input_size"]))
    _check_transformer_sublayers(name, full)
    if full["pool"] not in ("cls", "mean"):
        _fail(name, "option 'pool' must be 'cls' or 'mean', got %r" % (full["pool"],))
    _check_layer_norm_eps(name, full["layer_norm_eps"])
    return depth, full


vit_validate, vit_layout = _rules(_vit_check, _transformer_layers)


_VIT_KINDS = _transformer_kinds("ViT", "multi-head self-attention")


# ----------------------------------------------------------------------------------------
# gpt


# dim: the stream's features; heads: attention heads (dim % heads == 0); context: the longest
# input; mlp_ratio: the MLP's hidden width over dim (GPT-2: 4); vocab_size: 0 takes the data's
# (num_classes); positions: "learned" or "none"; layer_norm_eps and gelu ("tanh", GPT-2's
# gelu_new, or "exact"): Hugging Face's GPT-2 defaults
_GPT_DEFAULTS = MappingProxyType(
    {
        "dim": 128,
        "heads": 4,
        "context": 128,
        "mlp_ratio": 4,
        "dropout": 0.0,
        "vocab_size": 0,
        "positions": "learned",
        "layer_norm_eps": 1e-5,
        "gelu": "tanh",
    }
)
_GPT_DEPTH = 4


def _gpt_check(depth: Any = None, **options: Any) -> tuple[int, dict]:
    name = "gpt"
    full = _check_common(name, _GPT_DEFAULTS, options)
    depth = _GPT_DEPTH if depth is None else depth
    _check_transformer_shape(name, full, depth, ("dim", "heads", "context"))
    _check_transformer_sublayers(name, full)
    vocab = full["vocab_size"]
    if not _is_int(vocab) or vocab == 1 or vocab < 0:
        _fail(name, "option 'vocab_size' must be 0 (the data's) or at least 2, got %r" % (vocab,))
    if options.get("num_classes") == 1:
        _fail(name, "a vocabulary of one token has nothing to predict")
    if full["positions"] not in ("learned", "none"):
        _fail(name, "option 'positions' must be 'learned' or 'none', got %r" % (full["positions"],))
    if full["gelu"] not in ("tanh", "exact"):
        _fail(name, "option 'gelu' must be 'tanh' or 'exact', got %r" % (full["gelu"],))
    _check_layer_norm_eps(name, full["layer_norm_eps"])
    return depth, full


def _gpt_stages(depth: int, full: dict) -> list[Stage]:
    return _transformer_layers(depth, full, gelu=full["gelu"])


gpt_validate, gpt_layout = _rules(_gpt_check, _gpt_stages)


_GPT_KINDS = _transformer_kinds("GPT", "causal multi-head self-attention")


# ----------------------------------------------------------------------------------------
# the registry


def _fixed(width: int) -> Callable[..., int]:
    def stem_width(**options: Any) -> int:
        return width

    return stem_width


def _option_width(option: str, defaults: Mapping[str, Any]) -> Callable[..., int]:
    """The stem's width is the backbone's ``option`` (its default from ``defaults``)."""

    def stem_width(**options: Any) -> int:
        return options.get(option, defaults[option])

    return stem_width


# the module and classes of the pre-activation network (preact-cifar and wrn)
_PREACT_NETWORK = MappingProxyType(
    {
        "module_name": __name__ + ".preact_cifar",
        "net_class": "PreActCifarResNet",
        "branch_class": "PreActBranch",
        "projection_function": "preact_projection",
    }
)

# what the registry entries of the transformer backbones share
_TRANSFORMER_ENTRY = MappingProxyType(
    {
        "depth_rule": "any positive integer (steps = transformer layers)",
        "feature_dim": -1,
        "fixed_width": True,
    }
)


BACKBONES: dict[str, BackboneInfo] = {
    info.name: info
    for info in (
        BackboneInfo(
            name="cifar-resnet",
            module_name=__name__ + ".cifar_resnet",
            net_class="CifarResNet",
            branch_class="CifarBasicBranch",
            projection_function="cifar_projection",
            description="CIFAR ResNet of He et al. 2015: depth 6n+2, widths 16/32/64, basic "
            "branch, shortcut option A (parameter-free, default) or B (1x1 conv); options width "
            "(first stage's channels, default 16) and stem_stride (default 1)",
            default_depth=_CIFAR_DEPTH,
            default_input_size=32,
            layout=cifar_layout,
            validate=cifar_validate,
            defaults=_CIFAR_DEFAULTS,
            net_options=("width", "stem_stride"),
            stem_width=_option_width("width", _CIFAR_DEFAULTS),
            depth_rule="6n+2",
        ),
        BackboneInfo(
            name="imagenet-resnet",
            module_name=__name__ + ".imagenet_resnet",
            net_class="ImageNetResNet",
            branch_class="ResNetBranch",
            projection_function="imagenet_projection",
            description="ImageNet ResNet-18/34/50/101/152 in the torchvision layout (basic or "
            "bottleneck branch; groups and width_per_group give ResNeXt and wide "
            "ResNets)",
            default_depth=_IMAGENET_DEPTH,
            default_input_size=224,
            layout=imagenet_layout,
            validate=imagenet_validate,
            defaults=_IMAGENET_DEFAULTS,
            stem_width=_fixed(64),
            default_num_classes=1000,
            depth_rule="18, 34, 50, 101 or 152",
        ),
        BackboneInfo(
            name="preact-cifar",
            **_PREACT_NETWORK,
            description="pre-activation CIFAR ResNet of He et al. 2016: depth 6n+2, widths "
            "16/32/64, BN-ReLU-conv branch, final BN-ReLU in the head",
            default_depth=_PREACT_DEPTH,
            default_input_size=32,
            layout=preact_layout,
            validate=preact_validate,
            defaults=_PREACT_DEFAULTS,
            stem_width=_fixed(16),
            depth_rule="6n+2",
        ),
        BackboneInfo(
            name="wrn",
            # the pre-activation network, wider, with dropout in the branch
            **_PREACT_NETWORK,
            description="Wide ResNet WRN-d-k of Zagoruyko & Komodakis 2016: depth 6n+4, widths "
            "16k/32k/64k, pre-activation branch with optional dropout",
            default_depth=_WRN_DEPTH,
            default_input_size=32,
            layout=wrn_layout,
            validate=wrn_validate,
            defaults=_WRN_DEFAULTS,
            stem_width=_fixed(16),
            depth_rule="6n+4",
        ),
        BackboneInfo(
            name="resnext",
            module_name=__name__ + ".resnext",
            net_class="CifarResNeXt",
            branch_class="ResNeXtBranch",
            projection_function="resnext_projection",
            description="CIFAR ResNeXt of Xie et al. 2017: depth 9n+2, output widths "
            "256/512/1024, aggregated bottleneck branch (cardinality x base_width)",
            default_depth=_RESNEXT_DEPTH,
            default_input_size=32,
            layout=resnext_layout,
            validate=resnext_validate,
            defaults=_RESNEXT_DEFAULTS,
            stem_width=_fixed(64),
            depth_rule="9n+2",
        ),
        BackboneInfo(
            name="mlp",
            module_name=__name__ + ".mlp",
            net_class="MLPNet",
            branch_class="MLPBranch",
            projection_function="mlp_projection",
            description="small fully connected backbone for fast tests: flatten + Linear stem, "
            "Linear-ReLU-Linear branch, depth = steps per stage",
            default_depth=_MLP_DEPTH,
            default_input_size=28,
            layout=mlp_layout,
            validate=mlp_validate,
            defaults=_MLP_DEFAULTS,
            net_options=("input_size", "width"),
            stem_width=_option_width("width", _MLP_DEFAULTS),
            default_in_channels=1,
            depth_rule="any positive integer (steps per stage)",
        ),
        BackboneInfo(
            name="vit",
            module_name=__name__ + ".vit",
            net_class="ViTNet",
            branch_class="ViTBlock",
            projection_function="vit_projection",
            description="Vision Transformer (Hugging Face's ViT layout): patch embedding, class "
            "token or mean pooling, learned positions, blocks A (attention), M (MLP), F (whole "
            "pre-norm block) on a (B, T, dim) stream, final LayerNorm and linear head; options "
            "dim, heads, patch, mlp_ratio, dropout, pool, input_size, layer_norm_eps",
            default_depth=_VIT_DEPTH,
            default_input_size=32,
            layout=vit_layout,
            validate=vit_validate,
            defaults=_VIT_DEFAULTS,
            net_options=("input_size", "patch", "dim", "pool", "dropout", "layer_norm_eps"),
            stem_width=_option_width("dim", _VIT_DEFAULTS),
            block_kinds=_VIT_KINDS,
            **_TRANSFORMER_ENTRY,
            default_recipe="transformer",
        ),
        BackboneInfo(
            name="gpt",
            module_name=__name__ + ".gpt",
            net_class="GPTNet",
            branch_class="GPTBlock",
            projection_function="gpt_projection",
            description="decoder-only language model (Hugging Face's GPT-2 layout): token "
            "embedding, learned positions, blocks A (causal attention), M (MLP), F (whole pre-norm "
            "block) on a (B, T, dim) stream, final LayerNorm, LM head tied to the embedding; "
            "(B, T) token ids -> (B, T, vocab) logits; options dim, heads, context, mlp_ratio, "
            "dropout, vocab_size, positions, layer_norm_eps, gelu",
            default_depth=_GPT_DEPTH,
            default_input_size=_GPT_DEFAULTS["context"],
            layout=gpt_layout,
            validate=gpt_validate,
            defaults=_GPT_DEFAULTS,
            net_options=("context", "dim", "vocab_size", "positions", "dropout", "layer_norm_eps"),
            stem_width=_option_width("dim", _GPT_DEFAULTS),
            default_num_classes=256,
            default_in_channels=1,
            block_kinds=_GPT_KINDS,
            **_TRANSFORMER_ENTRY,
            example_input_function="gpt_example_input",
            default_recipe="text",
        ),
    )
}


def backbone_names() -> list[str]:
    return list(BACKBONES)


def backbone_key(name: str) -> str:
    """``name`` as the registry spells backbone names (lower case, ``-`` for ``_``)."""
    return name.strip().lower().replace("_", "-")


def backbones_help() -> str:
    """The CLI's help for ``--backbone`` (the names are its metavar, from :data:`BACKBONES`)."""
    return f"the network the formula's steps run in (default: {DEFAULT_BACKBONE})"


def get_backbone(name: str) -> BackboneInfo:
    """The backbone called ``name`` (case and ``_``/``-`` insensitive); a :class:`BackboneError`
    listing the known names otherwise."""
    key = backbone_key(name) if isinstance(name, str) else name
    try:
        return BACKBONES[key]
    except (KeyError, TypeError):
        raise BackboneError(
            "unknown backbone %r; known backbones: %s" % (name, ", ".join(BACKBONES))
        ) from None
