"""train(): files, checkpoints, resume, refusals, AMP, in one process."""

import json
import os

import pytest
import torch
import torch.nn as nn
from tiny_nets import bn_dropout_net, conv_pool_net, synthetic_config

from formulac.train import (
    DatasetNotFound,
    TrainError,
    load_checkpoint,
    load_data,
    make_config,
    read_metrics,
    train,
)
from formulac.train import data as D


def tiny(in_channels, num_classes, input_size):
    torch.manual_seed(1234)  # must not matter: train seeds before calling the factory
    return conv_pool_net(in_channels, num_classes, input_size, width=8)


def cfg(**kw):
    return synthetic_config("cifar", **{"lr": 0.1, "crop_padding": 1, **kw})


def _weights(out):
    return load_checkpoint(out)["model"]


def _same_state(a, b):
    assert a.keys() == b.keys()
    return all(torch.equal(a[k], b[k]) for k in a)


def test_an_epochs_lr_is_its_last_steps(tmp_path, data):
    """A one-epoch warm-up logged the lr of its first step (1/steps of the base) as the epoch's."""
    from formulac.train.recipes import lr_at

    config = cfg(schedule="cosine", warmup_epochs=1, epochs=2, milestones=None).validate()
    train(tiny, config, tmp_path / "run", progress=False, quiet=True, dataset=data)
    steps = 256 // 32
    rows = read_metrics(tmp_path / "run")
    assert [r["lr"] for r in rows] == pytest.approx([lr_at(config, e, steps - 1, steps) for e in (0, 1)])
    assert rows[0]["lr"] > 4 * lr_at(config, 0, 0, steps)  # the warm-up's end, not its start


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
    whole = train(bn_dropout_net, config, tmp_path / "whole", progress=False, quiet=True, dataset=data)

    def stop_after_2(record):
        if record["epoch"] == 2:
            raise Stop

    with pytest.raises(Stop):
        train(
            bn_dropout_net,
            config,
            tmp_path / "cut",
            progress=False,
            quiet=True,
            dataset=data,
            on_epoch_end=stop_after_2,
        )
    assert load_checkpoint(tmp_path / "cut")["epoch"] == 2
    with pytest.raises(TrainError, match="unfinished run .*--resume"):
        train(bn_dropout_net, config, tmp_path / "cut", progress=False, quiet=True, dataset=data)
    with pytest.raises(TrainError, match="lr: 0.1 \\(saved\\) vs 0.2"):
        train(
            bn_dropout_net,
            config.replace(lr=0.2),
            tmp_path / "cut",
            resume=True,
            progress=False,
            quiet=True,
            dataset=data,
        )
    resumed = train(
        bn_dropout_net,
        config.replace(data_on_device="no"),
        tmp_path / "cut",
        resume=True,
        progress=False,
        quiet=True,
        dataset=data,
    )
    assert _same_state(_weights(tmp_path / "whole"), _weights(tmp_path / "cut"))
    a, b = read_metrics(tmp_path / "whole"), read_metrics(tmp_path / "cut")
    drop = ("seconds", "train_seconds", "train_cpu_seconds", "images_per_s")
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
    (tmp_path / "none").mkdir()  # exists, holds nothing
    with pytest.raises(DatasetNotFound, match="apt-get install dataset-fashion-mnist"):
        train(
            tiny, make_config(data_dir=str(tmp_path / "none")), tmp_path / "run", progress=False, quiet=True
        )


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
    s = train(bn_dropout_net, config, tmp_path / "run", progress=False, quiet=True)
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


def fit(build, config, out, data, **kw):
    """train() quietly on ``data``."""
    return train(build, config, out, progress=False, quiet=True, dataset=data, **kw)


# --------------------------------------------------------------------------------------------
# validation split, divergence, the epoch callback, runs of another model


def test_validation_split_never_reads_the_test_set(tmp_path, data):
    from dataclasses import replace

    # labels no model can predict: evaluating on this test set would fail in cross_entropy
    poisoned = replace(data, test_labels=torch.full_like(data.test_labels, 99))
    config = cfg(epochs=2, val_fraction=0.25, split_seed=5, limit_train=200)
    s = fit(tiny, config, tmp_path / "run", data=poisoned)
    rows = read_metrics(tmp_path / "run")
    assert all(r["val_acc"] is not None and r["val_loss"] is not None for r in rows)
    assert all(r["test_acc"] is None and r["test_loss"] is None for r in rows)
    assert s["evaluated_on"] == "validation" and s["final_test_acc"] is None and s["best_test_acc"] is None
    assert s["final_val_acc"] == rows[-1]["val_acc"] and s["best_val_acc"] == max(r["val_acc"] for r in rows)
    # the limit applies first, then the split: 200 -> 150 train + 50 validation
    assert s["validation"] == {"fraction": 0.25, "split_seed": 5, "examples": 50}
    conf = json.loads((tmp_path / "run" / "config.json").read_text())
    assert conf["evaluated_on"] == "validation"
    assert conf["dataset"]["train"] == 150 and conf["dataset"]["test"] == 50
    # the split does not move with the run's seed, so the validation set is the same one
    s2 = fit(tiny, config.replace(seed=9), tmp_path / "run2", data=poisoned)
    assert s2["validation"] == s["validation"]


class NaNAt(nn.Module):
    """Passes its input through, but makes it NaN on the k-th training forward (1-based)."""

    def __init__(self, k):
        super().__init__()
        self.k, self.calls = k, 0

    def forward(self, x):
        if self.training:
            self.calls += 1
            if self.calls == self.k:
                return x * float("nan")
        return x


