"""What a search leaves in its directory: leaderboard.json / .md, best.rec, the figures
history.png, properties.png (a property against the score, validation accuracy or loss, with
Spearman's rank correlation) and objective.png (the score against one searched symbol), and
report.md (one page: what was searched, the leaderboard, the figures, the confirmation).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from ..files import atomic_write
from ..printing import to_rec
from . import confirm_loss
from .confirm_shared import p_text, seed_table_head, short_value, values_text
from .engine import tally, trial_state
from .metrics import SearchMetric, get_metric
from .objective import outcome, trial_record
from .space import SearchSpace, value_text

__all__ = [
    "leaderboard",
    "write_outputs",
    "best_rec_text",
    "report_markdown",
    "training_text",
    "PLOTTED_PROPERTIES",
]

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
        d.name: exact_value(d, best["params"][d.name])
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
            confirmed = row.get("confirmed") or f"test error {row['error']} (%)"
            lines.append(f"# confirmation: {confirmed} over seeds {conf['seeds']}")
    return "\n".join(lines) + "\n\n" + to_rec(rec)


def exact_value(dim, number: float):
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
        *_ranking_table(board),
    ]
    conf = board.get("confirmation")
    if conf:
        lines += ["", "## Confirmation (test set)", "", conf["markdown"].strip()]
    return "\n".join(lines) + "\n"


def _ranking_table(board: dict) -> list[str]:
    """The complete trials best first, then the others in order, as Markdown table lines."""
    lines = [
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
        values = values_text(r["params"])
        state = r["state"] + (f": {r['reason']}" if r["reason"] and r["state"] != "complete" else "")
        lines.append(
            f"| {rank.get(r['number'], '')} | {r['number']} | {r['formula']} | {values} | "
            f"{'' if acc is None else f'{acc:.4f}'} | {r['epochs']} | {a.get('stability') or '-'} | "
            f"{short_value(rate) if rate is not None else '-'} | {state.replace('|', '/')} |"
        )
    return lines


#: The figures report.md shows, with what each one says.
REPORT_FIGURES = (
    ("history.png", "the score of every trial in order (rejected ones at 0), and the best so far"),
    ("properties.png", "properties from the analysis against the score, with Spearman's rank correlation"),
    ("objective.png", "the score against the searched symbol"),
)


def report_markdown(board: dict, figures: list[str] = ()) -> str:
    """``report.md``: one page with what was searched, the leaderboard, the ``figures`` (file
    names in the same directory) and the confirmation on the test set."""
    counts = board["counts"]
    space = board.get("space") or {}
    settings = board.get("settings") or {}
    train = settings.get("train") or {}
    domains = [f"`{name}` {_domain_text(d)}" for name, d in (space.get("symbols") or {}).items()]
    domains += [f"`{name}` in {{{', '.join(map(str, c))}}}" for name, c in (space.get("knobs") or {}).items()]
    formulas = ", ".join(
        f"`{f['formula'].strip().splitlines()[-1]}` ({f['label']})" for f in space.get("formulas", [])
    )
    require = ", ".join(f"`{q}`" for q in settings.get("require") or []) or "none"
    training = (
        f"{train.get('data')}, {train.get('recipe')} recipe, up to {train.get('epochs')} epochs, "
        f"validation split {train.get('val_fraction')} of the training set"
        if train
        else f"the objective {settings.get('trainer')}"
    )
    lines = [
        f"# Search report: {board['study']}",
        "",
        f"- **Searched**: {formulas or 'the files'}"
        + (f" over {', '.join(domains)}" if domains else "")
        + f" on {_backbone_text(settings.get('backbone') or {})}; {training}.",
        f"- **Analysis first**: candidates failing {require} were rejected untrained; pruner "
        f"{settings.get('pruner')}.",
        f"- **Trials**: {len(board['trials'])} of {board['trials_requested']}: {counts['complete']} complete, "
        f"{counts['pruned']} pruned early, {counts['rejected']} rejected by analysis, {counts['failed']} failed.",
    ]
    best = board.get("best")
    if best is not None:
        values = ", ".join(f"{k} = {short_value(v)}" for k, v in best["params"].items())
        lines.append(
            f"- **Best**: trial {best['number']} ({best['formula']}{': ' + values if values else ''}), "
            f"{board['label']} {best['value']:.4f} after {best['epochs']} epochs: `best.rec`."
        )
    lines += ["", "## Leaderboard", "", *_ranking_table(board)]
    shown = [(name, what) for name, what in REPORT_FIGURES if name in figures]
    if shown:
        lines += ["", "## Figures", ""]
        for name, what in shown:
            lines += [f"![{name}]({name})", "", f"*{name}*: {what}.", ""]
        lines.pop()
    conf = board.get("confirmation")
    lines += ["", "## Confirmation (test set)", ""]
    if conf:
        lines += _CONFIRMATION_LINES.get(conf.get("objective"), _confirmation_lines)(conf)
    else:
        lines.append("No confirmation was run (`--confirm K` runs one).")
    return "\n".join(lines) + "\n"


def _domain_text(domain: dict) -> str:
    if "choices" in domain:
        return "in {" + ", ".join(map(str, domain["choices"])) + "}"
    return f"in [{domain['low']}, {domain['high']}]" + (" (log scale)" if domain.get("log") else "")


def _backbone_text(backbone: dict) -> str:
    name = backbone.get("backbone", "cifar-resnet")
    options = ", ".join(f"{k} {v}" for k, v in backbone.items() if k != "backbone")
    return f"{name}" + (f" ({options})" if options else "")


def training_text(epochs: int, limit_train: int | None) -> str:
    """How the confirmation trained, in words: "on the full training set for 4 epochs"."""
    where = "the full training set" if limit_train is None else f"the first {limit_train} training examples"
    return f"on {where} for {epochs} epoch{'s' if epochs != 1 else ''}"


def _confirmation_lines(conf: dict) -> list[str]:
    """Test accuracy per seed and model, the paired tests against the baseline and the verdicts
    that ``compare`` wrote (its ``comparison.json``, when it is still there)."""
    seeds = conf["seeds"]
    train = conf.get("train")  # absent in leaderboards written before it was recorded
    how = training_text(train["epochs"], train.get("limit_train")) if train else "on the full training set"
    lines = [
        f"Retrained from scratch {how} with seeds {', '.join(map(str, seeds))}; "
        f"test accuracy (%) against the baseline {conf['baseline']}.",
        "",
        *seed_table_head(seeds, ["mean ± sd", "vs baseline", "paired t-test p", "Holm p"]),
    ]
    for m in conf["models"]:
        accuracies = [100.0 - e for e in m["test_error_pct"]]
        sd = m.get("sd_error_pct")
        mean = 100.0 - m["mean_error_pct"]
        diff = m.get("difference_to_baseline_pct")
        t = m.get("paired_t_test") or {}
        values = values_text(m["params"])
        lines.append(
            f"| {m['label']} | {values} | "
            + " | ".join(f"{a:.2f}" for a in accuracies)
            + f" | {mean:.2f}{f' ± {sd:.2f}' if sd is not None else ''} | "
            # the difference in accuracy: minus the difference in error
            + f"{'' if diff is None else f'{0.0 - diff:+.2f}'} | "
            f"{p_text(t.get('p_value')) if t else ''} | {p_text(m.get('p_holm')) if t else ''} |"
        )
    notes = []
    if conf.get("friedman") and len(conf["models"]) > 2:  # with two, the paired t-test says it
        notes.append(_friedman_text(conf["friedman"], len(conf["models"])))
    notes += _verdicts(conf)
    return lines + ([""] + [f"- {n}" for n in notes] if notes else [])


#: a confirmation's objective -> its lines in report.md (test accuracy: _confirmation_lines)
_CONFIRMATION_LINES = {confirm_loss.OBJECTIVE: confirm_loss.report_lines}


def _friedman_text(friedman: dict, models: int) -> str:
    return f"Friedman test across all {models} models: p = {p_text(friedman.get('p_value'))}."


def _verdicts(conf: dict) -> list[str]:
    path = Path(conf.get("out_dir") or "") / "comparison.json"
    try:
        return list(json.loads(path.read_text()).get("verdicts") or [])
    except (OSError, ValueError):
        return []


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
    atomic_write(out / "report.md", report_markdown(board, written))
    written.append("report.md")
    return written


_STATE_COLOURS = {"complete": "tab:blue", "pruned": "tab:orange", "failed": "tab:red", "rejected": "tab:gray"}


def _figures(out: Path, board: dict, space: SearchSpace) -> list[str]:
    """Write history.png, properties.png and (with a searched symbol) objective.png; the names
    written (none without matplotlib)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return []
    written = []

    def figure(width: float, columns: int | None = None):
        # one axes, or a row of ``columns`` axes
        fig = Figure(figsize=(width, 3.6))
        FigureCanvasAgg(fig)
        return fig, fig.subplots() if columns is None else fig.subplots(1, columns)

    def save(fig, name):
        fig.tight_layout()
        import io

        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100)
        atomic_write(out / name, buf.getvalue())
        written.append(name)

    trials = board["trials"]
    metric = get_metric(board.get("objective", "val_accuracy"))
    fig, ax = figure(6.4)
    _draw_history(ax, trials, metric)
    save(fig, "history.png")
    fig, axes = figure(4.0 * len(PLOTTED_PROPERTIES), len(PLOTTED_PROPERTIES))
    _draw_properties(axes, trials, board["correlations"], metric)
    save(fig, "properties.png")
    if space.symbols:
        fig, ax = figure(6.4)
        _draw_symbol(ax, trials, space.symbols[0], metric)
        save(fig, "objective.png")
    return written


