"""Training and comparison of any model given a factory ``build_model(in_channels,
num_classes, input_size) -> nn.Module``; nothing here knows the formula language.

>>> from formulac.train import make_config, train, compare
>>> config = make_config("cifar", data="synthetic", epochs=2, limit_train=512)
>>> summary = train(build_model, config, "runs/resnet")                    # doctest: +SKIP
>>> table = compare([("resnet", build_a, None), ("fib", build_b, None)],
...                 config, seeds=[0, 1, 2], out_dir="runs/cmp")            # doctest: +SKIP
"""

from .compare import ComparisonResult, ModelResult, compare
from .compare_language import LossComparison, compare_language
from .data import (
    DATASETS,
    Dataset,
    load_dataset,
    read_cifar_batch,
    read_idx,
    synthetic_dataset,
    write_idx,
)
from .distributed import DistInfo
from .errors import DatasetNotFound, TrainError, TrainingDiverged
from .language import generate, train_language
from .loop import count_parameters, evaluate, load_checkpoint, load_data, read_metrics, train
from .objectives import OBJECTIVES, objective_for
from .options import add_run_arguments, add_training_arguments, config_from_args, parse_seeds, seeds_from_args
from .recipes import RECIPES, TrainConfig, lr_at, make_config, recipe_for_dataset
from .stats import TestResult, friedman_test, paired_t_test, wilcoxon_signed_rank
from .text import TextCorpus, load_corpus

__all__ = [
    "DATASETS",
    "OBJECTIVES",
    "RECIPES",
    "LossComparison",
    "TextCorpus",
    "compare_language",
    "generate",
    "load_corpus",
    "objective_for",
    "train_language",
    "ComparisonResult",
    "Dataset",
    "DatasetNotFound",
    "DistInfo",
    "ModelResult",
    "TestResult",
    "TrainConfig",
    "TrainError",
    "TrainingDiverged",
    "add_run_arguments",
    "add_training_arguments",
    "compare",
    "config_from_args",
    "count_parameters",
    "evaluate",
    "friedman_test",
    "load_checkpoint",
    "load_data",
    "load_dataset",
    "lr_at",
    "make_config",
    "paired_t_test",
    "parse_seeds",
    "read_cifar_batch",
    "read_idx",
    "read_metrics",
    "recipe_for_dataset",
    "seeds_from_args",
    "synthetic_dataset",
    "train",
    "wilcoxon_signed_rank",
    "write_idx",
]