def test_divergence_names_epoch_and_step_and_keeps_the_last_good_checkpoint(tmp_path, data):
    from formulac.errors import FormulacError
    from formulac.train import TrainingDiverged

    def build(c, k, s):
        return nn.Sequential(tiny(c, k, s), NaNAt(8 + 3))  # 256 / 32 = 8 steps: epoch 2, step 3

    out = tmp_path / "run"
    with pytest.raises(TrainingDiverged) as e:
        fit(build, cfg(epochs=3), out, data=data)
    err = e.value
    assert isinstance(err, TrainError) and isinstance(err, FormulacError)
    assert (err.epoch, err.step) == (2, 3) and err.loss != err.loss
    msg = str(err)
    assert "\n" not in msg and "epoch 2, step 3 of 8" in msg and "became nan" in msg
    assert "checkpoint of epoch 1 is kept" in msg and err.format().startswith("formulac: error: ")
    assert load_checkpoint(out)["epoch"] == 1 and len(read_metrics(out)) == 1
    assert not (out / "summary.json").exists()

    with pytest.raises(TrainingDiverged, match="epoch 1, step 1 of 8.*no epoch finished"):
        fit(lambda c, k, s: nn.Sequential(tiny(c, k, s), NaNAt(1)), cfg(epochs=1), tmp_path / "first", data)


def test_epoch_callback_exception_propagates_unchanged_and_the_run_resumes(tmp_path, data):
    config = cfg(epochs=3, deterministic=True)
    seen, raised = [], Stop("prune")

    def prune_at_2(record):
        seen.append(dict(record))
        assert load_checkpoint(tmp_path / "cut")["epoch"] == record["epoch"]  # already written
        if record["epoch"] == 2:
            raise raised

    with pytest.raises(Stop) as e:
        fit(
            bn_dropout_net,
            config,
            tmp_path / "cut",
            data=data,
            on_epoch_end=prune_at_2,
        )
    assert e.value is raised
    assert [r["epoch"] for r in seen] == [1, 2] and seen == read_metrics(tmp_path / "cut")
    resumed = fit(bn_dropout_net, config, tmp_path / "cut", resume=True, data=data)
    whole = fit(bn_dropout_net, config, tmp_path / "whole", data=data)
    assert resumed["final_test_acc"] == whole["final_test_acc"]
    assert _same_state(_weights(tmp_path / "whole"), _weights(tmp_path / "cut"))


def test_a_run_of_another_model_is_refused_unless_overwrite(tmp_path, data):
    out = tmp_path / "run"
    resnet = {"formula": "x_<n+1> = x_n + F(x_n)", "backbone": "cifar-resnet", "depth": 8}
    two_step = dict(resnet, formula="x_<n+1> = x_n + -1/4*x_<n-1> + F(x_n)")

    def stop(record):
        raise Stop

    with pytest.raises(Stop):
        fit(
            tiny,
            cfg(epochs=2),
            out,
            data=data,
            describe=resnet,
            on_epoch_end=stop,
        )
    for resume in (False, True):
        with pytest.raises(
            TrainError, match="(?s)unfinished run of another model:\n  formula: .*--overwrite"
        ):
            fit(
                tiny,
                cfg(epochs=2),
                out,
                resume=resume,
                data=data,
                describe=two_step,
            )
    # the file name and the compiled source's hash do not make another model
    renamed = dict(resnet, file="renamed.rec", source_sha256="0" * 64)
    fit(tiny, cfg(epochs=2), out, resume=True, data=data, describe=renamed)
    with pytest.raises(TrainError, match="another model:\n  depth: 8 \\(saved\\) vs 20 \\(now\\)"):
        fit(
            tiny,
            cfg(epochs=2),
            out,
            resume=True,
            data=data,
            describe=dict(resnet, depth=20),
        )
    with pytest.raises(TrainError, match="other settings:\n  recipe: 'cifar' \\(saved\\) vs 'fashion'"):
        fashion = make_config(
            "fashion", **{k: v for k, v in cfg(epochs=2).to_dict().items() if k != "recipe"}
        )
        fit(tiny, fashion, out, data, resume=True, describe=resnet)
    s = fit(tiny, cfg(epochs=1), out, overwrite=True, data=data, describe=two_step)
    assert s["model"] == two_step and s["recipe"] == "cifar"
    assert s["versions"]["torch"] == torch.__version__ and s["versions"]["formulac"]
    assert s["seed"] == 0 and s["device"] == "cpu" and s["wall_time_s"] > 0


def test_load_data_is_what_train_reads(tmp_path):
    config = cfg(epochs=1, limit_train=200, limit_test=60, val_fraction=0.25)
    loaded = load_data(config)
    # the limits apply; the validation split does not (train draws it)
    assert len(loaded.train_labels) == 200 and len(loaded.test_labels) == 60
    reference = D.load_dataset("synthetic:3x8x8:4", limit_train=200, limit_test=60)
    assert torch.equal(loaded.train_images, reference.train_images)
    assert torch.equal(loaded.test_labels, reference.test_labels)
    # handing it to train gives the run that loading inside train gives
    inside = train(tiny, config, tmp_path / "inside", progress=False, quiet=True)
    given = train(tiny, config, tmp_path / "given", progress=False, quiet=True, dataset=loaded)
    assert inside["final_val_acc"] == given["final_val_acc"]
    assert _same_state(_weights(tmp_path / "inside"), _weights(tmp_path / "given"))
