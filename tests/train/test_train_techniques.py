"""The training techniques the fast recipes use, checked on synthetic data (not by training to
accuracy): the linear schedule, label smoothing and batch-norm/bias decay groups, weight
averaging used for evaluation, flip test-time augmentation."""

from itertools import pairwise

import pytest
import torch
from tiny_nets import synthetic_config, two_conv_bn_net

from formulac.train import data as D
from formulac.train import evaluate, load_checkpoint, make_config, read_metrics, train
from formulac.train.averaging import WeightAverage
from formulac.train.loop import make_optimizer
from formulac.train.recipes import lr_at


def cfg(**kw):
    # the fashion recipe with its techniques off unless a test turns them on
    techniques_off = {"ema_decay": 0.0, "tta": False, "amp": "none", "channels_last": False}
    return synthetic_config("fashion", **{**techniques_off, **kw})


def test_linear_schedule_with_warmup_at_given_steps():
    c = make_config("fashion", lr=0.1, epochs=4, schedule="linear", warmup_epochs=1.0)
    steps = 10
    # warm-up: (t + 1/steps) / warmup of the linearly decaying value
    assert lr_at(c, 0, 0, steps) == pytest.approx(0.1 * 1.0 * 0.1)
    assert lr_at(c, 0, 4, steps) == pytest.approx(0.1 * (1 - 0.4 / 4) * 0.5)
    assert lr_at(c, 1, 0, steps) == pytest.approx(0.1 * 0.75)
    assert lr_at(c, 2, 0, steps) == pytest.approx(0.05)
    assert lr_at(c, 3, 9, steps) == pytest.approx(0.1 * 0.1 / 4)
    lrs = [lr_at(c, e, s, steps) for e in range(4) for s in range(steps)]
    top = lrs.index(max(lrs))
    assert all(a <= b for a, b in pairwise(lrs[: top + 1]))  # rises, then
    assert all(a >= b for a, b in pairwise(lrs[top:]))  # falls to ~0
    with pytest.raises(D.TrainError, match="linear"):
        make_config("fashion", schedule="poly")


def test_no_decay_on_norm_and_bias_groups():
    net = two_conv_bn_net(3, 4, 8)
    c = cfg(weight_decay=5e-4, norm_bias_decay=False)
    groups = make_optimizer(net, c).param_groups
    assert [g["weight_decay"] for g in groups] == [5e-4, 0.0]
    assert all(p.ndim >= 2 for p in groups[0]["params"]) and all(p.ndim < 2 for p in groups[1]["params"])
    assert sum(len(g["params"]) for g in groups) == len(list(net.parameters()))
    (one,) = make_optimizer(net, cfg(weight_decay=5e-4)).param_groups
    assert one["weight_decay"] == 5e-4 and len(one["params"]) == len(list(net.parameters()))


def test_adamw_reads_adam_beta2_on_image_runs():
    # image and language runs build one optimizer: --adam-beta2 is not ignored for images
    (group,) = make_optimizer(two_conv_bn_net(3, 4, 8), cfg(optimizer="adamw", adam_beta2=0.95)).param_groups
    assert group["betas"] == (0.9, 0.95)
    (default,) = make_optimizer(two_conv_bn_net(3, 4, 8), cfg(optimizer="adamw")).param_groups
    assert default["betas"] == (0.9, 0.999)  # torch's default: image runs train as before


def test_the_fast_recipe_lowers_the_loss(tmp_path, data):
    # the recipe itself (linear schedule, label smoothing, EMA, flip TTA, channels_last) on a few
    # tiny epochs: a faster warm-up and average, no weight decay on norms and biases, fp32
    config = synthetic_config(
        "fashion", epochs=4, lr=0.2, warmup_epochs=0.5, norm_bias_decay=False, ema_decay=0.9, amp="none"
    )
    train(two_conv_bn_net, config, tmp_path / "run", progress=False, quiet=True, dataset=data)
    rows = read_metrics(tmp_path / "run")
    assert rows[-1]["train_loss"] < 0.8 * rows[0]["train_loss"]
    assert rows[-1]["test_loss"] < rows[0]["test_loss"]


