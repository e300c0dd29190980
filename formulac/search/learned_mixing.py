"""The learned mixing of a trained run, per stage (part of ``formulac learned RUN_DIR``).

From the checkpoint's values of the formula's parameters (per step ``k_n`` and per pair
``w_<n,i>``; shared ones too): the effective weight of every block output in the output state
(steps x blocks), for order-1 formulas the spectral radius of the product of the steps' state
matrices (hyper-connections' ``H_res``) with each one's distance from the identity and from the
doubly stochastic matrices, the similarity of the streams (collapse), and every learned
coefficient that still has its initial value (no gradient reached it, or it never moved).
The numbers are computed by :mod:`formulac.analysis.mixing`.
"""

from __future__ import annotations

import math

import sympy

from ..analysis.mixing import (
    carried_states,
    distance_from_doubly_stochastic,
    distance_from_identity,
    effective_weights,
    spectral_radius_of_product,
    stream_similarity,
    transition_matrices,
)
from ..ir import (
    Recurrence,
    n,
    pair_entries,
    pair_range,
    pair_reference,
    pair_selection,
    rec_expr,
    references,
    sinkhorn_matrix,
    softmax_vector,
)

__all__ = ["stage_values", "mixing_report", "UNMOVED_TOLERANCE"]

#: A learned coefficient this close to its initial value (relative to 1 + |initial value|) has
#: not moved.
UNMOVED_TOLERANCE = 1e-9


def stage_values(
    rec: Recurrence, attributes: dict[str, str], state: dict
) -> dict[str, dict[int, dict[str, list[float]]]]:
    """stage -> step -> formula parameter -> its value(s) (a list: one entry, or a pair's vector).
    ``attributes``: formula parameter -> its attribute in the run's network. A stream formula's
    network holds its compact form's parameters (``res_n[4,4]``); they are read back as the
    lowered formula's entries (``res01_n``, ``sinkhornres01_n``: the constraint applied)."""
    held = rec.compact if rec.compact is not None else rec
    attributes = {
        attr: name
        for name, attr in attributes.items()
        if held.params[name].per_step or held.params[name].pair is not None
    }
    stages: dict[str, dict[int, dict[str, list[float]]]] = {}
    for key, tensor in state.items():
        parts = key.split(".")
        if len(parts) == 3 and parts[1].isdigit() and parts[2] in attributes:
            values = [float(v) for v in tensor.reshape(-1).tolist()]
            stages.setdefault(parts[0], {}).setdefault(int(parts[1]), {})[attributes[parts[2]]] = values
    if rec.compact is not None:
        for steps in stages.values():
            for t, params in steps.items():
                steps[t] = _lowered_entries(rec, params)
    return stages


def _lowered_entries(rec: Recurrence, params: dict[str, list[float]]) -> dict[str, list[float]]:
    """One step's compact parameters (flat lists) -> the lowered formula's scalar parameters."""
    lowered: dict[str, list[float]] = {}
    constrained: dict[tuple[str, str | None], list] = {}
    for name, p in rec.params.items():
        if p.entry is None:
            if name in params:
                lowered[name] = params[name]
            continue
        shaped, constraint, index = p.entry
        if (shaped, constraint) not in constrained:
            flat, shape = params[shaped], rec.compact.params[shaped].shape
            values = (
                [flat[i * shape[-1] : (i + 1) * shape[-1]] for i in range(shape[0])]
                if len(shape) == 2
                else flat
            )
            if constraint == "sinkhorn":
                values = sinkhorn_matrix(values)
            elif constraint == "softmax":
                values = (
                    [softmax_vector(row) for row in values] if len(shape) == 2 else softmax_vector(values)
                )
            constrained[(shaped, constraint)] = values
        value = constrained[(shaped, constraint)]
        for i in index:
            value = value[i]
        lowered[name] = [float(value)]
    return lowered


def _first_step(rec: Recurrence, steps: dict[int, dict[str, list[float]]]) -> int:
    """The formula's n at a stage's first step: 0, unless a pair vector's length says the stage
    goes on from earlier ones (``--transition project`` carries n across stages)."""
    for name, p in rec.params.items():
        if p.pair is not None and name in steps.get(0, {}) and pair_selection(rec, name)[3] == 1:
            low, high = pair_range(rec, name)
            span = sympy.expand(high - low)  # entries - 1: a whole number plus a multiple of n
            slope = span.coeff(n)
            if slope != 0:
                return int((len(steps[0][name]) - 1 - span.xreplace({n: 0})) / slope)
    return 0


def _symbolic_values(rec: Recurrence, steps: dict[int, dict[str, list[float]]], shared: dict) -> dict:
    """SymPy parameter references at stage-local steps -> trained numbers."""
    values = {sympy.Symbol(name): value for name, value in shared.items()}
    for t, params in steps.items():
        for name, vector in params.items():
            p = rec.params[name]
            if p.pair is None:
                values[sympy.IndexedBase(name)[t]] = vector[0]
                continue
            for i, value in zip(_earlier_steps(rec, name, t, len(vector)), vector):
                values[pair_reference(name, t, i)] = value
    return values


def _earlier_steps(rec: Recurrence, name: str, t: int, count: int) -> list[int]:
    """The earlier steps ``i`` of the entries of the pair parameter ``name``'s vector at step
    ``t``: its range from the lower limit, or the steps its sum's conditions select."""
    if pair_selection(rec, name)[3] != 1:
        return pair_entries(rec, name, t)
    first = int(pair_range(rec, name)[0].xreplace({n: t}))
    return list(range(first, first + count))