def _scatter_states(ax, trials: list[dict], x_of) -> None:
    """Each trial's score at ``x_of(trial)`` coloured by its state, rejected (untrained) ones as
    crosses at 0; trials whose ``x_of`` is None are left out."""
    for state, colour in _STATE_COLOURS.items():
        pts = [
            (x, r["value"])
            for r in trials
            if r["state"] == state and r["value"] is not None and (x := x_of(r)) is not None
        ]
        if pts:
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=18, color=colour, label=state)
    rejected = [x for r in trials if r["state"] == "rejected" and (x := x_of(r)) is not None]
    if rejected:
        ax.scatter(
            rejected,
            [0.0] * len(rejected),
            marker="x",
            color=_STATE_COLOURS["rejected"],
            label="rejected (untrained)",
        )


def _draw_history(ax, trials: list[dict], metric) -> None:
    """Every trial's score in order, and the best so far."""
    best_so_far, running = [], None
    for r in trials:
        if r["state"] == "complete":
            running = r["value"] if running is None else metric.best(running, r["value"])
        best_so_far.append(running)
    _scatter_states(ax, trials, lambda r: r["number"])
    xs = [r["number"] for r, b in zip(trials, best_so_far) if b is not None]
    ax.step(
        xs, [b for b in best_so_far if b is not None], where="post", color="black", lw=1, label="best so far"
    )
    ax.set_xlabel("trial")
    ax.set_ylabel(metric.label)
    ax.grid(alpha=0.3)
    if trials:
        ax.legend(fontsize=7)


def _draw_properties(axes, trials: list[dict], correlations: dict, metric) -> None:
    """Each plotted property against the score of the complete trials, with Spearman's rho."""
    for ax, (prop, label) in zip(axes, PLOTTED_PROPERTIES):
        pts = [
            (v, r["value"])
            for r in trials
            if r["state"] == "complete" and (v := _property_value(r, prop)) is not None
        ]
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=18, color=_STATE_COLOURS["complete"])
        rho = correlations[prop]["spearman"]
        ax.set_title(f"Spearman ρ = {rho:.2f}" if rho is not None else "Spearman ρ: n/a", fontsize=9)
        ax.set_xlabel(label)
        ax.set_ylabel(metric.label)
        ax.grid(alpha=0.3)


def _draw_symbol(ax, trials: list[dict], symbol, metric) -> None:
    """The score against the value of one searched symbol."""
    _scatter_states(ax, trials, lambda r: r["params"].get(symbol.name))
    if symbol.domain.log:
        ax.set_xscale("log")
    ax.set_xlabel(symbol.name)
    ax.set_ylabel(metric.label)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