def test_weight_average_follows_its_formula():
    torch.manual_seed(0)
    net = two_conv_bn_net(3, 4, 8)
    avg = WeightAverage(net, decay=0.9)
    start = {k: v.clone() for k, v in net.state_dict().items()}
    expected = {k: v.clone().float() for k, v in start.items()}
    for t in range(1, 4):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(0.1 * t)
            net[1].running_mean.add_(1.0)
            net[1].num_batches_tracked.add_(1)
        avg.update()
        d = min(0.9, (1 + t) / (10 + t))
        for k, v in net.state_dict().items():
            if v.is_floating_point():
                expected[k] = d * expected[k] + (1 - d) * v
            else:
                expected[k] = v.clone()
    for k, v in avg.model.state_dict().items():
        assert torch.allclose(v.float(), expected[k].float(), atol=1e-6), k
    assert not any(p.requires_grad for p in avg.model.parameters())
    with pytest.raises(ValueError):
        WeightAverage(net, 1.0)


def test_evaluation_uses_the_averaged_weights(tmp_path, data):
    config = cfg(epochs=2, lr=0.2, ema_decay=0.8)
    train(two_conv_bn_net, config, tmp_path / "run", progress=False, quiet=True, dataset=data)
    ck = load_checkpoint(tmp_path / "run")
    assert ck["average"]["updates"] == 2 * (256 // 32)
    logged = read_metrics(tmp_path / "run")[-1]["test_loss"]
    mean = torch.tensor(data.mean)
    std = torch.tensor(data.std)

    def loss_with(state):
        net = two_conv_bn_net(3, 4, 8)
        net.load_state_dict(state)
        return evaluate(
            net, data.test_images, data.test_labels, mean, std, config=config, device=torch.device("cpu")
        )[0]

    assert loss_with(ck["average"]["model"]) == pytest.approx(logged, rel=1e-9)
    assert loss_with(ck["model"]) != pytest.approx(logged, rel=1e-3)
    # resuming restores the average too: the resumed run ends where an uninterrupted one does
    more = config.replace(epochs=3)
    train(two_conv_bn_net, more, tmp_path / "whole", progress=False, quiet=True, dataset=data)

    class Stop(Exception):
        pass

    def stop(record):
        raise Stop

    with pytest.raises(Stop):
        train(
            two_conv_bn_net,
            more,
            tmp_path / "cut",
            progress=False,
            quiet=True,
            dataset=data,
            on_epoch_end=stop,
        )
    train(two_conv_bn_net, more, tmp_path / "cut", resume=True, progress=False, quiet=True, dataset=data)
    a, b = load_checkpoint(tmp_path / "whole"), load_checkpoint(tmp_path / "cut")
    assert all(torch.equal(a["average"]["model"][k], b["average"]["model"][k]) for k in a["average"]["model"])


def _mirror_symmetric(images):
    return torch.maximum(images, images.flip(3))


def test_flip_tta_changes_nothing_for_a_flip_invariant_input(data):
    torch.manual_seed(3)
    net = two_conv_bn_net(3, 4, 8).eval()
    mean, std = torch.tensor(data.mean), torch.tensor(data.std)
    cpu = torch.device("cpu")
    sym = _mirror_symmetric(data.test_images)
    plain = evaluate(net, sym, data.test_labels, mean, std, config=cfg(), device=cpu)
    tta = evaluate(net, sym, data.test_labels, mean, std, config=cfg(tta=True), device=cpu)
    assert tta[0] == pytest.approx(plain[0], rel=1e-6) and tta[1] == plain[1]
    # ... and does change the logits where the input is not symmetric
    plain = evaluate(net, data.test_images, data.test_labels, mean, std, config=cfg(), device=cpu)
    tta = evaluate(net, data.test_images, data.test_labels, mean, std, config=cfg(tta=True), device=cpu)
    assert tta[0] != pytest.approx(plain[0], rel=1e-6)
    cl = evaluate(
        net,
        data.test_images,
        data.test_labels,
        mean,
        std,
        config=cfg(tta=True, channels_last=True),
        device=cpu,
    )
    assert cl[0] == pytest.approx(tta[0], rel=1e-5)