def _unmoved(rec: Recurrence, steps: dict[int, dict[str, list[float]]]) -> list[str]:
    """Learned coefficients still at their initial values, as ``k_<3>`` / ``w_<2,1>``."""
    found = []
    for t, params in sorted(steps.items()):
        for name, vector in params.items():
            p = rec.params[name]
            if p.pair is None:
                pairs = [(rec_expr(sympy.IndexedBase(name)[t]), float(p.init), vector[0])]
            else:
                # a window's entries before the start that weigh states which are 0 there get no gradient
                pairs = [
                    (rec_expr(pair_reference(name, t, i)), float(p.init_at(t, i)), v)
                    for i, v in zip(_earlier_steps(rec, name, t, len(vector)), vector)
                    if not _weighs_zeros(rec, name, t, i)
                ]
            found += [text for text, init, v in pairs if abs(v - init) <= UNMOVED_TOLERANCE * (1 + abs(init))]
    return found


def _weighs_zeros(rec: Recurrence, name: str, t: int, i: int) -> bool:
    """Whether entry ``i`` of pair parameter ``name`` at step ``t`` multiplies only states before
    the start whose initial value is 0 (``b_<-1>`` in ``examples/denseformer_window.rec``)."""
    states = frozenset(rec.states)
    for eq in rec.equations:
        for total in eq.rhs.atoms(sympy.Sum):
            if not total.has(sympy.IndexedBase(name)):
                continue
            ((var, _, _),) = total.limits
            reads = list(references(total.function.xreplace({var: i, n: t}), states))
            return bool(reads) and all(
                r.index.is_Integer and r.index <= 0 and rec.initial_value(r.name, int(r.index)) == 0
                for r in reads
            )
    return False


def mixing_report(rec: Recurrence, attributes: dict[str, str], state: dict, shared: dict) -> dict[str, dict]:
    """stage -> the mixing figures of that stage (JSON-ready); empty for a formula without
    per-step or pair parameters."""
    reports: dict[str, dict] = {}
    for stage, steps in sorted(stage_values(rec, attributes, state).items()):
        depth = max(steps) + 1
        report: dict = {"steps": depth, "unmoved": _unmoved(rec, steps)}
        if _first_step(rec, steps) != 0:
            report["note"] = (
                "the stage goes on from earlier stages' history (transition project): not analysed alone"
            )
            reports[stage] = report
            continue
        values = _symbolic_values(rec, steps, shared)
        weights = effective_weights(rec, depth, values)
        blocks = sorted({c[0] for c in weights.columns if c != "input"})
        report["effective_weights"] = {b: weights.matrix(block=b).tolist() for b in blocks}
        report["input_weight"] = weights.input_weights().tolist()
        matrices = transition_matrices(rec, depth, values)
        streams = carried_states(rec)
        if matrices is not None:
            report["streams"] = streams
            report["state_matrices"] = [m.tolist() for m in matrices]  # rows: new carried states
            report["spectral_radius_of_product"] = spectral_radius_of_product(matrices)
            report["distance_from_identity"] = [distance_from_identity(m) for m in matrices]
            report["distance_from_doubly_stochastic"] = [distance_from_doubly_stochastic(m) for m in matrices]
        if len(streams) > 1:
            similarity = stream_similarity(weights, streams)
            report["stream_similarity"] = similarity.tolist()
            report["streams"] = streams
            off = [similarity[i][j] for i in range(len(streams)) for j in range(i + 1, len(streams))]
            report["most_similar_streams"] = max(off) if off and not any(map(math.isnan, off)) else None
        reports[stage] = report
    return reports


def mixing_text(reports: dict[str, dict]) -> list[str]:
    """The figures as lines of text (under each stage of ``formulac learned``)."""
    lines: list[str] = []
    for stage, report in reports.items():
        lines.append(f"mixing in {stage} ({report['steps']} steps)")
        if "note" in report:
            lines.append(f"  {report['note']}")
        for block, matrix in report.get("effective_weights", {}).items():
            lines.append(
                f"  effective weight of {block} (row: state after step t; column: {block} at step k)"
            )
            lines += ["    " + " ".join(f"{v:8.4g}" for v in row) for row in matrix]
        if "spectral_radius_of_product" in report:
            lines.append(
                f"  spectral radius of the product of the state matrices: {report['spectral_radius_of_product']:.4g}"
            )
            lines.append(
                "  distance from the identity per step: "
                + ", ".join(f"{d:.4g}" for d in report["distance_from_identity"])
            )
            lines.append(
                "  distance from doubly stochastic per step: "
                + ", ".join(f"{d:.4g}" for d in report["distance_from_doubly_stochastic"])
            )
        if report.get("most_similar_streams") is not None:
            lines.append(
                f"  streams {', '.join(report['streams'])}: largest pairwise similarity "
                f"{report['most_similar_streams']:.4g} (1: two streams carry the same mixture, collapsed)"
            )
        for figure in report.get("figures", []):
            lines.append(f"  figure: {figure}")
        if report["unmoved"]:
            shown = report["unmoved"][:12]
            more = f" and {len(report['unmoved']) - 12} more" if len(report["unmoved"]) > 12 else ""
            lines.append(
                "  never moved from their initial values (no gradient, or frozen): " + ", ".join(shown) + more
            )
    return lines
