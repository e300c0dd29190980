"""The trainer of a real search: each candidate is a ``formulac train`` run directory, trained on
the training set less a held-out validation split (a text corpus: its training part), reporting
the search's score (validation accuracy, or validation loss for language models) every epoch.

A run directory that holds a checkpoint (its worker died, or Ctrl-C stopped it) is resumed;
its earlier epochs are reported again so that the pruner sees the whole curve.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path

from ..limits import DEFAULT_BACKBONE
from .metrics import METRICS, SearchMetric
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

    def __init__(
        self,
        config,
        backbone_kwargs: Mapping,
        progress: bool = False,
        quiet: bool = True,
        metric: SearchMetric = METRICS["val_accuracy"],
    ):
        self.config = config
        self.metric = metric
        self.backbone_kwargs = dict(backbone_kwargs)
        self.progress = progress
        self.quiet = quiet
        self._data = None

    def data(self):
        if self._data is None:
            from ..train import load_data
            from ..train.text import is_text_data, load_corpus

            if is_text_data(self.config.data):
                self._data = load_corpus(self.config.data, self.config.tokens)
            else:
                self._data = load_data(self.config)
        return self._data

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(in_channels, input_size, num_classes) of the data set."""
        data = self.data()
        if not hasattr(data, "train_images"):  # a text corpus: token ids in, a vocabulary out
            return 1, 0, data.vocab_size
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
        from ..train import TrainingDiverged
        from ..train.loop import CHECKPOINT, SUMMARY, read_metrics
        from ..train.objectives import objective_for

        try:
            build_model, describe = network_factory(
                candidate.rec, candidate_backbone(candidate, self.backbone_kwargs)
            )
        except (ValueError, TypeError) as exc:  # checked up front per file and knob; kept as a net
            raise TrialFailed(f"the network could not be built: {exc}") from None
        describe["search"] = {"formula": candidate.formula, "params": candidate.params}
        resume = (run_dir / CHECKPOINT).is_file() or (run_dir / SUMMARY).is_file()
        key = self.metric.record_key
        for record in read_metrics(run_dir) if resume else ():
            report(int(record["epoch"]), float(record[key]))

        def on_epoch_end(record: dict) -> None:
            report(int(record["epoch"]), float(record[key]))

        objective = objective_for(self.config.data)
        data = {"corpus" if objective.name == "language" else "dataset": self.data()}
        t0 = time.perf_counter()
        try:
            summary = objective.train(
                build_model,
                self.config,
                run_dir,
                resume=resume,
                progress=self.progress,
                describe=describe,
                quiet=self.quiet,
                on_epoch_end=on_epoch_end,
                **data,
            )
        except TrainingDiverged as exc:
            raise TrialFailed(str(exc)) from None
        except torch.OutOfMemoryError as exc:
            raise TrialFailed(f"out of memory: {str(exc).splitlines()[0]}") from None
        history = read_metrics(run_dir)
        if summary.get(f"final_{key}") is None:
            raise TrialFailed(f"the run reports no {self.metric.label} (final_{key})")
        return TrialScore(
            val_accuracy=summary.get("final_val_acc"),
            val_loss=summary.get("final_val_loss"),
            epochs=len(history),
            seconds=time.perf_counter() - t0,
            extra={"parameters": summary.get("parameters"), "train_time_s": summary.get("train_time_s")},
        )
