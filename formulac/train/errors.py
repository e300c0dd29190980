"""The errors of training: user-facing :class:`~formulac.errors.FormulacError`\\ s.

The command line prints them as ``formulac: error: MESSAGE`` and exits with status 2.
"""

from __future__ import annotations

from ..errors import UsageError

__all__ = ["DatasetNotFound", "TrainError", "TrainingDiverged"]


class TrainError(UsageError, ValueError):
    """A user error in training: a bad option, a missing checkpoint, a run already finished."""


class DatasetNotFound(TrainError):
    """The data set's files are nowhere to be found; the message says where we looked."""


class TrainingDiverged(TrainError):
    """The training loss became NaN or infinite at ``epoch`` (1-based) and ``step`` (1-based
    within the epoch); the run directory keeps the checkpoint of the last good epoch."""

    def __init__(self, message: str, epoch: int = 0, step: int = 0, loss: float = float("nan")):
        super().__init__(message)
        self.epoch = epoch
        self.step = step
        self.loss = loss

    def __reduce__(self):  # crosses process boundaries whole (compare --jobs)
        return (type(self), (self.message, self.epoch, self.step, self.loss))
