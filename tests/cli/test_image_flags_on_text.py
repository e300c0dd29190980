"""Image-only training flags given with ``--data text:...`` are one ``formulac: error:`` line
(exit 2) naming the flag, not silently ignored (the language trainer never reads them)."""

from __future__ import annotations

import pytest
from cli_runner import QUIET_CPU, run_cli
from fixtures_path import REPO

from formulac.train.options import IMAGE_ONLY

RESNET = REPO / "examples" / "resnet.rec"
GPT = ["--backbone", "gpt", "--depth", "1", "-O", "dim=16", "-O", "heads=2", "-O", "context=8"]

# each image-only knob as a user types it
FLAGS = {
    "tta": ["--tta"],
    "ema_decay": ["--ema-decay", "0.9"],
    "label_smoothing": ["--label-smoothing", "0.1"],
    "crop_padding": ["--crop-padding", "2"],
    "flip": ["--no-flip"],
    "random_resized_crop": ["--random-resized-crop"],
    "no_augment": ["--no-augment"],
    "image_size": ["--image-size", "32"],
    "channels_last": ["--channels-last"],
    "data_dir": ["--data-dir", "/tmp"],
    "download": ["--download"],
    "limit_train": ["--limit-train", "5"],
    "limit_test": ["--limit-test", "5"],
    "val_fraction": ["--val-fraction", "0.1"],
    "split_seed": ["--split-seed", "3"],
    "eval_every": ["--eval-every", "2"],
    "data_on_device": ["--data-on-device", "no"],
    "workers": ["--workers", "2"],
    "sync_bn": ["--sync-bn"],
}


def test_every_image_only_knob_has_a_case():
    assert set(FLAGS) == set(IMAGE_ONLY)


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("a tiny corpus of text. " * 50, encoding="utf-8")
    return f"text:{path}"


@pytest.mark.parametrize("name", list(FLAGS))
def test_train_refuses_an_image_flag_on_text(name, corpus, tmp_path, capsys):
    flag = "--" + name.replace("_", "-")  # --no-flip is named --flip
    status, _, err = run_cli(
        capsys, "train", RESNET, *GPT, "--data", corpus, *FLAGS[name], "-o", tmp_path / "run", *QUIET_CPU
    )
    assert status == 2
    assert err.strip().splitlines() == [f"formulac: error: {flag} is for image data, not --data {corpus}"]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("recipe", ["cifar", "cifar-fast", "fashion", "imagenet", "transformer"])
def test_an_image_recipe_on_text_is_refused(recipe, corpus, tmp_path, capsys):
    for command in (["train", RESNET], ["compare", RESNET, REPO / "examples" / "two_step.rec"]):
        status, _, err = run_cli(
            capsys, *command, *GPT, "--data", corpus, "--recipe", recipe, "-o", tmp_path / "run", *QUIET_CPU
        )
        assert status == 2, command
        assert err.startswith(f"formulac: error: --recipe {recipe} is for images;"), err
        assert len(err.strip().splitlines()) == 1
