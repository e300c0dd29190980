"""What a search leaves in its directory: leaderboard.json / .md, best.rec, and the figures
history.png, properties.png (a property against the score, validation accuracy or loss, with
Spearman's rank correlation) and objective.png (the score against one searched symbol).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from ..files import atomic_write
from ..printing import to_rec
from .engine import tally, trial_state
from .metrics import SearchMetric, get_metric
from .objective import outcome, trial_record
from .space import SearchSpace, value_text

__all__ = ["leaderboard", "write_outputs", "best_rec_text", "PLOTTED_PROPERTIES"]

#: Properties drawn in properties.png: (key in the analysis summary, label).
PLOTTED_PROPERTIES = (
    ("rate", "spectral radius"),
    ("first_block_weight", "weight of the step-0 block in x_N"),
)


def _trial_record(t, metric: SearchMetric) -> dict:
    record, result = trial_record(t), outcome(t)
    state = trial_state(t)
    intermediate = t.intermediate_values
    value = t.value if state == "complete" else (intermediate[max(intermediate)] if intermediate else None)
    return {
        "number": t.number,
        "formula": record.get("formula"),
        "params": record.get("params", {}),
        "state": state,
        "reason": result.get("reason"),
        metric.name: value,
        "value": value,
        "epochs": result.get("epochs", max(intermediate) if intermediate else 0),
        "curve": [intermediate[k] for k in sorted(intermediate)],
        "analysis": record.get("analysis"),
        "size": record.get("size"),
        "run_dir": record.get("run_dir") if state in ("complete", "pruned", "failed") else None,
        "retry_of": t.system_attrs.get("failed_trial"),
        "seconds": (t.datetime_complete - t.datetime_start).total_seconds()
        if t.datetime_complete and t.datetime_start
        else None,
    }


def leaderboard(study, space: SearchSpace, settings: dict, total: int) -> dict:
    """The leaderboard (docs/cli.md): every counted trial, best first among the complete ones."""
    metric = get_metric(settings.get("objective", "val_accuracy"))
    t = tally(study.get_trials(deepcopy=False))
    trials = sorted((_trial_record(x, metric) for x in t.finished), key=lambda r: r["number"])
    complete = [r for r in trials if r["state"] == "complete"]
    best = min(complete, key=lambda r: (metric.rank_key(r["value"]), r["number"])) if complete else None
    counts = t.state_counts()
    return {
        "study": study.study_name,
        "objective": metric.name,
        "direction": metric.direction,
        "label": metric.label,
        "selection": "validation split held out from the training set; the test set is used only by the confirmation",
        "trials_requested": total,
        "counts": counts,
        "space": space.signature(),
        "settings": settings,
        "trials": trials,
        "superseded": [
            {
                "number": x.number,
                "reason": outcome(x).get("state") or "worker died or was interrupted",
            }
            for x in t.superseded
        ],
        "best": best,
        "confirmation": None,
    }


def ranking(board: dict) -> list[dict]:
    """Complete trials, best first (ties: the earlier trial)."""
    metric = get_metric(board.get("objective", "val_accuracy"))
    complete = [r for r in board["trials"] if r["state"] == "complete"]
    return sorted(complete, key=lambda r: (metric.rank_key(r["value"]), r["number"]))


def best_rec_text(board: dict, space: SearchSpace, origin: str) -> str | None:
    """``best.rec``: the winning formula with its values bound, under a header saying where it
    came from."""
    best = board["best"]
    if best is None:
        return None
    choice = next(f for f in space.formulas if f.label == best["formula"])
    values = {
        d.name: _exact(d, best["params"][d.name])
        for d in space.symbols
        if d.name in best["params"] and best["formula"] in d.formulas
    }
    rec = choice.rec.bind(**values) if values else choice.rec
    conf = board.get("confirmation")
    lines = [
        f"# best.rec: the best formula of the search {board['study']!r} ({origin})",
        f"# from {choice.path}, trial {best['number']} of {len(board['trials'])}: "
        + (", ".join(f"{k} = {value_text(v)}" for k, v in values.items()) or "no free symbols"),
        f"# {board['label']} {best['value']:.4f} after {best['epochs']} epochs",
    ]
    knobs = {k.name: best["params"].get(k.name) for k in space.knobs}
    if knobs:
        lines.append("# backbone: " + ", ".join(f"{k} = {v}" for k, v in knobs.items()))
    if conf:
        row = next((m for m in conf["models"] if m.get("trial") == best["number"]), None)
        if row:
            lines.append(f"# confirmation: test error {row['error']} (%) over seeds {conf['seeds']}")
    return "\n".join(lines) + "\n\n" + to_rec(rec)


def _exact(dim, number: float):
    """The exact value behind a stored float (the rounded sample, or a finite choice)."""
    import sympy

    if dim.domain.choices is not None:
        return min(dim.domain.choices, key=lambda c: abs(float(c) - number))
    return sympy.Rational(repr(float(number)))


def markdown(board: dict) -> str:
    counts = board["counts"]
    lines = [
        f"# Search {board['study']}",
        "",
        f"{len(board['trials'])} of {board['trials_requested']} trials: {counts['complete']} complete, "
        f"{counts['pruned']} pruned early, {counts['rejected']} rejected by analysis, {counts['failed']} failed. "
        f"Scores are {board['label']} ({'higher' if board['direction'] == 'maximize' else 'lower'} is "
        "better) on data held out from training; the test set is used only by the confirmation.",
        "",
        f"| rank | trial | formula | values | {board['label']} | epochs | stability | spectral radius | state |",
        "|---:|---:|---|---|---:|---:|---|---:|---|",
    ]
    ranked = ranking(board)
    rank = {r["number"]: i + 1 for i, r in enumerate(ranked)}
    order = ranked + [r for r in board["trials"] if r["state"] != "complete"]
    for r in order:
        a = r["analysis"] or {}
        rate = a.get("rate")
        acc = r["value"]
        values = ", ".join(f"{k}={_short(v)}" for k, v in r["params"].items())
        state = r["state"] + (f": {r['reason']}" if r["reason"] and r["state"] != "complete" else "")
        lines.append(
            f"| {rank.get(r['number'], '')} | {r['number']} | {r['formula']} | {values} | "
            f"{'' if acc is None else f'{acc:.4f}'} | {r['epochs']} | {a.get('stability') or '-'} | "
            f"{_short(rate) if rate is not None else '-'} | {state.replace('|', '/')} |"
        )
    conf = board.get("confirmation")
    if conf:
        lines += ["", "## Confirmation (test set)", "", conf["markdown"].strip()]
    return "\n".join(lines) + "\n"


def _short(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def spearman(xs, ys) -> float | None:
    """Spearman's rank correlation, or None with fewer than 3 points or a constant side."""
    if len(xs) < 3:
        return None
    from scipy.stats import spearmanr

    if len(set(xs)) < 2 or len(set(ys)) < 2:
        return None
    rho = spearmanr(xs, ys).statistic
    return None if rho is None or math.isnan(rho) else float(rho)


