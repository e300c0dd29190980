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
from .confirm_shared import ConfirmationRuns, values_text
from .space import Candidate, SearchSpace
from .training import candidate_backbone

__all__ = ["CONFIRMATIONS", "CONFIRM_TRAIN_KEYS", "confirm", "confirmation_config"]

#: The training settings a confirmation may set apart from the search's (``--confirm-epochs``,
#: ``--confirm-limit-train``): the search only has to rank candidates, so it can train them on
#: a smaller budget than the confirmation that measures the winner.
CONFIRM_TRAIN_KEYS = ("epochs", "limit_train")


def confirmation_config(config, changes: Mapping | None = None):
    """The training configuration of the confirmation's runs: the search's ``config`` on the
    whole training set (no validation split), with ``changes`` (keys of
    :data:`CONFIRM_TRAIN_KEYS`) applied, tested once after its last epoch (the test set gives
    the verdict, not a learning curve)."""
    from ..errors import UsageError

    changes = dict(changes or {})
    unknown = sorted(set(changes) - set(CONFIRM_TRAIN_KEYS))
    if unknown:
        raise UsageError(
            f"the confirmation's training may change {', '.join(CONFIRM_TRAIN_KEYS)}, not {', '.join(unknown)}"
        )
    config = config.replace(val_fraction=0.0, **changes)
    return config.replace(eval_every=config.epochs).validate()


def _candidate_of(space: SearchSpace, record: dict) -> Candidate:
    from .report import exact_value

    choice = next(f for f in space.formulas if f.label == record["formula"])
    values = {
        d.name: exact_value(d, record["params"][d.name])
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
    train_changes: Mapping | None = None,
    objective: str = "val_accuracy",
) -> dict:
    """Retrain the ``k`` best trials and ``baseline`` (a bound Recurrence), ``jobs`` runs at a
    time (the search's local workers), with :func:`confirmation_config` of the search's
    ``config`` and ``train_changes``, compared as ``objective`` (the search's) says; the
    result, JSON-ready."""
    from ..formula import network_factory

    config = confirmation_config(config, train_changes)
    chosen = list(ranked[:k])
    models = []
    build, describe = network_factory(baseline, backbone_kwargs)
    models.append((baseline_label, build, describe))
    for record in chosen:
        cand = _candidate_of(space, record)
        build, describe = network_factory(cand.rec, candidate_backbone(cand, backbone_kwargs))
        models.append((f"trial-{record['number']}", build, describe))
    from ..train.errors import TrainError

    try:
        runs = ConfirmationRuns(models, chosen, baseline_label, config, seeds, out, progress, quiet, jobs)
        result = CONFIRMATIONS[objective](runs)
    except TrainError as exc:
        _refuse_earlier_confirmation(exc, out)
        raise
    return _with_training(result, config, train_changes)


def _with_training(result: dict, config, train_changes: Mapping | None) -> dict:
    """``result`` with what the confirmation trained with (the search's settings and the
    changes asked for) after its ``evaluated_on``."""
    from ..train.loop import RESUME_FREE

    training = {
        "train": {k: v for k, v in config.to_dict().items() if k not in RESUME_FREE and k != "seed"},
        "train_changes": dict(train_changes or {}),
    }
    out = {}
    for key, value in result.items():
        out[key] = value
        if key == "evaluated_on":
            out.update(training)
    return out if "train" in out else {**out, **training}


def _confirm_by_accuracy(runs: ConfirmationRuns) -> dict:
    """Image classification: ``runs.config`` (the full training set, no validation split), test error."""
    from ..train import compare, friedman_test
    from ..train.seed_statistics import mean_sd_text

    result = runs.compared_by(compare)
    table = [[m.errors[i] for m in result.models] for i in range(len(result.seeds))]
    friedman = friedman_test(table) if len(result.seeds) >= 2 else None
    rows = []
    for i, m in enumerate(result.models):
        sd = m.std_error
        row = {
            **runs.candidate_fields(i, m.label),
            "test_error_pct": m.errors,
            "mean_error_pct": m.mean_error,
            "sd_error_pct": sd,
            "error": mean_sd_text(m.errors, 2),
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
        "baseline": runs.baseline_label,
        "evaluated_on": "test set",
        "models": rows,
        "friedman": None if friedman is None else friedman.to_dict(),
        "out_dir": str(runs.out),
        "markdown": _markdown(rows, friedman, result.seeds, runs.config),
        "text": result.to_text(),
    }


#: the search's objective -> how its winners are confirmed on the test set
CONFIRMATIONS: dict[str, Callable[[ConfirmationRuns], dict]] = {
    "val_accuracy": _confirm_by_accuracy,
    "val_loss": confirm_by_loss,
}


#: How a run directory's refusal ends (formulac.train.rundir): advice for ``formulac train``,
#: whose ``--overwrite`` search does not have.
_TRAIN_ADVICE = "pass --overwrite"


def _refuse_earlier_confirmation(exc, out: Path) -> None:
    """A continued search whose confirmation runs exist with other settings (another
    ``--confirm-epochs``, ``--confirm-limit-train``, recipe, ...): a UsageError that says what
    to do in search's terms."""
    from ..errors import UsageError

    message = exc.message
    if _TRAIN_ADVICE not in message:
        return
    found = message[: message.rindex("\n")] if "\n" in message else message.split(";")[0]
    raise UsageError(
        f"{found}\nan earlier confirmation of this search trained with other settings: remove {out} "
        "to confirm again with these, or choose another --out"
    ) from None


def _markdown(rows: list[dict], friedman, seeds, config) -> str:
    from ..train.stats import format_p
    from .report import training_text

    lines = [
        f"Retrained from scratch {training_text(config.epochs, config.limit_train)}, seeds "
        f"{', '.join(map(str, seeds))}; test error (%).",
        "",
        "| model | values | test error (%) | vs baseline | paired t-test p | Holm p |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        values = values_text(r["params"])
        diff = r["difference_to_baseline_pct"]
        t = r.get("paired_t_test") or {}
        lines.append(
            f"| {r['label']} | {values} | {r['error']} | {'' if diff is None else f'{diff:+.2f}'} | "
            f"{format_p(t.get('p_value')) if t else ''} | {format_p(r.get('p_holm')) if t else ''} |"
        )
    if friedman is not None:
        lines += ["", f"- {friedman.describe()} across all {len(rows)} models"]
    return "\n".join(lines) + "\n"
