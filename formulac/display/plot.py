"""Figures of the analysis: block weights of several formulas, roots, the unrolled graph.

Every function returns a :class:`matplotlib.figure.Figure` (or draws into the ``ax`` it is
given and returns that axes' figure). Figures are not registered with ``pyplot``: save them with
``fig.savefig("weights.png")``; in Jupyter a figure that is a cell's value is shown once.

matplotlib is the optional extra ``formulac[plot]`` and is imported only when a figure is
drawn; without it the functions raise :class:`~formulac.errors.UsageError`. Without a display
(a server, CI) the ``Agg`` backend is used.

The functions take formulas in any form: a :class:`~formulac.ir.Recurrence`, a
``formulac.Formula``, formula text, a ``.rec`` file as a :class:`pathlib.Path` (a ``str`` is
formula text), or an already computed ``Analysis`` (whose ``depth`` is then used). Weights are plotted with learnable parameters at their initial values;
free symbols must be bound first (``rec.bind(a=-0.25)``, ``--set a=-0.25``).
"""

from __future__ import annotations

import math
import os
import re
import sys
from dataclasses import dataclass
from typing import Any

import sympy

from .. import limits
from ..errors import UsageError
from ..parse import as_recurrence
from ._common import (
    DEFAULT_DEPTH,
    analyses_of,
    analysis_module,
    as_list,
    check_depth,
    label_of,
    labels_for,
)

__all__ = [
    "plot_block_weights",
    "plot_roots",
    "plot_graph",
    "require_matplotlib",
    "DEFAULT_DEPTH",
    "MAX_GRAPH_DEPTH",
]

#: Deeper unrolled graphs are unreadable (and DenseNet-like graphs grow quadratically).
MAX_GRAPH_DEPTH = limits.MAX_GRAPH_DEPTH

MATPLOTLIB_MISSING = "plotting needs matplotlib: pip install 'formulac[plot]'"


# -- matplotlib, imported lazily -------------------------------------------------------------


def require_matplotlib():
    """Import matplotlib (Agg backend without a display) or raise :class:`UsageError`."""
    try:
        import matplotlib
    except ImportError:
        raise UsageError(MATPLOTLIB_MISSING) from None
    if "matplotlib.pyplot" not in sys.modules and not os.environ.get("MPLBACKEND"):
        headless = sys.platform.startswith("linux") and not (
            os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
        )
        if headless:
            matplotlib.use("Agg")
    try:
        # pyplot hooks figures into Jupyter's display machinery (inline backend)
        import matplotlib.pyplot
    except ImportError:  # a backend that cannot start: fall back to files only
        matplotlib.use("Agg", force=True)
    return matplotlib


_FIGURE_CLASS = None


def new_figure(figsize):
    """A matplotlib Figure that is not registered with pyplot and shows itself in Jupyter.

    Not being in pyplot's list keeps it from being drawn twice in a notebook (once by the inline
    backend, once as the cell's value) and from piling up in long sessions; ``_repr_png_`` lets
    IPython show it whatever the backend.
    """
    global _FIGURE_CLASS
    require_matplotlib()
    if _FIGURE_CLASS is None:
        from matplotlib.figure import Figure

        class FormulacFigure(Figure):
            """A Figure with a PNG representation for IPython."""

            def _repr_png_(self):
                import io

                buffer = io.BytesIO()
                self.savefig(buffer, format="png", dpi=100)
                return buffer.getvalue()

        _FIGURE_CLASS = FormulacFigure
    return _FIGURE_CLASS(figsize=figsize)


def _new_axes(ax, figsize, margins=(0.85, 0.25, 0.65, 0.45)):
    """A new figure with one axes (fixed margins, in inches: left, right, bottom, top)."""
    require_matplotlib()
    if ax is not None:
        return ax.figure, ax
    fig = new_figure(figsize)
    set_margins(fig, *margins)
    ax = fig.add_subplot()
    fig._formulac_margins = margins
    return fig, ax


def set_margins(fig, left, right, bottom, top, hspace=None) -> None:
    """Fixed margins in inches (cheaper than a layout engine, and the same on every run)."""
    w, h = fig.get_size_inches()
    kwargs = {}
    if hspace is not None:
        kwargs["hspace"] = hspace
    fig.subplots_adjust(left=left / w, right=1 - right / w, bottom=bottom / h, top=1 - top / h, **kwargs)


# -- numbers -----------------------------------------------------------------------------------


