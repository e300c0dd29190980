"""Where a model's residual stacks are: given by dotted paths, or discovered.

A stack is an ``nn.ModuleList`` or ``nn.Sequential`` of blocks of one class (a block has
submodules of its own: a bare ``nn.Linear`` is a layer, not a block), such as Hugging Face
GPT-2's ``transformer.h``, ViT's ``vit.encoder.layer`` or a torchvision ResNet's ``layer1`` to
``layer4``. Discovery keeps the outermost such containers; when their blocks are of several
classes the choice is the user's, and the error lists the candidates.
"""

from __future__ import annotations

from torch import nn

from ..errors import UsageError

__all__ = ["find_stacks", "stack_candidates", "leading_shape_changers"]

CONTAINERS = (nn.ModuleList, nn.Sequential)


def _is_stack(module: nn.Module) -> bool:
    if not isinstance(module, CONTAINERS) or len(module) < 2:
        return False
    blocks = list(module)
    kind = type(blocks[0])
    return all(type(b) is kind and any(True for _ in b.children()) for b in blocks)


def stack_candidates(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The outermost containers of same-class blocks, as (dotted path, container)."""
    found: list[tuple[str, nn.Module]] = []
    for name, module in model.named_modules():
        if not name or any(name.startswith(path + ".") for path, _ in found):
            continue
        if _is_stack(module):
            found.append((name, module))
    return found


def _describe(path: str, container: nn.Module) -> str:
    return f"{path} ({len(container)} x {type(container[0]).__name__})"


def find_stacks(model: nn.Module, stacks) -> list[str]:
    """The dotted paths of the stacks to transform: ``stacks`` (a path or a list of paths)
    checked, or, when None, the candidates when all hold blocks of one class."""
    candidates = stack_candidates(model)
    listed = ", ".join(_describe(p, c) for p, c in candidates) or "none"
    if stacks is None:
        if not candidates:
            raise UsageError(
                f"transform: found no stack of blocks in {type(model).__name__} (an nn.ModuleList or "
                "nn.Sequential of two or more blocks of one class); give its dotted path with stacks=..."
            )
        kinds = {type(c[0]) for _, c in candidates}
        if len(kinds) > 1:
            raise UsageError(
                f"transform: {type(model).__name__} has stacks of different blocks; choose with "
                f"stacks=... among: {listed}"
            )
        return [p for p, _ in candidates]
    if not isinstance(stacks, (str, list, tuple)):
        raise UsageError(f"transform: stacks= takes a dotted path or a list of them, not {stacks!r}")
    paths = [stacks] if isinstance(stacks, str) else list(stacks)
    if not paths:
        raise UsageError("transform: stacks=[] names no stack")
    for path in paths:
        if not isinstance(path, str):
            raise UsageError(f"transform: a stack is given by its dotted path (a string), not {path!r}")
        try:
            container = model.get_submodule(path)
        except AttributeError:
            raise UsageError(
                f"transform: {type(model).__name__} has no submodule {path!r} (stacks found: {listed})"
            ) from None
        if not isinstance(container, CONTAINERS):
            raise UsageError(
                f"transform: {path!r} is a {type(container).__name__}, not an nn.ModuleList or nn.Sequential "
                f"of blocks (stacks found: {listed})"
            )
        if len(container) == 0:
            raise UsageError(f"transform: {path!r} holds no block")
    if len(set(paths)) != len(paths):
        raise UsageError("transform: a stack is named twice in stacks=...")
    for a in paths:
        for b in paths:
            if b.startswith(a + "."):
                raise UsageError(f"transform: the stack {b!r} lies inside the stack {a!r}")
    return paths


def leading_shape_changers(blocks: list[nn.Module]) -> int:
    """How many blocks at the start of a stack change the shape, as torchvision's and the
    cifar-resnet's blocks mark it (a ``downsample`` that is not None): they run as they are,
    and the formula starts after them."""
    count = 0
    while count < len(blocks) and getattr(blocks[count], "downsample", None) is not None:
        count += 1
    return count
