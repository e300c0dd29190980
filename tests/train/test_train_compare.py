"""compare(): models x seeds, resumable, the table and the tests."""

import json

import pytest
import torch.nn as nn

from formulac.train import TrainError, compare, make_config
from formulac.train import data as D
from formulac.train.compare import format_seconds, safe_label


def narrow(in_channels, num_classes, input_size):
    return nn.Sequential(
        nn.Conv2d(in_channels, 4, 3, padding=1),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(4 * (input_size // 2) ** 2, num_classes),
    )


def wide(in_channels, num_classes, input_size):
    return nn.Sequential(
        nn.Conv2d(in_channels, 12, 3, padding=1),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(12 * (input_size // 2) ** 2, num_classes),
    )


def linear(in_channels, num_classes, input_size):
    return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * input_size**2, num_classes))


@pytest.fixture(scope="module")
def data():
    return D.synthetic_dataset((3, 8, 8), 4, train=128, test=64)


@pytest.fixture()
def config():
    return make_config(
        "cifar", data="synthetic:3x8x8:4", epochs=2, batch_size=32, lr=0.1, threads=1, device="cpu"
    )


class Stop(Exception):
    pass


def test_two_models_resumable(tmp_path, data, config, capsys):
    models = [("narrow", narrow, {"width": 4}), ("wide net", wide, {"width": 12})]
    done = []

    def stop_after_first(label, seed, summary):
        done.append((label, seed))
        if len(done) == 1:
            raise Stop

    with pytest.raises(Stop):
        compare(
            models,
            config,
            [0, 1],
            tmp_path,
            progress=False,
            quiet=True,
            dataset=data,
            on_run_end=stop_after_first,
        )
    first = (tmp_path / "narrow" / "seed0" / "checkpoint.pt").stat().st_mtime_ns

    result = compare(
        models,
        config,
        [0, 1],
        tmp_path,
        progress=False,
        dataset=data,
        on_run_end=lambda label, seed, s: done.append((label, seed)),
    )
    # the finished run was reused, not retrained
    assert (tmp_path / "narrow" / "seed0" / "checkpoint.pt").stat().st_mtime_ns == first
    assert done[1:] == [("narrow", 0), ("wide net", 0), ("narrow", 1), ("wide net", 1)]
    assert (tmp_path / "wide_net" / "seed1" / "summary.json").is_file()

    narrow_r, wide_r = result.models
    assert narrow_r.seeds == [0, 1] and len(narrow_r.errors) == 2
    assert wide_r.parameters > narrow_r.parameters
    assert result.test.name == "paired t-test" and result.test.n == 2
    assert result.test.p_value is None or 0 <= result.test.p_value <= 1
    assert len(result.pairwise) == 1 and result.pairwise[0]["wilcoxon"]["n"] <= 2

    text = capsys.readouterr().out
    assert "narrow" in text and "wide net" in text and "paired t-test" in text
    assert "±" in text
    md = (tmp_path / "comparison.md").read_text()
    assert "| model | test error (%)" in md and "| wide net |" in md and "seed 1" in md
    js = json.loads((tmp_path / "comparison.json").read_text())
    assert [m["label"] for m in js["models"]] == ["narrow", "wide net"]
    assert js["models"][1]["model"] == {"width": 12}
    assert js["test"]["name"] == "paired t-test" and js["config"]["epochs"] == 2
    m = js["models"][0]
    assert m["mean_test_error_pct"] == pytest.approx(sum(m["test_error_pct"]) / 2)
    assert m["test_error_pct"][0] == pytest.approx(100 * (1 - m["test_acc"][0]))

    # a third call trains nothing and gives the same table
    again = compare(models, config, [0, 1], tmp_path, progress=False, quiet=True, dataset=data)
    assert again.to_dict() == result.to_dict()
    # other settings in the same directory: refused, nothing mixed
    with pytest.raises(TrainError, match="other settings"):
        compare(models, config.replace(lr=0.05), [0], tmp_path, progress=False, quiet=True, dataset=data)


def test_three_models_friedman(tmp_path, data, config):
    config = config.replace(epochs=1)
    result = compare(
        [("a", narrow, None), ("b", wide, None), ("c", linear, None)],
        config,
        [0, 1],
        tmp_path,
        progress=False,
        quiet=True,
        dataset=data,
    )
    assert result.test.name == "Friedman test" and result.test.df == 2 and result.test.n == 2
    assert [p["model"] for p in result.pairwise] == ["b", "c"]
    assert all("p_holm" in p for p in result.pairwise)
    text = result.to_text()
    assert "Friedman test" in text and text.count("\n") > 6
    one = compare(
        [("solo", narrow, None)], config, [0], tmp_path / "solo", progress=False, quiet=True, dataset=data
    )
    assert one.test is None and one.models[0].std_error is None
    assert "solo" in one.to_markdown()


def test_bad_arguments(tmp_path, config, data):
    with pytest.raises(TrainError, match="no models"):
        compare([], config, [0], tmp_path)
    with pytest.raises(TrainError, match="no seeds"):
        compare([("a", narrow, None)], config, [], tmp_path)
    with pytest.raises(TrainError, match="share a label"):
        compare([("a", narrow, None), ("a", wide, None)], config, [0], tmp_path)
    with pytest.raises(TrainError, match="same directory"):
        compare([("a b", narrow, None), ("a/b", wide, None)], config, [0], tmp_path)
    with pytest.raises(TrainError, match="repeated seeds"):
        compare([("a", narrow, None)], config, [1, 1], tmp_path)


def test_helpers():
    assert safe_label("resnet-20.rec") == "resnet-20.rec"
    assert safe_label("../x y") == "_x_y"
    assert format_seconds(5.25) == "5.2s" and format_seconds(125) == "2m05s"
    assert format_seconds(3 * 3600 + 120) == "3h02m"