def _number(value: Any, label: str, what: str) -> complex:
    """A SymPy value as a complex number, or a UsageError naming its free symbols."""
    expr = sympy.sympify(value)
    free = sorted(str(s) for s in expr.free_symbols)
    if free:
        names = ", ".join(free)
        raise UsageError(
            f"the {what} of {label} depend on {names}; give {'it' if len(free) == 1 else 'them'} "
            f"a value first (--set {free[0]}=VALUE, or .bind({free[0]}=...))"
        )
    if expr.has(sympy.Indexed):
        raise UsageError(f"the {what} of {label} depend on per-step parameters; analyze with params='init'")
    try:
        return complex(sympy.N(expr, 17))
    except (TypeError, OverflowError, ValueError):
        return complex(math.inf)


def _real(values: list[complex]) -> list[float]:
    return [v.real if abs(v.imag) <= 1e-12 * max(1.0, abs(v)) else math.nan for v in values]


def why_missing(analysis, what: str, limit: int = 110) -> str:
    """A short reason why an analysis has no ``what`` (block weights, roots)."""
    if getattr(analysis, "linear", None) is False:
        return f"not linear in the states, so no {what}"
    notes = [str(note) for note in (getattr(analysis, "notes", None) or [])]
    if not notes:
        return f"no {what}"
    note = notes[0]
    if len(note) > limit:
        note = note[: limit - 3].rstrip() + "..."
    return f"no {what}: {note}"


#: ``block=MAIN_BLOCK``: one line per formula, its block ``F`` (or its first block).
MAIN_BLOCK = "<main>"

_LINESTYLES = ("-", "--", ":", "-.")
_LINE_MARKERS = ("o", "s", "^", "D", "v", "P")


def _main_block(weights: dict) -> str:
    """``F`` unless it never reaches the output (RevNet's F acts only through G), else the first
    block that does."""
    order = (["F"] if "F" in weights else []) + [name for name in weights if name != "F"]
    for name in order:
        values = weights[name]
        if values and any(sympy.sympify(w) != 0 for w in values):
            return name
    return order[0]


