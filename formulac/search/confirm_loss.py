"""Confirmation of a search by loss (language models on ``text:`` data): the best candidates
and the baseline retrained from scratch with several seeds on the corpus's training part and
compared by their final loss on its test part (lower is better), through
:func:`~formulac.train.compare_language` (paired by seed: differences with confidence intervals,
t-tests with Holm's correction, Wilcoxon; Friedman across all)."""

from __future__ import annotations

import math

from .confirm_shared import ConfirmationRuns, p_text, seed_table_head, values_text

__all__ = ["confirm_by_loss", "report_lines"]

OBJECTIVE = "test_loss"


def confirm_by_loss(runs: ConfirmationRuns) -> dict:
    """Train the ``runs`` with every seed and compare them by test loss; the result, JSON-ready."""
    from ..train import compare_language, friedman_test
    from ..train.seed_statistics import mean, mean_sd_text, sample_sd

    result = runs.compared_by(compare_language, split="test")
    by_label = {pw["model"]: pw for pw in result.pairwise}
    table = [[m.test_loss[i] for m in result.models] for i in range(len(result.seeds))]
    friedman = friedman_test(table) if len(result.seeds) >= 2 and len(result.models) > 2 else None
    base = mean(result.models[0].test_loss)
    rows = []
    for i, m in enumerate(result.models):
        sd = sample_sd(m.test_loss)
        loss = mean_sd_text(m.test_loss, 4)
        row = {
            **runs.candidate_fields(i, m.label),
            "test_loss": m.test_loss,
            "mean_test_loss": mean(m.test_loss),
            "sd_test_loss": sd,
            "loss": loss,
            "confirmed": f"test loss {loss} (nats per token)",
            "difference_to_baseline": mean(m.test_loss) - base if i else None,
            "val_loss": m.val_loss,
            "parameters": m.parameters,
        }
        if i:
            pw = by_label[m.label]
            row["paired_t_test"] = pw["t_test"]
            row["wilcoxon"] = pw["wilcoxon"]
            row["p_holm"] = pw.get("p_holm")
        rows.append(row)
    conf = {
        "objective": OBJECTIVE,
        "direction": "minimize",
        "seeds": list(result.seeds),
        "baseline": runs.baseline_label,
        "evaluated_on": "test split of the corpus",
        "models": rows,
        "friedman": None if friedman is None else friedman.to_dict(),
        "verdicts": result.verdicts,
        "out_dir": str(runs.out),
        "text": result.to_text(),
    }
    conf["markdown"] = "\n".join(report_lines(conf)) + "\n"
    return conf


def report_lines(conf: dict) -> list[str]:
    """Markdown: test loss per seed and model, the paired tests against the baseline, the
    Friedman test and the verdicts."""
    seeds = conf["seeds"]
    lines = [
        f"Retrained from scratch on the corpus's training part with seeds {', '.join(map(str, seeds))}; "
        f"test loss (nats per token, lower is better) against the baseline {conf['baseline']}.",
        "",
        *seed_table_head(
            seeds, ["mean ± sd", "vs baseline", "95% CI", "paired t-test p", "Holm p", "Wilcoxon p"]
        ),
    ]
    for m in conf["models"]:
        diff = m.get("difference_to_baseline")
        t = m.get("paired_t_test") or {}
        extra = t.get("extra") or {}
        lo, hi = extra.get("ci_low"), extra.get("ci_high")
        ci = (
            f"[{lo:+.4f}, {hi:+.4f}]" if isinstance(lo, float) and math.isfinite(lo) else ("n/a" if t else "")
        )
        lines.append(
            f"| {m['label']} | {values_text(m['params'])} | "
            + " | ".join(f"{v:.4f}" for v in m["test_loss"])
            + f" | {m['loss']} | {'' if diff is None else f'{diff:+.4f}'} | {ci} | "
            f"{p_text(t.get('p_value')) if t else ''} | {p_text(m.get('p_holm')) if t else ''} | "
            f"{p_text((m.get('wilcoxon') or {}).get('p_value')) if t else ''} |"
        )
    notes = []
    if conf.get("friedman"):
        notes.append(
            f"Friedman test across all {len(conf['models'])} models: p = {p_text(conf['friedman'].get('p_value'))}."
        )
    notes += conf.get("verdicts") or []
    return lines + ([""] + [f"- {n}" for n in notes] if notes else [])
