"""train(): files, checkpoints, resume, refusals, AMP, in one process."""

import json
import os

import pytest
import torch
import torch.nn as nn

from formulac.train import DatasetNotFound, TrainError, load_checkpoint, make_config, read_metrics, train
from formulac.train import data as D
from formulac.train import loop as L


def tiny(in_channels, num_classes, input_size):
    torch.manual_seed(1234)  # must not matter: train seeds before calling the factory
    return nn.Sequential(
        nn.Conv2d(in_channels, 8, 3, padding=1),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * (input_size // 2) ** 2, num_classes),
    )


def tiny_bn(in_channels, num_classes, input_size):
    return nn.Sequential(
        nn.Conv2d(in_channels, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Dropout(0.2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, num_classes),
    )


@pytest.fixture(scope="module")
def data():
    return D.synthetic_dataset((3, 8, 8), 4, train=256, test=128)


def cfg(**kw):
    base = dict(
        data="synthetic:3x8x8:4", epochs=3, batch_size=32, lr=0.1, crop_padding=1, threads=1, device="cpu"
    )
    base.update(kw)
    return make_config("cifar", **base)


def _weights(out):
    return load_checkpoint(out)["model"]


def _same_state(a, b):
    assert a.keys() == b.keys()
    return all(torch.equal(a[k], b[k]) for k in a)


def test_run_writes_everything(tmp_path, data):
    out = tmp_path / "run"
    summary = train(
        tiny,
        cfg(),
        out,
        progress=False,
        quiet=True,
        dataset=data,
        describe={"formula": "x_<n+1> = x_n + F(x_n)"},
    )
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["config.json", "metrics.jsonl", "checkpoint.pt", "summary.json", "curves.png"]
    )
    conf = json.loads((out / "config.json").read_text())
    assert conf["config"]["epochs"] == 3 and conf["config"]["recipe"] == "cifar"
    assert conf["model"] == {"formula": "x_<n+1> = x_n + F(x_n)"}
    assert conf["parameters"] == summary["parameters"] == 8 * 27 + 8 + 8 * 16 * 4 + 4
    assert conf["dataset"]["image_shape"] == [3, 8, 8]
    rows = read_metrics(out)
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    for r in rows:
        assert {
            "epoch",
            "lr",
            "train_loss",
            "train_acc",
            "test_loss",
            "test_acc",
            "seconds",
            "images_per_s",
        } <= set(r)
        assert 0 <= r["test_acc"] <= 1 and r["images_per_s"] > 0
    # 3 epochs: both milestones (50%, 75%) fall on epoch index 2
    assert [r["lr"] for r in rows] == pytest.approx([0.1, 0.1, 0.001])
    assert json.loads((out / "summary.json").read_text()) == summary
    assert summary["final_test_acc"] == rows[-1]["test_acc"]
    assert summary["best_test_acc"] == max(r["test_acc"] for r in rows)
    assert summary["epochs"] == 3 and summary["wall_time_s"] > 0 and summary["images_per_s"] > 0
    assert summary["model"]["formula"].startswith("x_")
    # learnable: well above chance (0.25) after a short training
    assert summary["final_test_acc"] > 0.5
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ck = load_checkpoint(out)
    assert ck["epoch"] == 3 and set(ck["rng"][0]) >= {"torch", "numpy", "python"}
    assert {"model", "optimizer", "scheduler", "scaler", "data_order", "history"} <= set(ck)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files


def test_same_seed_same_weights_other_seed_not(tmp_path, data):
    train(tiny, cfg(epochs=1), tmp_path / "a", progress=False, quiet=True, dataset=data)
    train(tiny, cfg(epochs=1), tmp_path / "b", progress=False, quiet=True, dataset=data)
    train(tiny, cfg(epochs=1, seed=1), tmp_path / "c", progress=False, quiet=True, dataset=data)
    assert _same_state(_weights(tmp_path / "a"), _weights(tmp_path / "b"))
    assert not _same_state(_weights(tmp_path / "a"), _weights(tmp_path / "c"))


class Stop(Exception):
    pass


def test_interrupted_run_resumes_to_the_same_weights(tmp_path, data):
    config = cfg(epochs=4, deterministic=True)
    whole = train(tiny_bn, config, tmp_path / "whole", progress=False, quiet=True, dataset=data)

    def stop_after_2(record):
        if record["epoch"] == 2:
            raise Stop

    with pytest.raises(Stop):
        train(
            tiny_bn,
            config,
            tmp_path / "cut",
            progress=False,
            quiet=True,
            dataset=data,
            on_epoch_end=stop_after_2,
        )
    assert load_checkpoint(tmp_path / "cut")["epoch"] == 2
    with pytest.raises(TrainError, match="unfinished run .*--resume"):
        train(tiny_bn, config, tmp_path / "cut", progress=False, quiet=True, dataset=data)
    with pytest.raises(TrainError, match="lr: 0.1 \\(saved\\) vs 0.2"):
        train(
            tiny_bn,
            config.replace(lr=0.2),
            tmp_path / "cut",
            resume=True,
            progress=False,
            quiet=True,
            dataset=data,
        )
    resumed = train(
        tiny_bn,
        config.replace(data_on_device="no"),
        tmp_path / "cut",
        resume=True,
        progress=False,
        quiet=True,
        dataset=data,
    )
    assert _same_state(_weights(tmp_path / "whole"), _weights(tmp_path / "cut"))
    a, b = read_metrics(tmp_path / "whole"), read_metrics(tmp_path / "cut")
    drop = ("seconds", "train_seconds", "images_per_s")
    assert [{k: v for k, v in r.items() if k not in drop} for r in a] == [
        {k: v for k, v in r.items() if k not in drop} for r in b
    ]
    assert resumed["final_test_acc"] == whole["final_test_acc"]


def test_refusals(tmp_path, data):
    out = tmp_path / "run"
    with pytest.raises(TrainError, match="nothing to resume"):
        train(tiny, cfg(epochs=1), out, resume=True, progress=False, quiet=True, dataset=data)
    first = train(tiny, cfg(epochs=1), out, progress=False, quiet=True, dataset=data)
    before = (out / "checkpoint.pt").read_bytes()
    with pytest.raises(TrainError, match="finished run .*--overwrite"):
        train(tiny, cfg(epochs=1), out, progress=False, quiet=True, dataset=data)
    assert (out / "checkpoint.pt").read_bytes() == before
    # resuming a finished run gives its summary back without training
    again = train(
        tiny, cfg(epochs=1, device="cpu"), out, resume=True, progress=False, quiet=True, dataset=data
    )
    assert again == first
    with pytest.raises(TrainError, match="other settings"):
        train(tiny, cfg(epochs=2), out, resume=True, progress=False, quiet=True, dataset=data)
    # --overwrite starts over
    other = train(tiny, cfg(epochs=1, seed=3), out, overwrite=True, progress=False, quiet=True, dataset=data)
    assert other["seed"] == 3 and len(read_metrics(out)) == 1
    (tmp_path / "file").write_text("x")
    with pytest.raises(TrainError, match="not a directory"):
        train(tiny, cfg(epochs=1), tmp_path / "file", progress=False, quiet=True, dataset=data)
    with pytest.raises(TrainError, match="not a torch.nn.Module"):
        train(
            lambda c, k, s: "model", cfg(epochs=1), tmp_path / "bad", progress=False, quiet=True, dataset=data
        )


def test_missing_data_is_a_dataset_error(tmp_path, monkeypatch):
    monkeypatch.delenv("FORMULAC_DATA", raising=False)
    monkeypatch.setenv("FORMULAC_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(D, "SYSTEM_DIRS", {})
    with pytest.raises(DatasetNotFound, match="apt-get install dataset-fashion-mnist"):
        train(
            tiny, make_config(data_dir=str(tmp_path / "none")), tmp_path / "run", progress=False, quiet=True
        )


def test_atomic_write_keeps_the_old_file(tmp_path):
    p = tmp_path / "checkpoint.pt"
    p.write_bytes(b"old")

    def broken(f):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    with pytest.raises(OSError):
        L._atomic_write(p, broken)
    assert p.read_bytes() == b"old"
    assert [q.name for q in tmp_path.iterdir()] == ["checkpoint.pt"]
    L._atomic_write(p, lambda f: f.write(b"new"))
    assert p.read_bytes() == b"new"


def test_eval_every_amp_channels_last_and_loading_by_name(tmp_path):
    config = cfg(
        epochs=3,
        eval_every=2,
        amp="bf16",
        channels_last=True,
        optimizer="adamw",
        lr=0.01,
        weight_decay=0.01,
        label_smoothing=0.1,
        limit_train=96,
        limit_test=40,
    )
    s = train(tiny_bn, config, tmp_path / "run", progress=False, quiet=True)
    rows = read_metrics(tmp_path / "run")
    assert [r["test_acc"] is None for r in rows] == [True, False, False]
    assert s["final_test_acc"] is not None and s["best_epoch"] in (2, 3)
    conf = json.loads((tmp_path / "run" / "config.json").read_text())
    assert conf["dataset"]["train"] == 96 and conf["dataset"]["test"] == 40


def test_fp16_with_grad_scaler(tmp_path, data):
    s = train(tiny, cfg(epochs=1, amp="fp16"), tmp_path / "run", progress=False, quiet=True, dataset=data)
    assert s["final_train_loss"] == s["final_train_loss"]  # not NaN
    assert load_checkpoint(tmp_path / "run")["scaler"] is not None


def test_global_settings_are_restored(tmp_path, data):
    threads = torch.get_num_threads()
    det = torch.are_deterministic_algorithms_enabled()
    train(
        tiny,
        cfg(epochs=1, deterministic=True, threads=1),
        tmp_path / "run",
        progress=False,
        quiet=True,
        dataset=data,
    )
    assert torch.get_num_threads() == threads
    assert torch.are_deterministic_algorithms_enabled() == det


def test_progress_lines(tmp_path, data, capsys):
    train(tiny, cfg(epochs=1), tmp_path / "run", progress=True, dataset=data)
    err = capsys.readouterr().err
    assert "epoch 1/1" in err and "done: final test accuracy" in err
    assert os.path.exists(tmp_path / "run" / "summary.json")


def test_without_matplotlib_no_curves(tmp_path, data, monkeypatch, capsys):
    import sys

    for name in [m for m in sys.modules if m.split(".")[0] == "matplotlib"] + ["matplotlib"]:
        monkeypatch.setitem(sys.modules, name, None)  # import matplotlib... now fails
    train(tiny, cfg(epochs=1), tmp_path / "run", progress=False, dataset=data)
    assert not (tmp_path / "run" / "curves.png").exists()
    assert (tmp_path / "run" / "summary.json").exists()
    assert capsys.readouterr().err.count("matplotlib is not installed") == 1
