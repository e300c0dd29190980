"""The argparse pieces: flags -> TrainConfig."""

import argparse

import pytest

from formulac.train import (
    TrainError,
    add_run_arguments,
    add_training_arguments,
    config_from_args,
    make_config,
    parse_seeds,
    seeds_from_args,
)


def _parser(compare=False):
    p = argparse.ArgumentParser(prog="formulac train")
    add_training_arguments(p)
    add_run_arguments(p, compare=compare, default_out="runs/x")
    return p


def test_defaults_follow_the_recipe():
    args = _parser().parse_args([])
    assert config_from_args(args) == make_config("fashion")
    args = _parser().parse_args(["--data", "cifar10"])
    assert config_from_args(args) == make_config("cifar-fast", data="cifar10")
    assert (args.out, args.resume, args.overwrite, args.progress, args.quiet) == (
        "runs/x",
        False,
        False,
        True,
        False,
    )


def test_every_flag():
    argv = [
        "--recipe",
        "cifar",
        "--data",
        "synthetic:1x8x8:3",
        "--data-dir",
        "/d",
        "--download",
        "--image-size",
        "48",
        "--limit-train",
        "100",
        "--limit-test",
        "20",
        "--val-fraction",
        "0.1",
        "--split-seed",
        "3",
        "--epochs",
        "7",
        "--batch-size",
        "64",
        "--optimizer",
        "adamw",
        "--lr",
        "0.003",
        "--momentum",
        "0.8",
        "--wd",
        "0.05",
        "--no-nesterov",
        "--schedule",
        "cosine",
        "--milestones",
        "0.3,0.6",
        "--gamma",
        "0.2",
        "--warmup-epochs",
        "1.5",
        "--label-smoothing",
        "0.1",
        "--no-norm-bias-decay",
        "--ema-decay",
        "0.99",
        "--tta",
        "--crop-padding",
        "3",
        "--no-flip",
        "--random-resized-crop",
        "--seed",
        "5",
        "--device",
        "cpu",
        "--amp",
        "bf16",
        "--channels-last",
        "--compile",
        "--deterministic",
        "--eval-every",
        "2",
        "--eval-batch-size",
        "512",
        "--data-on-device",
        "no",
        "--workers",
        "3",
        "--threads",
        "1",
        "--sync-bn",
        "--tokens",
        "chars",
        "--epoch-tokens",
        "5000",
        "--grad-clip",
        "0.5",
        "--eval-windows",
        "12",
        "--adam-beta2",
        "0.95",
        "-o",
        "out",
        "--resume",
        "--no-progress",
        "-q",
    ]
    args = _parser().parse_args(argv)
    c = config_from_args(args)
    assert c.to_dict() == {
        "recipe": "cifar",
        "data": "synthetic:1x8x8:3",
        "data_dir": "/d",
        "download": True,
        "image_size": 48,
        "limit_train": 100,
        "limit_test": 20,
        "val_fraction": 0.1,
        "split_seed": 3,
        "epochs": 7,
        "batch_size": 64,
        "optimizer": "adamw",
        "lr": 0.003,
        "momentum": 0.8,
        "weight_decay": 0.05,
        "nesterov": False,
        "schedule": "cosine",
        "milestones": [0.3, 0.6],
        "gamma": 0.2,
        "warmup_epochs": 1.5,
        "label_smoothing": 0.1,
        "norm_bias_decay": False,
        "ema_decay": 0.99,
        "tta": True,
        "crop_padding": 3,
        "flip": False,
        "random_resized_crop": True,
        "seed": 5,
        "device": "cpu",
        "amp": "bf16",
        "channels_last": True,
        "compile": True,
        "deterministic": True,
        "eval_every": 2,
        "eval_batch_size": 512,
        "data_on_device": "no",
        "workers": 3,
        "threads": 1,
        "sync_bn": True,
        "tokens": "chars",
        "epoch_tokens": 5000,
        "grad_clip": 0.5,
        "eval_windows": 12,
        "adam_beta2": 0.95,
    }
    assert (args.out, args.resume, args.progress, args.quiet) == ("out", True, False, True)


def test_milestones_as_epochs_and_no_augment():
    c = config_from_args(
        _parser().parse_args(["--recipe", "imagenet", "--epochs", "90", "--milestones", "30,60,80"])
    )
    from formulac.train.recipes import milestone_epochs

    assert milestone_epochs(c) == [30, 60, 80]
    with pytest.raises(TrainError, match="epochs inside"):
        config_from_args(_parser().parse_args(["--epochs", "10", "--milestones", "5,12"]))
    c = config_from_args(_parser().parse_args(["--recipe", "cifar", "--no-augment"]))
    assert (c.crop_padding, c.flip, c.random_resized_crop) == (0, False, False)
    with pytest.raises(TrainError, match="contradicts"):
        config_from_args(_parser().parse_args(["--no-augment", "--flip"]))


def test_bad_values_exit_2(capsys):
    for argv in (["--epochs", "0"], ["--lr", "fast"], ["--amp", "fp8"], ["--seed", "-1"]):
        with pytest.raises(SystemExit) as e:
            _parser().parse_args(argv)
        assert e.value.code == 2
    with pytest.raises(TrainError):
        config_from_args(_parser().parse_args(["--lr", "-0.1"]))
    for fraction in ("1", "-0.1", "nan", "1.5"):
        with pytest.raises(TrainError, match="--val-fraction must be in \\[0, 1\\)"):
            config_from_args(_parser().parse_args(["--val-fraction", fraction]))


def test_seeds():
    assert parse_seeds("0,1,2") == [0, 1, 2]
    assert parse_seeds("5") == [0, 1, 2, 3, 4]  # a count, as in `compare --seeds 5`
    assert parse_seeds("1") == [0]
    assert parse_seeds("7,") == [7]
    assert parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert parse_seeds("1..3, 7") == [1, 2, 3, 7]
    for bad in ("a", "3-1", "1,1", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_seeds(bad)
    p = _parser(compare=True)
    assert seeds_from_args(p.parse_args([])) == [0, 1, 2]
    assert seeds_from_args(p.parse_args(["--seeds", "0-1"])) == [0, 1]
    assert seeds_from_args(_parser().parse_args([])) == [0]
