"""What every confirmation of a search shares, whatever it measures (:data:`.confirm.CONFIRMATIONS`):
the runs it retrains (:class:`ConfirmationRuns`), the fields of a result's row that name its
model, and the pieces of its table in report.md (values, p-values, one column per seed)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ConfirmationRuns", "p_text", "seed_table_head", "short_value", "values_text"]


@dataclass(frozen=True)
class ConfirmationRuns:
    """The models to retrain, the baseline first and then one per ``chosen`` trial record, with
    ``config`` and every seed, into ``out``; ``jobs`` runs at a time."""

    models: list
    chosen: Sequence[dict]
    baseline_label: str
    config: Any
    seeds: Sequence[int]
    out: Path
    progress: bool
    quiet: bool
    jobs: int

    def candidate_fields(self, i: int, label: str) -> dict:
        """The fields that name row ``i`` (model ``label``): its trial, formula and values;
        row 0 is the baseline, which has no trial and no values."""
        trial = self.chosen[i - 1] if i else None
        return {
            "label": label,
            "trial": trial["number"] if trial else None,
            "formula": trial["formula"] if trial else self.baseline_label,
            "params": trial["params"] if trial else {},
        }

    def compared_by(self, comparison: Callable[..., Any], **options) -> Any:
        """What ``comparison`` (:func:`formulac.train.compare`, :func:`~formulac.train.compare_language`)
        returns once it has trained these runs, given ``options`` besides."""
        return comparison(
            self.models,
            self.config,
            list(self.seeds),
            self.out,
            progress=self.progress,
            quiet=self.quiet,
            jobs=self.jobs,
            **options,
        )


def short_value(v) -> str:
    """A searched value as the tables show it: four significant digits for a float."""
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def values_text(params: dict) -> str:
    """``a=0.25, depth=20``: a candidate's searched values."""
    return ", ".join(f"{k}={short_value(v)}" for k, v in params.items())


def p_text(p) -> str:
    """A p-value as compare prints it; n/a where the test was undefined (None, or "nan" in JSON)."""
    from ..train.stats import format_p

    return format_p(p) if isinstance(p, (int, float)) and math.isfinite(p) else "n/a"


def seed_table_head(seeds: Sequence[int], after: Sequence[str]) -> list[str]:
    """The head of a Markdown table: ``model | values``, one column per seed, then ``after``
    (right-aligned numbers)."""
    return [
        "| model | values | " + " | ".join(f"seed {s}" for s in seeds) + " | " + " | ".join(after) + " |",
        "|---|---|" + "---:|" * (len(seeds) + len(after)),
    ]