def _property_value(record: dict, key: str):
    from .properties import PROPERTIES

    a = record.get("analysis")
    if not a:
        return None
    return PROPERTIES[key].value(a)


def write_outputs(out: Path, board: dict, space: SearchSpace, origin: str) -> list[str]:
    """Write every file; returns the names written (figures only when matplotlib imports)."""
    written = []
    for prop, _ in PLOTTED_PROPERTIES:
        pts = [
            (v, r["value"])
            for r in board["trials"]
            if r["state"] == "complete" and (v := _property_value(r, prop)) is not None
        ]
        board.setdefault("correlations", {})[prop] = {
            "spearman": spearman([p[0] for p in pts], [p[1] for p in pts]),
            "points": len(pts),
        }
    best = best_rec_text(board, space, origin)
    if best is not None:
        atomic_write(out / "best.rec", best)
        written.append("best.rec")
    atomic_write(out / "leaderboard.json", json.dumps(board, indent=2) + "\n")
    atomic_write(out / "leaderboard.md", markdown(board))
    written += ["leaderboard.json", "leaderboard.md"]
    written += _figures(out, board, space)
    return written


def _figures(out: Path, board: dict, space: SearchSpace) -> list[str]:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return []
    colours = {"complete": "tab:blue", "pruned": "tab:orange", "failed": "tab:red", "rejected": "tab:gray"}
    written = []

    def save(fig, name):
        fig.tight_layout()
        import io

        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100)
        atomic_write(out / name, buf.getvalue())
        written.append(name)

    trials = board["trials"]
    metric = get_metric(board.get("objective", "val_accuracy"))
    # history: every trial's score in order, and the best so far
    fig = Figure(figsize=(6.4, 3.6))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    best_so_far, running = [], None
    for r in trials:
        if r["state"] == "complete":
            running = r["value"] if running is None else metric.best(running, r["value"])
        best_so_far.append(running)
    for state, colour in colours.items():
        pts = [(r["number"], r["value"]) for r in trials if r["state"] == state and r["value"] is not None]
        if pts:
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=18, color=colour, label=state)
    rejected = [r["number"] for r in trials if r["state"] == "rejected"]
    if rejected:
        ax.scatter(
            rejected,
            [0.0] * len(rejected),
            marker="x",
            color=colours["rejected"],
            label="rejected (untrained)",
        )
    xs = [r["number"] for r, b in zip(trials, best_so_far) if b is not None]
    ax.step(
        xs, [b for b in best_so_far if b is not None], where="post", color="black", lw=1, label="best so far"
    )
    ax.set_xlabel("trial")
    ax.set_ylabel(metric.label)
    ax.grid(alpha=0.3)
    if trials:
        ax.legend(fontsize=7)
    save(fig, "history.png")

    # properties against accuracy
    fig = Figure(figsize=(4.0 * len(PLOTTED_PROPERTIES), 3.6))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(PLOTTED_PROPERTIES))
    for ax, (prop, label) in zip(axes, PLOTTED_PROPERTIES):
        pts = [
            (v, r["value"])
            for r in trials
            if r["state"] == "complete" and (v := _property_value(r, prop)) is not None
        ]
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=18, color=colours["complete"])
        rho = board["correlations"][prop]["spearman"]
        ax.set_title(f"Spearman ρ = {rho:.2f}" if rho is not None else "Spearman ρ: n/a", fontsize=9)
        ax.set_xlabel(label)
        ax.set_ylabel(metric.label)
        ax.grid(alpha=0.3)
    save(fig, "properties.png")

    # accuracy against one searched symbol
    if space.symbols:
        d = space.symbols[0]
        fig = Figure(figsize=(6.4, 3.6))
        FigureCanvasAgg(fig)
        ax = fig.subplots()
        for state, colour in colours.items():
            pts = [
                (r["params"][d.name], r["value"])
                for r in trials
                if r["state"] == state and d.name in r["params"] and r["value"] is not None
            ]
            if pts:
                ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=18, color=colour, label=state)
        rej = [r["params"][d.name] for r in trials if r["state"] == "rejected" and d.name in r["params"]]
        if rej:
            ax.scatter(
                rej, [0.0] * len(rej), marker="x", color=colours["rejected"], label="rejected (untrained)"
            )
        if d.domain.log:
            ax.set_xscale("log")
        ax.set_xlabel(d.name)
        ax.set_ylabel(metric.label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        save(fig, "objective.png")
    return written
