"""What a search optimises: a registry of the scores a trial can report.

``val_accuracy`` (image classification, higher is better) and ``val_loss`` (language models,
the mean next-token cross-entropy on the validation windows, lower is better). The study's
direction, the pruner's comparisons, the leaderboard's order and its labels all come from here.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UsageError

__all__ = ["METRICS", "SearchMetric", "default_metric", "get_metric"]


@dataclass(frozen=True)
class SearchMetric:
    """A score: its name (the leaderboard's ``objective``), Optuna's ``direction``, the key of
    a training run's metrics line and summary (``record_key``, ``final_<record_key>``) and
    the words for it."""

    name: str
    direction: str  # "maximize" | "minimize"
    record_key: str
    label: str

    def rank_key(self, value: float) -> float:
        """Sorts best first."""
        return -value if self.direction == "maximize" else value

    def best(self, a: float, b: float) -> float:
        return max(a, b) if self.direction == "maximize" else min(a, b)


METRICS: dict[str, SearchMetric] = {
    "val_accuracy": SearchMetric("val_accuracy", "maximize", "val_acc", "validation accuracy"),
    "val_loss": SearchMetric("val_loss", "minimize", "val_loss", "validation loss"),
}


def get_metric(name: str) -> SearchMetric:
    try:
        return METRICS[name]
    except KeyError:
        raise UsageError(f"unknown --objective {name!r}; choose one of: {', '.join(METRICS)}") from None


def default_metric(data: str | None) -> SearchMetric:
    """``val_loss`` for text corpora (``text:...``), ``val_accuracy`` otherwise."""
    text = data is not None and data.strip().lower().startswith("text:")
    return METRICS["val_loss" if text else "val_accuracy"]
