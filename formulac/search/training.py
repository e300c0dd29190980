"""The trainer of a real search: each candidate is a ``formulac train`` run directory, trained on
the training set less a held-out validation split, reporting validation accuracy every epoch.

A run directory that holds a checkpoint (its worker died, or Ctrl-C stopped it) is resumed;
its earlier epochs are reported again so that the pruner sees the whole curve.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path

from ..limits import DEFAULT_BACKBONE
from .objective import TrialFailed, TrialScore
from .space import Candidate

__all__ = ["FormulaTrainer", "candidate_backbone"]


def candidate_backbone(candidate: Candidate, backbone_kwargs: Mapping) -> dict:
    """The backbone options of a candidate: the search's, with its knobs applied."""
    kwargs = dict(backbone_kwargs)
    kwargs.update(candidate.knobs)
    return kwargs


class FormulaTrainer:
    """``trainer(candidate, run_dir, report)`` for :class:`~formulac.search.objective.Objective`.

    ``config`` is the search's :class:`~formulac.train.TrainConfig` (``val_fraction > 0``: the
    test set is never read during the search). The data set is loaded once per worker."""

    def __init__(self, config, backbone_kwargs: Mapping, progress: bool = False, quiet: bool = True):
        self.config = config
        self.backbone_kwargs = dict(backbone_kwargs)
        self.progress = progress
        self.quiet = quiet
        self._data = None

    def data(self):
        if self._data is None:
            from ..train import load_data

            self._data = load_data(self.config)
        return self._data

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(in_channels, input_size, num_classes) of the data set."""
        data = self.data()
        return data.train_images.shape[1], data.train_images.shape[2], data.num_classes

    def size(self, candidate: Candidate) -> dict:
        """Parameters and multiply-adds of the candidate's network on this data set."""
        from ..codegen import compile_network
        from ..codegen.info import network_info

        channels, size, classes = self.input_shape
        kwargs = candidate_backbone(candidate, self.backbone_kwargs)
        kwargs["in_channels"] = kwargs.get("in_channels") or channels
        kwargs["num_classes"] = kwargs.get("num_classes") or classes
        model = compile_network(candidate.rec, **kwargs)
        info = network_info(
            candidate.rec,
            model,
            size,
            kwargs["in_channels"],
            kwargs.get("backbone", DEFAULT_BACKBONE),
            kwargs,
        )
        return {"parameters": info.parameters, "multiply_adds": info.multiply_adds}

    def __call__(
        self, candidate: Candidate, run_dir: Path, report: Callable[[int, float], None]
    ) -> TrialScore:
        import torch

        from ..formula import network_factory
        from ..train import TrainingDiverged, train
        from ..train.loop import CHECKPOINT, SUMMARY, read_metrics

        try:
            build_model, describe = network_factory(
                candidate.rec, candidate_backbone(candidate, self.backbone_kwargs)
            )
        except (ValueError, TypeError) as exc:  # checked up front per file and knob; kept as a net
            raise TrialFailed(f"the network could not be built: {exc}") from None
        describe["search"] = {"formula": candidate.formula, "params": candidate.params}
        resume = (run_dir / CHECKPOINT).is_file() or (run_dir / SUMMARY).is_file()
        for record in read_metrics(run_dir) if resume else ():
            report(int(record["epoch"]), float(record["val_acc"]))

        def on_epoch_end(record: dict) -> None:
            report(int(record["epoch"]), float(record["val_acc"]))

        t0 = time.perf_counter()
        try:
            summary = train(
                build_model,
                self.config,
                run_dir,
                resume=resume,
                progress=self.progress,
                describe=describe,
                quiet=self.quiet,
                dataset=self.data(),
                on_epoch_end=on_epoch_end,
            )
        except TrainingDiverged as exc:
            raise TrialFailed(str(exc)) from None
        except torch.OutOfMemoryError as exc:
            raise TrialFailed(f"out of memory: {str(exc).splitlines()[0]}") from None
        history = read_metrics(run_dir)
        return TrialScore(
            val_accuracy=float(summary["final_val_acc"]),
            epochs=len(history),
            seconds=time.perf_counter() - t0,
            extra={"parameters": summary.get("parameters"), "train_time_s": summary.get("train_time_s")},
        )