def line_style(k: int) -> dict:
    """Colour, line style and marker of the k-th line: distinct for the first 60 lines."""
    return {
        "color": f"C{k % 10}",
        "linestyle": _LINESTYLES[(k // 10) % len(_LINESTYLES)],
        "marker": _LINE_MARKERS[(k // 10) % len(_LINE_MARKERS)],
    }


@dataclass
class WeightSeries:
    label: str
    block: str
    weights: list[float]


def block_weight_series(
    analyses: list, labels: list[str], block: str | None = None
) -> tuple[list[WeightSeries], list[tuple[str, str]]]:
    """(series to draw, [(label, why not drawn)]) for the analyses' block weights."""
    series: list[WeightSeries] = []
    skipped: list[tuple[str, str]] = []
    for label, weights in _present(analyses, labels, "block_weights", "block weights", skipped):
        names = list(weights)
        if block == MAIN_BLOCK:
            names = [_main_block(weights)]
            series_label = label if len(weights) == 1 else f"{label}: {names[0]}"
        elif block is not None:
            if block not in weights:
                raise UsageError(f"{label} has no block {block} (its blocks: {', '.join(names) or 'none'})")
            names = [block]
        for name in names:
            values = weights[name]
            if values is None:
                skipped.append((f"{label}: {name}", "no weights for this block"))
                continue
            nums = _real([_number(w, label, "block weights") for w in values])
            if block == MAIN_BLOCK:
                text = series_label
            else:
                text = label if len(names) == 1 else f"{label}: {name}"
            series.append(WeightSeries(text, name, nums))
    return series, skipped


def _present(analyses: list, labels: list[str], attribute: str, what: str, skipped: list):
    """``(label, value)`` of each analysis whose ``attribute`` is not empty, in order; each
    other one goes to ``skipped`` as ``(label, why it has no what)``."""
    for analysis, label in zip(analyses, labels):
        value = getattr(analysis, attribute)
        if value:
            yield label, value
        else:
            skipped.append((label, why_missing(analysis, what)))


def _nothing_to_plot(what: str, skipped: list[tuple[str, str]]) -> UsageError:
    reasons = "; ".join(f"{label}: {why}" for label, why in skipped)
    return UsageError(f"no {what} to plot ({reasons})")


def _skip_note(fig, skipped: list[tuple[str, str]]) -> None:
    """List what was not drawn under the axes, making room for it on a figure we created."""
    if not skipped:
        return
    import textwrap

    chars = max(40, int(fig.get_size_inches()[0] * 15))
    lines = [
        wrapped
        for label, why in skipped
        for wrapped in textwrap.wrap(f"not drawn: {label} ({why})", chars, subsequent_indent="    ")
    ]
    margins = getattr(fig, "_formulac_margins", None)
    if margins is not None:
        left, right, bottom, top = margins
        w, h = fig.get_size_inches()
        extra = 0.15 * len(lines) + 0.05
        fig.set_size_inches(w, h + extra)
        set_margins(fig, left, right, bottom + extra, top)
    fig.text(0.01, 0.01, "\n".join(lines), fontsize="x-small", color="0.35", ha="left", va="bottom")


def _legend(fig, ax, labels: list[str]) -> None:
    """The legend right of the axes on a figure we created (it covers no data), else inside."""
    margins = getattr(fig, "_formulac_margins", None)
    if margins is None:
        ax.legend(loc="best", fontsize="small")
        return
    left, right, bottom, top = margins
    extra = 0.75 + 0.075 * max((len(label) for label in labels), default=4)
    w, h = fig.get_size_inches()
    fig.set_size_inches(w + extra, h)
    fig._formulac_margins = (left, right + extra, bottom, top)
    set_margins(fig, left, right + extra, bottom, top)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize="small")


# -- block weights -----------------------------------------------------------------------------


def draw_block_weights(items, depth=None, ax=None, labels=None, block=None, log=False):
    """:func:`plot_block_weights`'s figure and the (label, reason) of each item not drawn."""
    check_depth(depth)
    items = as_list(items)
    if not items:
        raise UsageError("nothing to plot: no formulas given")
    labels = labels_for(items, labels)
    analyses = analyses_of(items, depth)
    series, skipped = block_weight_series(analyses, labels, block)
    if not series:
        raise _nothing_to_plot("block weights", skipped)
    fig, ax = _new_axes(ax, (7.0, 4.2))
    depths = sorted({int(a.depth) for a in analyses if a.block_weights})
    longest = max(len(s.weights) for s in series)
    marker = "o" if longest <= 40 else ("." if longest <= 120 else None)
    for k, s in enumerate(series):
        ys = [abs(w) if log else w for w in s.weights]
        if log:
            ys = [y if y > 0 else math.nan for y in ys]
        style = line_style(k)
        if marker is None or marker == ".":
            style["marker"] = marker
        ax.plot(range(len(ys)), ys, markersize=4, linewidth=1.5, label=s.label, **style)
    if log:
        ax.set_yscale("log")
    else:  # the axis includes 0, so a constant weight reads as what it is
        values = [w for s in series for w in s.weights if math.isfinite(w)]
        if values:
            lo, hi = min(0.0, min(values)), max(0.0, max(values))
            span = (hi - lo) or 1.0
            ax.set_ylim(lo - 0.06 * span, hi + 0.06 * span)
    n_text = str(depths[0]) if len(depths) == 1 else "N"
    names = {s.block for s in series}
    if len(names) == 1 and re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", next(iter(names))):
        ax.set_xlabel(f"step $i$ of the block ${next(iter(names))}_{{i}}$")
    else:
        ax.set_xlabel("step $i$ at which the block is applied")
    ax.set_ylabel(
        ("|weight|" if log else "weight") + f" in $x_{{{n_text}}}$" + (" (log scale)" if log else "")
    )
    title = f"Block weights in $x_{{{n_text}}}$"
    if len(depths) > 1:
        title += " (depths " + ", ".join(map(str, depths)) + ")"
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if longest <= 30:
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _legend(fig, ax, [s.label for s in series])
    _skip_note(fig, skipped)
    return fig, skipped


def plot_block_weights(formulas_or_analyses, depth=None, ax=None, labels=None, block=None, log=False):
    """The weight of the block at step ``i`` in ``x_N`` against ``i``, one line per formula.

    ``formulas_or_analyses``: one or several formulas (Recurrence, Formula, ``.rec`` path) or
    analyses. ``depth`` is ``N`` for formulas (default :data:`DEFAULT_DEPTH`). A formula with
    several blocks gives one line per block unless ``block`` names one. ``log`` plots the
    absolute weights on a log scale (decay and growth read as straight lines). Formulas without
    block weights (not linear in the states) are listed under the plot instead of drawn.
    """
    fig, _ = draw_block_weights(formulas_or_analyses, depth, ax, labels, block, log)
    return fig


# -- roots ---------------------------------------------------------------------------------------

_MARKERS = ("o", "s", "D", "^", "v", "P", "X", "<", ">", "h")


def draw_roots(items, ax=None, labels=None):
    """:func:`plot_roots`'s figure and the (label, reason) of each item not drawn."""
    items = as_list(items)
    if not items:
        raise UsageError("nothing to plot: no formulas given")
    labels = labels_for(items, labels)
    analyses = analyses_of(items, 2)
    drawn: list[tuple[str, list[complex], list[int]]] = []
    skipped: list[tuple[str, str]] = []
    for label, roots in _present(analyses, labels, "roots", "characteristic roots", skipped):
        values = [_number(r.value, label, "roots") for r in roots]
        drawn.append((label, values, [int(r.multiplicity) for r in roots]))
    if not drawn:
        raise _nothing_to_plot("characteristic roots", skipped)
    fig, ax = _new_axes(ax, (5.6, 5.4), margins=(0.85, 0.25, 0.65, 0.45))
    t = [2 * math.pi * k / 256 for k in range(257)]
    ax.plot([math.cos(a) for a in t], [math.sin(a) for a in t], color="0.5", linestyle="--", linewidth=1)
    ax.axhline(0, color="0.8", linewidth=0.8, zorder=0)
    ax.axvline(0, color="0.8", linewidth=0.8, zorder=0)
    extent = 1.25
    for k, (label, values, mults) in enumerate(drawn):
        xs = [v.real for v in values]
        ys = [v.imag for v in values]
        finite = [abs(v) for v in values if math.isfinite(abs(v))]
        extent = max(extent, 1.15 * max(finite, default=1.0))
        size = max(40, 160 - 28 * k)  # later formulas smaller, so coincident roots stay visible
        ax.scatter(
            xs,
            ys,
            s=size,
            marker=_MARKERS[k % len(_MARKERS)],
            facecolors="none",
            edgecolors=f"C{k}",
            linewidths=1.8,
            label=label,
            zorder=3,
        )
        for x, y, m in zip(xs, ys, mults):
            if m > 1:
                ax.annotate(
                    rf"$\times{m}$",
                    (x, y),
                    textcoords="offset points",
                    xytext=(7, 6 + 10 * k),
                    fontsize="small",
                    color=f"C{k}",
                )
    ax.set_xlim(-extent, extent)
    ax.set_ylim(-extent, extent)
    ax.set_aspect("equal")
    ax.set_xlabel("real part")
    ax.set_ylabel("imaginary part")
    ax.set_title("Characteristic roots and the unit circle")
    ax.grid(True, alpha=0.3)
    _legend(fig, ax, [label for label, _, _ in drawn])
    margins = getattr(fig, "_formulac_margins", None)
    if margins is not None:  # a square plotting area, so the equal aspect leaves no gaps
        left, right, bottom, top = margins
        h = fig.get_size_inches()[1]
        fig.set_size_inches(left + right + (h - bottom - top), h)
        set_margins(fig, left, right, bottom, top)
    _skip_note(fig, skipped)
    return fig, skipped


def plot_roots(formulas_or_analyses, ax=None, labels=None):
    """The characteristic roots of one or several formulas against the unit circle.

    Roots inside the circle mean the weights of early blocks decay, on it that they stay,
    outside that they grow. A root of multiplicity ``m > 1`` is marked ``×m``.
    """
    fig, _ = draw_roots(formulas_or_analyses, ax, labels)
    return fig


# -- dependency graph ----------------------------------------------------------------------------


def node_kind_step(graph, node) -> tuple[str, str, float]:
    """``(kind, name, step)`` of a node of :func:`formulac.analysis.dependency_graph`'s graph:
    kind is ``state`` (the input is a state) or ``block``."""
    data = graph.nodes[node]
    try:
        kind = "block" if data["kind"] == "block" else "state"
        return kind, str(data[kind]), float(data["step"])
    except KeyError:
        raise UsageError(
            "draw_graph takes the graph of formulac.analysis.dependency_graph: its nodes carry "
            f"kind, step and state or block; {node!r} has {sorted(data)}"
        ) from None


def graph_layout(graph) -> tuple[dict, dict]:
    """Positions layered by step, and a label for every node.

    Step ``s`` occupies the x range ``(s-1, s]``: the blocks applied at step ``s-1`` and the
    states ``*_s`` are spread over it in the order they are computed, so every arrow points to
    the right and the output state computed last sits at the integer ``s``. States have one row
    per state sequence (the output's at y = 0, others below); blocks sit on rows above, a row
    per block output computed at the same point. Repeated outputs of one block at one step are
    primed (``F_2'``).
    """
    import networkx as nx

    try:
        order = list(nx.topological_sort(graph))
    except nx.NetworkXUnfeasible:
        order = list(graph.nodes)
    info = {node: node_kind_step(graph, node) for node in graph.nodes}
    output = graph.graph.get("output")
    output_name = info[output][1] if output in info else None
    states = sorted(
        {name for kind, name, _ in info.values() if kind == "state"}, key=lambda s: (s != output_name, s)
    )
    state_row = {name: -k for k, name in enumerate(states)}

    def slot(node) -> int:
        kind, _, step = info[node]
        return int(step) + 1 if kind == "block" else int(step)

    level: dict = {}
    for node in order:
        preds = [p for p in graph.predecessors(node) if slot(p) == slot(node)]
        level[node] = 1 + max((level[p] for p in preds), default=-1)
    deepest: dict[int, int] = {}
    for node, lv in level.items():
        deepest[slot(node)] = max(deepest.get(slot(node), 0), lv)

    pos: dict = {}
    labels: dict = {}
    primes: dict = {}
    block_rows: dict = {}
    for node in order:
        kind, name, step = info[node]
        s = slot(node)
        x = float(s) if s == 0 else (s - 1) + (level[node] + 1) / (deepest[s] + 1)
        if kind == "state":
            pos[node] = (x, float(state_row[name]))
            labels[node] = "$%s_{%d}$" % (name, int(step))
        else:
            row = block_rows.get((s, level[node]), 0)
            block_rows[(s, level[node])] = row + 1
            pos[node] = (x, 1.0 + row)
            count = primes.get((name, step), 0)
            primes[(name, step)] = count + 1
            labels[node] = "$%s_{%d}%s$" % (name, int(step), "'" * count)
    return pos, labels


def plot_graph(rec, depth: int = 4, ax=None, label: str | None = None):
    """The dependency graph of the network unrolled to ``depth`` steps (states and blocks).

    States ``x_i`` sit on one row per state sequence, block outputs ``F_i`` above them, both
    placed by step from left to right; an arrow is a data dependency. Skip connections that
    jump over steps are drawn as arcs.
    """
    check_depth(depth, MAX_GRAPH_DEPTH)
    rec = as_recurrence(rec)
    graph = analysis_module().dependency_graph(rec, depth)
    fig, ax = _new_axes(ax, (max(6.0, 1.1 * depth + 2.5), 3.8), margins=(0.3, 0.3, 0.6, 0.45))
    draw_graph(graph, ax)
    title = f"Unrolled dependency graph, depth {depth}"
    ax.set_title(f"{label or label_of(rec)}: {title}")
    return fig


def draw_graph(graph, ax) -> None:
    import networkx as nx

    pos, labels = graph_layout(graph)
    info = {node: node_kind_step(graph, node) for node in graph.nodes}
    size = 520
    # states as blue circles, then blocks as orange squares: (fill, edge, marker) per kind
    node_styles = {"state": ("#cfe2f3", "#3d6a99", "o"), "block": ("#fde9c9", "#b7791f", "s")}
    for kind, (fill, edge, marker) in node_styles.items():
        nx.draw_networkx_nodes(
            graph,
            pos,
            nodelist=[v for v in graph.nodes if info[v][0] == kind],
            node_color=fill,
            edgecolors=edge,
            node_size=size,
            node_shape=marker,
            ax=ax,
        )
    straight, arcs = [], []
    for u, v in graph.edges:
        (x0, y0), (x1, y1) = pos[u], pos[v]
        (arcs if (y0 == y1 and abs(x1 - x0) > 1.0 + 1e-9) else straight).append((u, v))
    common = dict(ax=ax, node_size=size, arrows=True, arrowstyle="-|>", arrowsize=10, width=1.0)
    nx.draw_networkx_edges(graph, pos, edgelist=straight, edge_color="0.35", **common)
    if arcs:
        # skip connections over whole steps: arcs below the row, so they cross no block
        nx.draw_networkx_edges(
            graph, pos, edgelist=arcs, edge_color="0.55", connectionstyle="arc3,rad=0.3", **common
        )
    nx.draw_networkx_labels(graph, pos, labels=labels, font_size=9, ax=ax)
    xs = [p[0] for p in pos.values()] or [0.0]
    ys = [p[1] for p in pos.values()] or [0.0]
    sag = max((abs(pos[v][0] - pos[u][0]) for u, v in arcs), default=0.0) * 0.15
    ax.set_xlim(min(xs) - 0.5, max(xs) + 0.5)
    ax.set_ylim(min(ys) - 0.7 - sag, max(ys) + 0.7)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("step")
    ax.tick_params(left=False, labelleft=False, bottom=True, labelbottom=True)
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
