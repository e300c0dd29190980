"""How a user's block stands for a formula's block function: the branch kinds.

A formula's step calls its blocks on states (``F(x_n)``); a model's block usually computes its
own residual addition (``x + f(x)``, or ``relu(x + f(x))``). ``blocks=`` says, for each block
name of the formula, how to get the branch from the user's block ``b``:

* ``"residual"``: ``F(x) = b(x) - x``. With the model's own connection ``x + F(x)`` this gives
  back ``b(x)`` exactly (up to one rounding). It is also exact for other formulas when ``b``
  is ``x + f(x)`` (pre-activation ResNet, pre-norm transformer layers): ``F`` is then ``f``.
  When a nonlinearity or a normalisation follows the addition (``relu(x + f(x))``, BERT's
  post-norm ``LayerNorm(x + f(x))``), ``F`` is ``relu(x + f(x)) - x``, not ``f``: the new formula
  is applied to that difference, which is not the branch the block's author meant.
* a dotted submodule path or a sequence of them (``"branch"``, ``("ln_1", "attn")``): ``F`` is
  those submodules of ``b`` applied in order (the first tensor of a tuple output is passed on);
  each gets the keyword arguments of the model's call to ``b`` that its ``forward`` names.
* a callable ``fn(b, x) -> tensor``: anything else.

:data:`PRESETS` holds the sublayer mappings of common transformer layers by name.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

from ..errors import UsageError

__all__ = ["Branch", "BRANCH_KINDS", "PRESETS", "branch_specs", "first_tensor"]

#: Sublayer mappings of pre-norm transformer layers (``blocks="gpt2"``): block name -> path(s).
#: A preset lists the layouts of the library's versions; the first that the block has is used.
PRESETS: dict[str, tuple[dict[str, tuple[str, ...]], ...]] = {
    # transformers' GPT2Block: x + attn(ln_1(x)), then + mlp(ln_2(.))
    "gpt2": ({"A": ("ln_1", "attn"), "M": ("ln_2", "mlp")},),
    # transformers' ViTLayer: (5.x) x + dropout(attention(layernorm_before(x))), then
    # + dropout(mlp(layernorm_after(.))); (4.x) ViTOutput adds the residual itself, so M stops
    # before that addition
    "vit": (
        {"A": ("layernorm_before", "attention", "dropout"), "M": ("layernorm_after", "mlp", "dropout")},
        {
            "A": ("layernorm_before", "attention"),
            "M": ("layernorm_after", "intermediate", "output.dense", "output.dropout"),
        },
    ),
}


def _has(block: nn.Module, path: str) -> bool:
    try:
        block.get_submodule(path)
    except AttributeError:
        return False
    return True


def preset(name: str, block: nn.Module) -> dict[str, tuple[str, ...]]:
    """The layout of preset ``name`` that ``block`` has (the first one when it has none: the
    error then names the missing submodule)."""
    layouts = PRESETS[name]
    for layout in layouts:
        if all(_has(block, p) for paths in layout.values() for p in paths):
            return layout
    return layouts[0]


def first_tensor(output):
    """The tensor a layer hands on: itself, or the first entry of a tuple or list."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise UsageError(
        f"transform: a block returned a {type(output).__name__}; a branch needs a tensor or a tuple "
        "whose first entry is one"
    )


class Branch(nn.Module):
    """One block function of one step: the user's block (a child, so that its parameters are
    the step's) and how the branch is computed from it. ``context`` holds the model's call to
    the block: ``(args, kwargs)`` after the hidden states, set by the stack before each step."""

    def __init__(self, block: nn.Module, kind: BranchKind, where: str):
        super().__init__()
        self.block = block
        self.kind = kind
        self.where = where
        self.context = ((), {})

    def forward(self, x):
        return self.kind(self, x)

    def extra_repr(self) -> str:
        return f"{self.kind.describe()} of {self.where}"


class BranchKind:
    """Computes a branch from a :class:`Branch` and the state it is called on."""

    def __call__(self, branch: Branch, x):
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


class Residual(BranchKind):
    """``b(x) - x``: the block's own residual addition taken back out."""

    def __call__(self, branch, x):
        args, kwargs = branch.context
        out = first_tensor(branch.block(x, *args, **kwargs))
        if out.shape != x.shape:
            raise UsageError(
                f"transform: block {branch.where} maps shape {tuple(x.shape)} to {tuple(out.shape)}; "
                "a step of the formula needs its input's shape back"
            )
        return out - x

    def describe(self) -> str:
        return "block(x) - x"


