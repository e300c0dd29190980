"""What a run optimises, chosen by its data: a registry of training objectives.

``classification`` (image data sets) trains with :func:`~formulac.train.loop.train` and ranks by
accuracy (higher is better); ``language`` (``text:`` data) trains with
:func:`~formulac.train.language.train_language` and ranks by validation loss (lower is better).
A new objective is one entry of :data:`OBJECTIVES`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .compare import compare
from .compare_language import compare_language
from .language import train_language
from .loop import train
from .text import is_text_data

__all__ = ["OBJECTIVES", "Objective", "objective_for"]


@dataclass(frozen=True)
class Objective:
    """One kind of training: its trainer, its comparison, the metric a run's summary reports
    (``final_<metric>``) and whether lower or higher is better (``direction``)."""

    name: str
    applies: Callable[[str], bool]  # does the objective train on this --data?
    train: Callable[..., dict]
    compare: Callable[..., object]
    metric: str  # the summary's key after "final_" on the validation split
    direction: str  # "minimize" | "maximize"

    def better(self, a: float, b: float) -> bool:
        """Is ``a`` better than ``b``?"""
        return a < b if self.direction == "minimize" else a > b


OBJECTIVES: dict[str, Objective] = {
    "language": Objective("language", is_text_data, train_language, compare_language, "val_loss", "minimize"),
    "classification": Objective("classification", lambda data: True, train, compare, "val_acc", "maximize"),
}


def objective_for(data: str) -> Objective:
    """The first registered objective that applies to ``data``."""
    return next(o for o in OBJECTIVES.values() if o.applies(data))
