"""The module that takes a stack's place in the transformed model and runs the formula.

``FormulaStack`` registers the user's blocks under the container's own keys (``"0"``,
``"1"``, ...), so every key of the original state_dict is kept; the formula's learned
coefficients live under ``formula.`` (``formula.k`` for ``param k``, ``formula.k.<i>`` for
``param k_n``, step ``i`` counted from the first block the formula runs).

A model runs a stack in one of two ways, and both work:

* it calls the container (an ``nn.Sequential``, e.g. a ResNet's ``self.layer1(x)``): the
  whole formula runs in :meth:`FormulaStack.forward`;
* it loops over the blocks itself (Hugging Face's ``for block in self.h: block(hidden, ...)``):
  iterating or indexing the stack gives one callable per block, which runs that block's step.
  The stack carries the states the formula keeps (``x_<n-1>``, ``v_n``) from one call to the
  next and hands the model ``x_<n+1>``, returned the way the block returns its output (a tensor
  or a tuple, learnt from one call of the first block, without gradients, on the first forward;
  entries after the first are None). What the model does to the hidden states between two
  block calls is not seen. Under ``memory="reversible"`` or ``"checkpoint"`` the steps must
  run in one go: the calls before the last record the model's arguments and hand back their
  input, and the last call runs every step.

The arguments of the model's call to block ``i`` (attention masks, ...) reach block ``i``'s
branches. Under the memory modes the blocks are called again during backward with the
arguments of the latest forward.
"""

from __future__ import annotations

import torch
from torch import nn

from ..codegen import load_source, memory_runtime
from ..codegen.memory_modes import get_memory_mode
from ..codegen.stream import StreamCode
from ..errors import UsageError
from .branches import Branch, BranchKind
from .stacks import leading_shape_changers

__all__ = ["FormulaStack", "BlockCall"]


def _plain_call(index, block, argument):
    return block(argument)


class BlockCall:
    """Block ``index`` of a :class:`FormulaStack` as the model's loop sees it: calling it runs
    that block's step; its attributes are the block's."""

    def __init__(self, stack: FormulaStack, index: int):
        self._stack = stack
        self._index = index

    def __call__(self, hidden, *args, **kwargs):
        return self._stack.call_block(self._index, hidden, args, kwargs)

    def __getattr__(self, name):
        return getattr(self._stack.block(self._index), name)

    def __repr__(self) -> str:
        return f"BlockCall({self._index}, {self._stack.block(self._index).__class__.__name__})"


class _Run:
    """One forward in progress through the stack's loop: the kept states, the model's
    arguments to each block so far."""

    def __init__(self, states):
        self.states = tuple(states)
        self.contexts: list[tuple[tuple, dict]] = []