class Submodules(BranchKind):
    """Submodules of the block applied in order, each given the call's keyword arguments that
    its ``forward`` names."""

    def __init__(self, paths: Sequence[str]):
        self.paths = tuple(paths)

    def __call__(self, branch, x):
        named = _named_arguments(branch.block, x, *branch.context)
        for path in self.paths:
            module = branch.block.get_submodule(path)
            x = first_tensor(module(x, **_accepted(module, named)))
        return x

    def describe(self) -> str:
        return " then ".join(self.paths)


class Function(BranchKind):
    """A user's function ``fn(block, x)``."""

    def __init__(self, fn: Callable):
        self.fn = fn

    def __call__(self, branch, x):
        return first_tensor(self.fn(branch.block, x))

    def describe(self) -> str:
        return getattr(self.fn, "__name__", "a function")


#: The branch kinds named by a word; any other string is a submodule path.
BRANCH_KINDS: dict[str, Callable[[], BranchKind]] = {"residual": Residual}


def _parameters(fn) -> dict[str, inspect.Parameter]:
    try:
        return dict(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return {}


def _named_arguments(block: nn.Module, x, args: tuple, kwargs: dict) -> dict:
    """The model's call to ``block`` as keyword arguments by the names of its ``forward``
    (its hidden-states argument left out; what ``**kwargs`` caught spread out)."""
    if not args and not kwargs:
        return {}
    try:
        bound = inspect.signature(block.forward).bind(x, *args, **kwargs)
    except (TypeError, ValueError):
        return dict(kwargs)
    params = inspect.signature(block.forward).parameters
    named = {}
    for i, (name, value) in enumerate(bound.arguments.items()):
        if i == 0:
            continue
        if params[name].kind is inspect.Parameter.VAR_KEYWORD:
            named.update(value)
        elif params[name].kind is not inspect.Parameter.VAR_POSITIONAL:
            named[name] = value
    return named


def _accepted(module: nn.Module, named: dict) -> dict:
    if not named:
        return {}
    params = _parameters(module.forward)
    names = [
        n
        for n, p in params.items()
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    ][1:]  # the first is the hidden states
    return {k: v for k, v in named.items() if k in names}


def _kind(spec, name: str) -> BranchKind:
    if isinstance(spec, str):
        factory = BRANCH_KINDS.get(spec)
        return factory() if factory else Submodules([spec])
    if callable(spec) and not isinstance(spec, nn.Module):
        return Function(spec)
    if isinstance(spec, Sequence) and spec and all(isinstance(p, str) for p in spec):
        return Submodules(spec)
    raise UsageError(
        f"transform: blocks[{name!r}] must be 'residual', a submodule path, a sequence of paths or a "
        f"function (block, x) -> tensor; got {spec!r}"
    )


def branch_specs(blocks, formula_blocks: Sequence[str], block: nn.Module) -> dict[str, BranchKind]:
    """The branch kind of each block name of the formula, from ``blocks=``: a kind for every
    block of a one-block formula, a preset name (its layout chosen by ``block``, one of the
    model's blocks), or a mapping block name -> kind."""
    names = list(formula_blocks)
    if isinstance(blocks, str) and blocks in PRESETS:
        blocks = preset(blocks, block)
    if not isinstance(blocks, Mapping):
        if len(names) != 1:
            raise UsageError(
                f"transform: the formula has blocks {', '.join(names)}; say which part of each model block "
                f"each one is: blocks={{{', '.join(repr(n) + ': ...' for n in names)}}} (or a preset: "
                f"{', '.join(sorted(PRESETS))})"
            )
        blocks = {names[0]: blocks}
    missing = [n for n in names if n not in blocks]
    extra = [str(n) for n in blocks if n not in names]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"no mapping for {', '.join(missing)}")
        if extra:
            parts.append(f"the formula has no block {', '.join(extra)}")
        raise UsageError(
            f"transform: blocks= does not match the formula: {'; '.join(parts)} "
            f"(the formula's blocks: {', '.join(names)}; mapped: {', '.join(map(str, blocks)) or 'none'})"
        )
    return {n: _kind(blocks[n], n) for n in names}


def check_paths(kinds: Mapping[str, BranchKind], block: nn.Module, where: str) -> None:
    """Refuse a submodule path the block does not have, before anything runs."""
    for name, kind in kinds.items():
        for path in getattr(kind, "paths", ()):
            if not _has(block, path):
                children = ", ".join(n for n, _ in block.named_children()) or "none"
                raise UsageError(
                    f"transform: block {where} ({type(block).__name__}) has no submodule {path!r} for "
                    f"{name} (its children: {children})"
                )
