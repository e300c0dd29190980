"""compare(): models x seeds, resumable, the table and the tests."""

import json
from functools import partial

import pytest
import torch.nn as nn
from tiny_nets import conv_pool_net

from formulac.train import TrainError, compare, make_config
from formulac.train import data as D
from formulac.train.compare import format_seconds, safe_label

narrow = partial(conv_pool_net, width=4)
wide = partial(conv_pool_net, width=12)


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


def run_compare(models, config, seeds, out, data, **options):
    """``compare`` on ``data`` without progress bars and (unless ``quiet=False``) tables."""
    return compare(
        models, config, seeds, out, **{"progress": False, "quiet": True, "dataset": data, **options}
    )


def test_two_models_resumable(tmp_path, data, config, capsys):
    models = [("narrow", narrow, {"width": 4}), ("wide net", wide, {"width": 12})]
    done = []

    def stop_after_first(label, seed, summary):
        done.append((label, seed))
        if len(done) == 1:
            raise Stop

    with pytest.raises(Stop):
        run_compare(models, config, [0, 1], tmp_path, data, on_run_end=stop_after_first)
    first = (tmp_path / "narrow" / "seed0" / "checkpoint.pt").stat().st_mtime_ns

    result = run_compare(
        models,
        config,
        [0, 1],
        tmp_path,
        data,
        quiet=False,
        on_run_end=lambda label, seed, s: done.append((label, seed)),
    )
    # the finished run was reused, not retrained
    assert (tmp_path / "narrow" / "seed0" / "checkpoint.pt").stat().st_mtime_ns == first
    assert done[1:] == [("narrow", 0), ("wide net", 0), ("narrow", 1), ("wide net", 1)]
    assert (tmp_path / "wide_net" / "seed1" / "summary.json").is_file()

    narrow_r, wide_r = result.models
    assert narrow_r.seeds == [0, 1] and len(narrow_r.errors) == 2 and narrow_r.metric == "test"
    assert wide_r.parameters > narrow_r.parameters
    assert result.test.name == "paired t-test" and result.test.n == 2
    assert result.test.p_value is None or 0 <= result.test.p_value <= 1
    assert len(result.pairwise) == 1 and result.pairwise[0]["wilcoxon"]["n"] <= 2

    text = capsys.readouterr().out
    assert "narrow" in text and "wide net" in text and "paired t-test" in text
    assert "±" in text and "95% CI" in text and "test accuracy" in text
    # two seeds: the comparison says the evidence is too thin, in words
    assert "Too little evidence: 2 seeds" in text
    md = (tmp_path / "comparison.md").read_text()
    assert "| model | accuracy (%) | vs first | 95% CI" in md and "| wide net |" in md and "seed 1" in md
    assert "- Too little evidence" in md
    js = json.loads((tmp_path / "comparison.json").read_text())
    assert [m["label"] for m in js["models"]] == ["narrow", "wide net"]
    assert js["models"][1]["model"] == {"width": 12}
    assert js["test"]["name"] == "paired t-test" and js["config"]["epochs"] == 2
    assert js["evaluated_on"] == "test" and js["verdicts"] == result.verdicts
    m = js["models"][0]
    assert m["mean_test_error_pct"] == pytest.approx(sum(m["test_error_pct"]) / 2)
    assert m["test_error_pct"][0] == pytest.approx(100 * (1 - m["test_acc"][0]))
    assert m["mean_test_acc_pct"] == pytest.approx(100 * sum(m["test_acc"]) / 2)
    pw = js["pairwise"][0]
    assert pw["mean_difference_pct"] == pytest.approx(
        js["models"][1]["mean_test_acc_pct"] - js["models"][0]["mean_test_acc_pct"]
    )

    # a third call trains nothing and gives the same table
    again = run_compare(models, config, [0, 1], tmp_path, data)
    assert again.to_dict() == result.to_dict()
    # other settings in the same directory: refused, nothing mixed
    with pytest.raises(TrainError, match="other settings"):
        run_compare(models, config.replace(lr=0.05), [0], tmp_path, data)
    # another model under a known label: refused too, nothing retrained
    with pytest.raises(TrainError, match="another model"):
        run_compare([("narrow", narrow, {"width": 5}), models[1]], config, [0, 1], tmp_path, data)


def test_three_models_friedman(tmp_path, data, config):
    config = config.replace(epochs=1)
    result = run_compare(
        [("a", narrow, None), ("b", wide, None), ("c", linear, None)], config, [0, 1], tmp_path, data
    )
    assert result.test.name == "Friedman test" and result.test.df == 2 and result.test.n == 2
    assert [p["model"] for p in result.pairwise] == ["b", "c"]
    assert all("p_holm" in p for p in result.pairwise)
    text = result.to_text()
    assert "Friedman test" in text and text.count("\n") > 6
    one = run_compare([("solo", narrow, None)], config, [0], tmp_path / "solo", data)
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


def test_verdicts_in_words():
    from formulac.train.compare import ModelResult, _statistics, _verdicts

    def model(label, accs):
        return ModelResult(label, [0, 1, 2, 3], [a / 100 for a in accs], 10, [1.0] * 4, [""] * 4)

    base = model("resnet", [91.0, 91.2, 90.9, 91.1])
    clear = model("better", [92.0, 92.3, 91.8, 92.1])  # +1 point every seed, small spread
    noisy = model("noisy", [91.5, 90.6, 91.4, 90.8])  # up and down: the CI spans zero
    test, pw = _statistics([base, clear])
    v, wilcoxon = _verdicts([base, clear], test, pw)
    assert "cannot reach p < 0.05 with 4 non-zero" in wilcoxon
    assert v.startswith("better vs resnet: better by 1.00 points (95% CI [+")
    test, pw = _statistics([base, noisy])
    words = _verdicts([base, noisy], test, pw)
    assert "spans zero" in words[0] and "no difference either way" in words[0]
    assert words[-1].startswith("The Wilcoxon test cannot reach")
    test, pw = _statistics([base, clear, noisy])
    assert test.name == "Friedman test" and [p["model"] for p in pw] == ["better", "noisy"]
    words = _verdicts([base, clear, noisy], test, pw)
    assert any("Holm-adjusted" in w for w in words)


def test_runs_under_different_recipes_are_not_paired():
    from formulac.train.compare import _same_recipe

    a = {"config": {"recipe": "fashion", "lr": 0.1, "seed": 0, "threads": 1}}
    b = {"config": {"recipe": "fashion", "lr": 0.1, "seed": 1, "threads": 2}}  # seed, threads: free
    _same_recipe([("a", 0, a), ("a", 1, b)])
    c = {"config": {"recipe": "cifar", "lr": 0.2, "seed": 0}}
    with pytest.raises(
        TrainError, match="cannot pair b seed 0 with a seed 0: their recipes differ\n  lr: 0.1 vs 0.2"
    ):
        _same_recipe([("a", 0, a), ("b", 0, c)])


def test_jobs_must_be_positive(tmp_path, data, config):
    with pytest.raises(TrainError, match="--jobs must be at least 1"):
        run_compare([("a", narrow, None)], config, [0], tmp_path, data, jobs=0)