class FormulaStack(nn.Module):
    """A stack of the user's blocks that runs the formula (see the module's docstring)."""

    def __init__(self, blocks: list[nn.Module], kinds: dict[str, BranchKind], code: StreamCode, path: str):
        super().__init__()
        for i, block in enumerate(blocks):
            self.add_module(str(i), block)
        self.path = path
        self.first = leading_shape_changers(blocks)
        if self.first == len(blocks):
            raise UsageError(f"transform: every block of {path} changes the shape; the formula has no step")
        generated = load_source(code.source, "transform")
        self._initial_states = generated.initial_states
        self._output = code.kept.index(f"{code.output}_n")
        self._names = list(code.blocks)
        self.memory = code.memory_plan.mode
        like = next((p for b in blocks for p in b.parameters() if p.is_floating_point()), None)
        options = {"dtype": like.dtype, "device": like.device} if like is not None else {}
        steps = []
        for j, block in enumerate(blocks[self.first :]):
            where = f"{path}.{self.first + j}"
            branches = {name: Branch(block, kinds[name], where) for name in code.blocks}
            step = generated.StreamStep(**branches, n=j)
            for attr, _ in code.per_step_params.values():
                setattr(step, attr, nn.Parameter(getattr(step, attr).detach().to(**options)))
            steps.append(step)
        self._steps = steps  # not registered: the blocks are, under "0", "1", ...
        self.formula = nn.Module()
        for attr, init in code.shared_params.values():
            setattr(self.formula, attr, nn.Parameter(torch.tensor(init, **options)))
        for attr, _ in code.per_step_params.values():
            setattr(self.formula, attr, nn.ParameterList([getattr(s, attr) for s in steps]))
        self._shared = [attr for attr, _ in code.shared_params.values()]
        # the mode's settings (reversible: anchor_steps, ...; checkpoint: checkpoint_segment)
        for name, value in get_memory_mode(self.memory).stream_attributes(code.memory_plan).items():
            setattr(self, name, value)
        self._format = None  # how the blocks return: "tensor", or (tuple or list, length)
        self._run: _Run | None = None
        self.watch = None  # profiling: watch(j) before step j, watch(None, states) after it

    # -- the container's face ------------------------------------------------------------------
    def block(self, index: int) -> nn.Module:
        return self._modules[str(index)]

    def __len__(self) -> int:
        return len(self._modules) - 1  # the blocks, and "formula"

    def __iter__(self):
        return iter([BlockCall(self, i) for i in range(len(self))])

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [BlockCall(self, i) for i in range(len(self))[index]]
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} is out of range")
        return BlockCall(self, index % len(self))

    @property
    def output_index(self) -> int:
        """Where the output state is among the kept states."""
        return self._output

    @property
    def steps(self) -> list[nn.Module]:
        """The formula's steps (one per block from ``first``), each holding its block's branches."""
        return list(self._steps)

    def train(self, mode: bool = True):
        super().train(mode)
        for step in self._steps:
            step.train(mode)
        return self

    def extra_repr(self) -> str:
        return f"path={self.path!r}, memory={self.memory!r}, first={self.first}"

    # -- running ----------------------------------------------------------------------------------
    def _shared_values(self) -> dict:
        return {attr: getattr(self.formula, attr) for attr in self._shared}

    def _set_context(self, j: int, context) -> None:
        for name in self._names:
            getattr(self._steps[j], name).context = context

    def _advance(self, j: int, states, context):
        self._set_context(j, context)
        if self.watch is not None:
            self.watch(j)
        states = tuple(self._steps[j].advance(_plain_call, *states, **self._shared_values()))
        if self.watch is not None:
            self.watch(None, states)
        return states

    def _run_all(self, states, contexts):
        mode = get_memory_mode(self.memory)
        if mode.runner is None:
            for j, context in enumerate(contexts):
                states = self._advance(j, states, context)
            return states
        for j, context in enumerate(contexts):
            self._set_context(j, context)
        runner = getattr(memory_runtime, mode.runner)
        settings = [getattr(self, name) for name in mode.runner_attributes]
        return runner(self._steps, states, self._shared_values(), *settings)

    def forward(self, x, *args, **kwargs):
        """The whole stack on ``x`` (a model that calls the container); every block gets
        ``args`` and ``kwargs``."""
        for i in range(self.first):
            x = self.block(i)(x, *args, **kwargs)
        states = tuple(self._initial_states(x))
        states = self._run_all(states, [(args, kwargs)] * len(self._steps))
        return states[self._output]

    def call_block(self, index: int, hidden, args: tuple, kwargs: dict):
        """The model's call to block ``index`` (see the module's docstring)."""
        if index < self.first:
            return self.block(index)(hidden, *args, **kwargs)
        j = index - self.first
        if j == 0:
            if self._format is None:
                self._format = self._probe(index, hidden, args, kwargs)
            self._run = _Run(self._initial_states(hidden))
        run = self._run
        if run is None or len(run.contexts) != j:
            raise UsageError(
                f"transform: the blocks of {self.path} were called out of order (block {index}); a "
                "transformed stack runs its blocks first to last"
            )
        run.contexts.append((args, kwargs))
        last = j == len(self._steps) - 1
        if get_memory_mode(self.memory).runner is None:
            run.states = self._advance(j, run.states, (args, kwargs))
            out = run.states[self._output]
        elif last:
            out = self._run_all(run.states, run.contexts)[self._output]
        else:
            out = hidden
        if last:
            self._run = None
        return self._formatted(out)

    def _probe(self, index: int, hidden, args, kwargs):
        devices = [hidden.device.index or 0] if hidden.device.type == "cuda" else []
        with torch.no_grad(), torch.random.fork_rng(devices=devices):
            out = self.block(index)(hidden, *args, **kwargs)
        if isinstance(out, torch.Tensor):
            return "tensor"
        if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
            return (type(out), len(out))
        raise UsageError(
            f"transform: block {self.path}.{index} returns a {type(out).__name__}; a transformed stack "
            "hands on a tensor or a tuple whose first entry is the hidden states"
        )

    def _formatted(self, out):
        if self._format == "tensor":
            return out
        kind, length = self._format
        return kind([out] + [None] * (length - 1))
