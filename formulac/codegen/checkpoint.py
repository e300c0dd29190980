"""``memory="checkpoint"``: ``torch.utils.checkpoint`` over segments of each stage (no torch here).

A stage's shape-changing first step runs as usual; the rest run through the runtime's
``run_checkpointed`` (:mod:`.memory_runtime`), which keeps the states at each segment's start
and recomputes one segment at a time during the backward.
"""

from __future__ import annotations

import math

from ..ir import Recurrence
from .memory_mode import (
    RESERVED_NAMES,
    MemoryEstimate,
    MemoryMode,
    MemoryPlan,
    history_refusal,
    peak_memory,
    split_first_step,
)

__all__ = ["CheckpointMode"]


class CheckpointMode(MemoryMode):
    """Checkpointed segments of ``segment`` steps (None: about the square root of a stage's)."""

    name = "checkpoint"
    description = "torch.utils.checkpoint over segments of each stage"
    reserved_names = RESERVED_NAMES
    runtime_names = ("_plain_call", "advance_steps", "_KeptBuffers", "run_checkpointed")
    runner = "run_checkpointed"
    runner_attributes = ("checkpoint_segment",)
    segment: int | None = None

    def refusal(self, rec: Recurrence) -> str | None:
        return history_refusal(rec, self.name, starts=True)

    def network_attribute_lines(self, mplan: MemoryPlan, indent: str) -> list[str]:
        return [
            f"{indent}# memory={self.name!r}: steps per checkpointed segment (None: about the square root of a stage's)",
            f"{indent}checkpoint_segment = {self.segment!r}",
            "",
        ]

    def stream_attributes(self, mplan: MemoryPlan) -> dict:
        return {"checkpoint_segment": self.segment}

    def estimate(self, rec: Recurrence, profile, measured=None) -> MemoryEstimate:
        """A stage keeps its first step's saved bytes and the states at each segment's start;
        while its backward runs, one segment's saved bytes at a time."""
        reason = self.refusal(rec)
        if reason is not None:
            return MemoryEstimate(self.name, None, note=reason)
        sizes = set()

        def checkpointed(s):
            first, rest = split_first_step(profile, s)
            if not rest:
                return first, 0.0
            size = self.segment or max(1, round(math.sqrt(len(rest))))
            sizes.add(size)
            segments = [rest[j : j + size] for j in range(0, len(rest), size)]
            starts = profile.fresh(s, start=True) + (len(segments) - 1) * profile.fresh(s)
            return first + starts, max(sum(seg) for seg in segments)

        resident, peak = peak_memory(profile, checkpointed)
        detail = "segments of " + ", ".join(map(str, sorted(sizes))) + " steps" if sizes else ""
        return MemoryEstimate(self.name, round(peak), round(resident), round(peak - resident), detail)
