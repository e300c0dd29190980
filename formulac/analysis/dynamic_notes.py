"""What the analysis says about input-dependent coefficients (``+ dynamic(s_n)``).

Their dynamic parts start at exactly 0 (the projections start at 0), so block weights, roots
and stability, computed from the static parts, are the network's at the start and only there.
The maps add learned scalars that scale with the backbone's feature dimension d: per step, one
RMS-norm gain of d per state read, a projection of d (a vector's or a number's) or d x k (a
matrix [k,k]'s), and one scale per parameter.
"""

from __future__ import annotations

from ..ir import Recurrence, StateRef

__all__ = ["dynamic_map_size", "dynamic_notes"]


def _dynamic(rec: Recurrence):
    held = rec.compact if rec.compact is not None else rec
    return [p for p in held.params.values() if p.dynamic is not None]


def dynamic_map_size(rec: Recurrence) -> tuple[int, int]:
    """``(a, b)``: the maps of one step hold ``a*d + b`` learned scalars (d: the feature dimension)."""
    params = _dynamic(rec)
    states = {StateRef.of(p.dynamic).name for p in params}
    columns = sum(p.shape[0] if p.shape is not None and len(p.shape) == 2 else 1 for p in params)
    return len(states) + columns, len(params)


def dynamic_notes(rec: Recurrence, depth: int) -> list[str]:
    """The analysis notes of a formula with input-dependent coefficients (none without)."""
    params = _dynamic(rec)
    if not params:
        return []
    reads = ", ".join(sorted({f"{StateRef.of(p.dynamic).name}_n" for p in params}))
    names = ", ".join(p.declared for p in params)
    per_feature, fixed = dynamic_map_size(rec)
    return [
        f"input-dependent: analysed at initial values ({names} computed per token from {reads}; "
        "their dynamic parts start at 0, so the block weights and roots are the static parts')",
        f"input-dependent maps: {per_feature}d + {fixed} learned scalars a step, d the feature dimension "
        f"(norm gains, projections, scales); {depth * per_feature}d + {depth * fixed} at depth {depth}, "
        "besides the static coefficients",
    ]
