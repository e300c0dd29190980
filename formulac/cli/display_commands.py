"""``formulac plot`` and ``formulac report``: figures and Markdown reports (needs matplotlib)."""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import UsageError
from .common import add_set_argument, formula_command, load_all_bound, positive_int

__all__ = ["register"]

_FIGURE_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg")


def register(subparsers) -> None:
    p = formula_command(
        subparsers,
        "plot",
        _plot,
        help="draw block weights, characteristic roots or the unrolled graph",
        description=(
            "Draw one figure for one or several formulas: the weight of the block at step i in "
            "x_N against i (--kind weights, one line per formula), the characteristic roots "
            "against the unit circle (--kind roots), or the dependency graph of the network "
            "unrolled to --depth steps (--kind graph, one panel per formula). Learnable "
            "parameters are taken at their initial values."
        ),
        several=True,
    )
    p.add_argument(
        "-o", "--output", required=True, metavar="FIG", help="figure file to write (.png, .pdf, .svg)"
    )
    p.add_argument(
        "--kind",
        choices=("weights", "roots", "graph"),
        default="weights",
        help="what to draw (default: weights)",
    )
    p.add_argument(
        "--depth",
        type=positive_int,
        default=None,
        metavar="N",
        help="unroll to x_N (default: 20 for weights, 4 for graph)",
    )
    add_set_argument(p)
    p.add_argument("--block", metavar="NAME", help="plot only this block's weights (weights)")
    p.add_argument("--log", action="store_true", help="absolute weights on a log scale (weights)")
    p.add_argument(
        "--label",
        dest="labels",
        action="append",
        metavar="TEXT",
        help="legend label, once per FILE in order (default: the file names)",
    )

    r = formula_command(
        subparsers,
        "report",
        _report,
        help="write a Markdown report with LaTeX formulas, weight tables and figures",
        description=(
            "Write DIR/report.md: for every formula its LaTeX, the unrolled expansion at a small "
            "depth, the block-weight table at --depth, roots, stability and consistency, with "
            "PNG figures next to it and one figure comparing all formulas' block weights."
        ),
        several=True,
    )
    r.add_argument("-o", "--output", required=True, metavar="DIR", help="directory for report.md and figures")
    r.add_argument("--depth", type=positive_int, default=None, metavar="N", help="analyse x_N (default: 10)")
    r.add_argument(
        "--steps",
        type=positive_int,
        default=None,
        metavar="K",
        help="depth of the unrolled expansion shown (default: 3)",
    )
    add_set_argument(r)


# -- argument checks -------------------------------------------------------------------------


def _check_figure_path(path: str) -> Path:
    out = Path(path)
    if out.is_dir():
        raise UsageError(f"cannot write {path}: it is a directory")
    if out.suffix.lower() not in _FIGURE_SUFFIXES:
        raise UsageError(
            f"cannot write {path}: the figure format comes from the extension ({', '.join(_FIGURE_SUFFIXES)})"
        )
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"cannot write {path}: directory {parent} does not exist")
    return out


def _labels(args, files: list[str]):
    if not args.labels:
        return None
    if len(args.labels) != len(files):
        raise UsageError(f"--label given {len(args.labels)} times for {len(files)} files")
    return args.labels


# -- handlers ----------------------------------------------------------------------------------


def _plot(args) -> int:
    from ..display import plot

    out = _check_figure_path(args.output)
    if args.kind != "weights" and (args.block or args.log):
        raise UsageError("--block and --log apply to --kind weights only")
    plot.require_matplotlib()
    recs = load_all_bound(args.files, args.bindings)
    labels = _labels(args, args.files) or [Path(f).stem for f in args.files]
    skipped: list = []
    if args.kind == "weights":
        fig, skipped = plot.draw_block_weights(
            recs, args.depth, labels=labels, block=args.block, log=args.log
        )
    elif args.kind == "roots":
        fig, skipped = plot.draw_roots(recs, labels=labels)
    else:
        depth = args.depth or 4
        plot.check_depth(depth, plot.MAX_GRAPH_DEPTH)
        fig = _graph_panels(recs, labels, depth)
    for label, why in skipped:
        print(f"formulac: note: {label} not drawn: {why}", file=sys.stderr)
    try:
        fig.savefig(out, dpi=120)
    except OSError as exc:
        raise UsageError(f"cannot write {args.output}: {exc.strerror or exc}") from None
    print(f"wrote {out}")
    return 0


def _graph_panels(recs: list, labels: list[str], depth: int):
    from ..analysis import dependency_graph
    from ..display import plot

    width = max(6.0, 1.1 * depth + 2.5)
    fig = plot.new_figure((width, 3.6 * len(recs)))
    plot.set_margins(fig, 0.3, 0.3, 0.6, 0.45, hspace=0.9 / 3.6)
    axes = fig.subplots(len(recs), 1, squeeze=False)[:, 0]
    for ax, rec, label in zip(axes, recs, labels):
        plot.draw_graph(dependency_graph(rec, depth), ax)
        ax.set_title(f"{label}: unrolled dependency graph, depth {depth}")
    return fig


def _report(args) -> int:
    from ..display import report

    recs = load_all_bound(args.files, args.bindings)
    path = report.write_report(
        recs,
        args.output,
        depth=args.depth or report.DEFAULT_DEPTH,
        unroll_steps=args.steps or report.UNROLL_STEPS,
        labels=[Path(f).stem for f in args.files],
    )
    print(f"wrote {path}")
    return 0
