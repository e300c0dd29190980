"""Confirmation: the K best candidates and the baseline, retrained from scratch with S seeds on
the full training set and evaluated on the test set, through ``formulac compare`` (paired
t-test per candidate against the baseline with Holm's correction), plus the Friedman test
across all of them. What is compared follows the search's objective (:data:`CONFIRMATIONS`):
test accuracy for ``val_accuracy`` (here), test loss for ``val_loss`` (:mod:`.confirm_loss`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from .confirm_loss import confirm_by_loss
from .space import Candidate, SearchSpace
from .training import candidate_backbone

__all__ = ["CONFIRMATIONS", "confirm"]


def _candidate_of(space: SearchSpace, record: dict) -> Candidate:
    from .report import _exact

    choice = next(f for f in space.formulas if f.label == record["formula"])
    values = {
        d.name: _exact(d, record["params"][d.name])
        for d in space.symbols
        if record["formula"] in d.formulas and d.name in record["params"]
    }
    knobs = {k.name: record["params"][k.name] for k in space.knobs if k.name in record["params"]}
    rec = choice.rec.bind(**values) if values else choice.rec
    return Candidate(choice.label, choice.path, rec, values, knobs)


def confirm(
    space: SearchSpace,
    ranked: Sequence[dict],
    k: int,
    seeds: Sequence[int],
    baseline,
    baseline_label: str,
    config,
    backbone_kwargs: Mapping,
    out: Path,
    progress: bool = False,
    quiet: bool = True,
    jobs: int = 1,
    objective: str = "val_accuracy",
) -> dict:
    """Retrain the ``k`` best trials and ``baseline`` (a bound Recurrence), ``jobs`` runs at a
    time (the search's local workers), compared as ``objective`` (the search's) says; the
    result, JSON-ready."""
    from ..formula import network_factory

    chosen = list(ranked[:k])
    models = []
    build, describe = network_factory(baseline, backbone_kwargs)
    models.append((baseline_label, build, describe))
    for record in chosen:
        cand = _candidate_of(space, record)
        build, describe = network_factory(cand.rec, candidate_backbone(cand, backbone_kwargs))
        models.append((f"trial-{record['number']}", build, describe))
    return CONFIRMATIONS[objective](
        models, chosen, baseline_label, config, seeds, out, progress=progress, quiet=quiet, jobs=jobs
    )


def _confirm_by_accuracy(
    models: list,
    chosen: Sequence[dict],
    baseline_label: str,
    config,
    seeds: Sequence[int],
    out: Path,
    *,
    progress: bool,
    quiet: bool,
    jobs: int,
) -> dict:
    """Image classification: the full training set (no validation split), test error."""
    from ..train import compare, friedman_test

    config = config.replace(val_fraction=0.0)  # the full training set; the test set evaluates
    result = compare(models, config, list(seeds), out, progress=progress, quiet=quiet, jobs=jobs)
    table = [[m.errors[i] for m in result.models] for i in range(len(result.seeds))]
    friedman = friedman_test(table) if len(result.seeds) >= 2 else None
    rows = []
    for i, m in enumerate(result.models):
        sd = m.std_error
        row = {
            "label": m.label,
            "trial": None if i == 0 else chosen[i - 1]["number"],
            "formula": baseline_label if i == 0 else chosen[i - 1]["formula"],
            "params": {} if i == 0 else chosen[i - 1]["params"],
            "test_error_pct": m.errors,
            "mean_error_pct": m.mean_error,
            "sd_error_pct": sd,
            "error": f"{m.mean_error:.2f} ± {sd:.2f}" if sd is not None else f"{m.mean_error:.2f}",
            "difference_to_baseline_pct": None if i == 0 else m.mean_error - result.models[0].mean_error,
            "parameters": m.parameters,
        }
        if i:
            pw = result.pairwise[i - 1]
            row["paired_t_test"] = pw["t_test"]
            row["p_holm"] = pw.get("p_holm")
        rows.append(row)
    return {
        "seeds": list(result.seeds),
        "baseline": baseline_label,
        "evaluated_on": "test set",
        "models": rows,
        "friedman": None if friedman is None else friedman.to_dict(),
        "out_dir": str(out),
        "markdown": _markdown(rows, friedman, result.seeds),
        "text": result.to_text(),
    }


#: the search's objective -> how its winners are confirmed on the test set
CONFIRMATIONS: dict[str, Callable[..., dict]] = {
    "val_accuracy": _confirm_by_accuracy,
    "val_loss": confirm_by_loss,
}


def _markdown(rows: list[dict], friedman, seeds) -> str:
    from ..train.stats import format_p

    lines = [
        f"Retrained from scratch on the full training set, seeds {', '.join(map(str, seeds))}; test error (%).",
        "",
        "| model | values | test error (%) | vs baseline | paired t-test p | Holm p |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        values = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r["params"].items()
        )
        diff = r["difference_to_baseline_pct"]
        t = r.get("paired_t_test") or {}
        lines.append(
            f"| {r['label']} | {values} | {r['error']} | {'' if diff is None else f'{diff:+.2f}'} | "
            f"{format_p(t.get('p_value')) if t else ''} | {format_p(r.get('p_holm')) if t else ''} |"
        )
    if friedman is not None:
        lines += ["", f"- {friedman.describe()} across all {len(rows)} models"]
    return "\n".join(lines) + "\n"
