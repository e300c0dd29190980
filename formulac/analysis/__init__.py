"""Analysis of recurrences: unrolled form, block weights, characteristic roots, stability, graph.

Entry points::

    analyze(rec, depth=10, params="symbolic")   -> Analysis   (everything ``formulac analyze`` shows)
    unroll(rec, steps)                          -> Unrolled   (x_N in x_0 and block outputs)
    diff(a, b, depth=10)                        -> Diff
    dependency_graph(rec, depth)                -> networkx.DiGraph
    path_length_distribution(rec, depth)        -> [paths through 0 blocks, 1 block, ...]

Weights are computed by iterating the recurrence backwards in exact arithmetic (never by
``rsolve``); every linear quantity is ``None`` with a note when it does not exist (non-linear
formulas, step-dependent coefficients) or cannot be computed within the size budget.

The modules, each importing only those listed before it: ``formatting`` (values as text and
JSON), ``linear`` (the linear structure), ``weights``, ``roots``, ``expand``, ``graph``,
``result`` (the records), ``compare``.
"""

from __future__ import annotations

from ..errors import UsageError
from ..ir import learned_coefficient_counts
from ..limits import DEFAULT_DEPTH, MAX_HISTORY_TERMS, MAX_PATH_COST, MAX_PATH_EDGES, MAX_TERMS
from ..parse import as_recurrence
from .compare import diff_analyses
from .dynamic_notes import dynamic_notes
from .expand import Unrolled
from .expand import unroll as _unroll
from .formatting import LAMBDA, stream_parameters_text
from .graph import block_count_distribution, build_dag, dependency_graph, path_length_distribution
from .linear import check_steps, structure
from .result import Analysis, Diff
from .roots import Root, spectrum
from .weights import TooDeep, TooLarge, compute_weights, history_terms

__all__ = [
    "analyze",
    "unroll",
    "diff",
    "dependency_graph",
    "path_length_distribution",
    "Analysis",
    "Unrolled",
    "Diff",
    "Root",
    "LAMBDA",
    "DEFAULT_DEPTH",
]


def unroll(rec, steps: int, state: str | None = None, params: str = "symbolic") -> Unrolled:
    """``x_steps`` in terms of ``x_0`` and the block outputs ``F_i(...)`` (block arguments in
    named states). Linear formulas are collected by block output in step order."""
    return _unroll(as_recurrence(rec), steps, state, params)


def analyze(rec, depth: int = DEFAULT_DEPTH, params: str = "symbolic", paths: bool = True) -> Analysis:
    """Analyse ``rec`` (a :class:`Recurrence` or formula text) at ``depth``.

    ``params="symbolic"`` keeps learnable parameters as symbols (per-step ones as ``k_0 ..
    k_{N-1}``), falling back to their initial values, with a note, when the symbolic weights
    exceed the size budget; ``params="init"`` uses the initial values from the start.
    """
    rec = as_recurrence(rec)
    depth = check_steps(depth, "the depth")
    if params not in ("symbolic", "init"):
        raise UsageError(f"params must be 'symbolic' or 'init', not {params!r}")
    st = structure(rec, params)
    notes: list[str] = []
    weights = None
    spec = None
    wst = st
    if not st.linear:
        notes.append(
            f"not linear: {st.reason}; block weights, initial weights, characteristic polynomial, "
            "roots, stability, rate and consistency do not exist (null); the unrolled form is "
            "still available (formulac unroll)"
        )
    else:
        try:
            weights = compute_weights(st, depth)
        except TooDeep as exc:
            notes.append(f"block weights not computed: {exc}")
        except TooLarge as exc:
            per_step = list(rec.params.values())
            if params == "symbolic" and per_step:
                shown = stream_parameters_text(rec) or ", ".join(f"{p.declared} = {p.init}" for p in per_step)
                wst = structure(rec, "init")
                try:
                    weights = compute_weights(wst, depth)
                    notes.append(
                        f"with symbolic parameters the block weights exceed the size budget "
                        f"(more than {MAX_TERMS} terms by step {exc.step} of {depth}); weights are "
                        f"given at the parameters' initial values ({shown})"
                    )
                except TooLarge:
                    weights = None
            if weights is None:
                notes.append(
                    f"the symbolic block weights exceed the size budget (more than {MAX_TERMS} terms "
                    f"at depth {depth}); bind the free symbols (--set NAME=VALUE) or lower the depth"
                )
        spec = spectrum(st)
        notes.extend(spec.notes)
    path_lengths = None
    if paths and st.has_sums and history_terms(st, depth) > MAX_HISTORY_TERMS:
        notes.append("path lengths not computed: the history sum is too long at this depth")
    elif paths:
        dag = build_dag(st, depth)
        order = [(node, kind, preds) for node, (kind, _, preds, _) in dag.nodes.items()]
        if dag.edge_count <= MAX_PATH_EDGES:
            path_lengths = block_count_distribution(order, dag.input, dag.output, MAX_PATH_COST)
        if path_lengths is None:
            notes.append(
                "path-length distribution not computed at this depth (too costly); "
                "formulac.analysis.path_length_distribution(rec, depth) computes it"
            )
    if rec.params:  # the size of the learned mixing, so that formulas can be compared by it
        counts = learned_coefficient_counts(rec, depth)
        shown = ", ".join(f"{name}: {count}" for name, count in counts.items())
        notes.append(
            f"learned coefficients at depth {depth} (one stage): {shown}; {sum(counts.values())} in all"
        )
    notes.extend(dynamic_notes(rec, depth))
    # memory (issue 10): can a step run backward, and how errors grow when states are rebuilt
    from .invertibility import invert, reconstruction

    inverse = invert(rec)
    return Analysis(
        formula=rec.text,
        name=rec.name,
        output=rec.output,
        order=rec.order,
        linear=st.linear,
        depth=depth,
        params_mode=wst.params_mode,
        characteristic_polynomial=None if spec is None else spec.polynomial,
        roots=None if spec is None else spec.roots,
        stability=None if spec is None else spec.stability,
        rate=None if spec is None else spec.rate,
        rate_multiplicity=None if spec is None else spec.rate_multiplicity,
        consistent=None if spec is None else spec.consistent,
        free_symbols=list(rec.free_symbols),
        params=dict(rec.params),
        stream_parameters=stream_parameters_text(rec),
        path_lengths=path_lengths,
        notes=notes,
        structure=wst,
        weights=weights,
        invertibility=inverse,
        reconstruction=reconstruction(rec, inverse=inverse),
    )


def diff(a, b, depth: int = DEFAULT_DEPTH, params: str = "symbolic") -> Diff:
    """Compare two formulas at ``depth``: same unrolled form or not, and where they differ."""
    return diff_analyses(analyze(a, depth, params), analyze(b, depth, params))
