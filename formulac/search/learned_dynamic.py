"""The trained input-dependent parts of a run's coefficients, for ``formulac learned``.

A coefficient declared ``STATIC + dynamic(s_n)`` is, for every token, its trained static part
plus ``scale*tanh(rmsnorm(s_n) @ W)`` (``dynamic(s_n, linear)``: ``scale*(rmsnorm(s_n) @ W)``).
The static part is reported with the other parameters (the mixing report reads it); this module
reports the size of the dynamic part per step: the Frobenius norm of the projection ``W``, the
scale, and for the tanh map ``|scale|``, the most that any entry can move from its static part
(``|tanh| < 1``; a linear map has no such bound: None). A map still at 0, where it starts, is
flagged: no gradient reached it (mHC's H_res at a step whose streams are all equal). Numbers
come straight from the checkpoint.
"""

from __future__ import annotations

import math

from .learned_mixing import UNMOVED_TOLERANCE

__all__ = ["dynamic_report", "dynamic_text"]


def dynamic_report(names: dict[str, dict[str, str]], state: dict) -> dict[str, dict[str, list[dict]]]:
    """{parameter: {stage: [{"map_norm", "scale", "largest_change", "unmoved"} per step]}} from the
    checkpoint's ``state``; ``names``: the attributes of each parameter's parts
    (:func:`formulac.codegen.dynamic_parameter_attributes`)."""
    report: dict[str, dict[str, list[dict]]] = {}
    for name, parts in names.items():
        stages: dict[str, list[tuple[int, dict]]] = {}
        for key, tensor in state.items():
            stage, _, rest = key.partition(".")
            index, _, attr = rest.partition(".")
            if attr != parts["map"] or not index.isdigit():
                continue
            scale = float(state[f"{stage}.{index}.{parts['scale']}"])
            map_norm = math.sqrt(float((tensor.double() ** 2).sum()))
            figures = {
                "map_norm": map_norm,
                "scale": scale,
                "largest_change": abs(scale) if parts.get("map_kind", "tanh") == "tanh" else None,
                "unmoved": map_norm <= UNMOVED_TOLERANCE,  # W starts at exactly 0
            }
            stages.setdefault(stage, []).append((int(index), figures))
        report[name] = {stage: [f for _, f in sorted(steps)] for stage, steps in stages.items()}
    return report


def dynamic_text(report: dict[str, dict[str, list[dict]]], declared: dict[str, str]) -> list[str]:
    """The report as lines; ``declared``: parameter -> how its declaration writes it."""
    lines = [
        "input-dependent parts (each coefficient is its static part plus scale*tanh(rmsnorm(state) @ W) "
        "per token, or scale*(rmsnorm(state) @ W) for dynamic(state, linear); with tanh an entry moves at "
        "most |scale| from its static part; the mixing figures above are the static parts'):"
    ]
    for name, stages in report.items():
        for stage, steps in stages.items():
            lines.append(
                f"  {declared.get(name, name)} in {stage}: "
                + "; ".join(
                    f"step {t}: |W| = {f['map_norm']:.4g}, scale = {f['scale']:.4g}"
                    for t, f in enumerate(steps)
                )
            )
            unmoved = [str(t) for t, f in enumerate(steps) if f["unmoved"]]
            if unmoved:
                where = f"step{'s' if len(unmoved) > 1 else ''} {', '.join(unmoved)}"
                lines.append(f"    never moved from 0 (no gradient reached the map) at {where}")
    return lines
