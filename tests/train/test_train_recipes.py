"""Recipes, the learning-rate schedule and batched augmentation."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from formulac.train.data import TrainError
from formulac.train.recipes import (
    RECIPES,
    EpochPlan,
    TrainConfig,
    augment_batch,
    epoch_plan,
    lr_at,
    make_config,
    milestone_epochs,
    recipe_for_dataset,
    resolve_amp,
)


def test_cifar_recipe_is_he_et_al():
    c = make_config("cifar")
    assert (c.optimizer, c.lr, c.momentum, c.weight_decay, c.nesterov) == ("sgd", 0.1, 0.9, 1e-4, False)
    assert (c.batch_size, c.epochs, c.schedule, c.gamma) == (128, 160, "step", 0.1)
    assert milestone_epochs(c) == [80, 120]
    assert (c.crop_padding, c.flip, c.random_resized_crop) == (4, True, False)
    assert lr_at(c, 0) == 0.1 and lr_at(c, 79, 390, 391) == 0.1
    assert lr_at(c, 80) == pytest.approx(0.01) and lr_at(c, 119) == pytest.approx(0.01)
    assert lr_at(c, 120) == pytest.approx(0.001) and lr_at(c, 159) == pytest.approx(0.001)


def test_imagenet_and_fashion_recipes():
    i = make_config("imagenet")
    assert (i.batch_size, i.epochs, i.lr, i.weight_decay) == (256, 90, 0.1, 1e-4)
    assert milestone_epochs(i) == [30, 60] and i.random_resized_crop and i.flip
    f = make_config("fashion")
    assert f.epochs == 4 and f.batch_size == 128 and f.schedule == "linear" and f.nesterov
    assert (f.crop_padding, f.flip) == (0, True)
    assert (f.label_smoothing, f.ema_decay, f.tta, f.amp, f.channels_last) == (0.1, 0.999, True, "auto", True)
    assert lr_at(f, 1, 0, 10) == pytest.approx(f.lr * (1 - 1 / 4))
    assert lr_at(f, 0, 0, 10) == pytest.approx(f.lr * (1 - 0) * 0.1 / 0.3)  # warming up
    c = make_config("cifar-fast")
    assert (c.epochs, c.batch_size, c.lr, c.crop_padding, c.warmup_epochs) == (15, 256, 0.2, 2, 1.0)
    assert set(RECIPES) == {"cifar", "imagenet", "fashion", "cifar-fast", "text", "transformer"}
    # nanoGPT's Shakespeare-char optimisation, the default for text corpora
    t = make_config(data="text:corpus.txt")
    assert t.recipe == "text" and (t.optimizer, t.lr, t.adam_beta2, t.weight_decay) == (
        "adamw",
        1e-3,
        0.99,
        0.1,
    )
    assert (t.grad_clip, t.batch_size, t.norm_bias_decay, t.flip, t.crop_padding) == (
        1.0,
        64,
        False,
        False,
        0,
    )
    # the paper-faithful recipe has none of the fast recipes' techniques
    p = make_config("cifar")
    assert (p.label_smoothing, p.ema_decay, p.tta, p.amp, p.channels_last) == (0.0, 0.0, False, "none", False)


def test_amp_gpu_is_bf16_on_cuda_only(monkeypatch):
    """The transformer and text recipes' ``gpu`` precision: fp32 on any CPU (bf16 autocast made
    their CPU steps slower even with AMX), bf16 on a CUDA device that has it; ``auto`` is
    unchanged."""
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert make_config("transformer").amp == "gpu" and make_config(data="text:c.txt").amp == "gpu"
    assert resolve_amp("gpu", cpu) == "none"
    assert resolve_amp("none", cuda) == "none" and resolve_amp("bf16", cpu) == "bf16"
    for supported, expected in ((True, "bf16"), (False, "none")):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda supported=supported: supported)
        assert resolve_amp("gpu", cuda) == expected and resolve_amp("auto", cuda) == expected


def test_recipe_by_dataset_and_overrides():
    assert recipe_for_dataset("fashion-mnist") == "fashion"
    assert recipe_for_dataset("mnist") == "fashion"
    assert recipe_for_dataset("cifar100") == "cifar-fast" and recipe_for_dataset("cifar10") == "cifar-fast"
    # a synthetic set stands in for the small sets: their fast recipes
    assert (
        recipe_for_dataset("synthetic:3x8x8") == "cifar-fast"
        and recipe_for_dataset("synthetic") == "cifar-fast"
    )
    assert recipe_for_dataset("synthetic:1x28x28:10") == "fashion"
    assert recipe_for_dataset("cifar") == "cifar"
    assert recipe_for_dataset("imagefolder") == "imagenet"
    assert make_config(data="cifar10").recipe == "cifar-fast"
    c = make_config("cifar", epochs=10, lr=0.2, batch_size=None)  # None keeps the recipe's
    assert (c.epochs, c.lr, c.batch_size) == (10, 0.2, 128)
    assert milestone_epochs(c) == [5, 8]
    with pytest.raises(TrainError, match="unknown training option"):
        make_config("cifar", learning_rate=0.1)
    with pytest.raises(TrainError, match="unknown recipe"):
        make_config("resnet")


def test_the_warm_up_never_raises_the_lr_above_the_base():
    # 0.3 epochs of warm-up with one step per epoch: the first step is past the warm-up
    c = make_config("fashion")
    assert lr_at(c, 0, 0, 1) == pytest.approx(c.lr)
    assert max(lr_at(c, e, s, n) for n in (1, 2, 3, 10) for e in range(c.epochs) for s in range(n)) <= c.lr


def test_a_backbone_changes_the_default_recipe_only():
    mlp = make_config(data="fashion-mnist", backbone="mlp")
    assert (mlp.recipe, mlp.optimizer, mlp.lr, mlp.weight_decay) == ("fashion", "adamw", 2e-3, 0.05)
    assert make_config(data="fashion-mnist", backbone="cifar-resnet") == make_config(data="fashion-mnist")
    # a named recipe is the recipe, and a flag wins over the backbone's change
    assert make_config("fashion", backbone="mlp") == make_config("fashion")
    assert make_config(data="fashion-mnist", backbone="mlp", lr=0.01).lr == 0.01


def test_warmup_and_constant():
    c = make_config("cifar", warmup_epochs=2, schedule="constant")
    assert lr_at(c, 0, 0, 10) == pytest.approx(0.1 * 0.1 / 2)
    assert lr_at(c, 1, 9, 10) == pytest.approx(0.1)
    assert lr_at(c, 5, 3, 10) == pytest.approx(0.1)


@pytest.mark.parametrize(
    "bad",
    [
        dict(epochs=0),
        dict(lr=-1.0),
        dict(amp="fp8"),
        dict(milestones=(0.5, 1.5)),
        dict(schedule="poly"),
        dict(optimizer="adam"),
        dict(momentum=0.0, nesterov=True),
        dict(data_on_device="maybe"),
        dict(limit_train=0),
        # non-finite or out-of-range values that SGD would take and train with silently
        dict(momentum=float("nan")),
        dict(momentum=1.0),
        dict(momentum=2.0),
        dict(weight_decay=float("nan")),
        dict(weight_decay=float("inf")),
        dict(warmup_epochs=float("nan")),
        dict(warmup_epochs=float("inf")),
        dict(lr=1e300),  # beyond float32: the optimizer's step overflows
    ],
)
def test_validation(bad):
    with pytest.raises(TrainError):
        make_config("cifar", **bad)


def test_config_dict_round_trip():
    c = make_config("imagenet", seed=3)
    d = c.to_dict()
    assert isinstance(d["milestones"], list)
    assert TrainConfig.from_dict(d) == c
    assert TrainConfig.from_dict({**d, "from_the_future": 1}) == c


def test_epoch_plan_depends_on_seed_and_epoch_only():
    c = make_config("cifar")
    a = epoch_plan(c, 100, 3, (32, 32))
    b = epoch_plan(c, 100, 3, (32, 32))
    assert torch.equal(a.order, b.order) and torch.equal(a.crop, b.crop)
    assert torch.equal(a.flip, b.flip)
    assert sorted(a.order.tolist()) == list(range(100))
    assert not torch.equal(a.order, epoch_plan(c, 100, 4, (32, 32)).order)
    assert not torch.equal(a.order, epoch_plan(c.replace(seed=1), 100, 3, (32, 32)).order)
    assert int(a.crop.min()) >= 0 and int(a.crop.max()) <= 8
    assert 20 < int(a.flip.sum()) < 80


def _reference_crop_flip(x, offsets, pad, flip):
    p = F.pad(x, (pad, pad, pad, pad))
    h, w = x.shape[2:]
    out = torch.stack(
        [
            p[i, :, offsets[i, 0] : offsets[i, 0] + h, offsets[i, 1] : offsets[i, 1] + w]
            for i in range(x.shape[0])
        ]
    )
    return torch.where(flip[:, None, None, None], out.flip(3), out)


def test_crop_and_flip_match_reference():
    c = make_config("cifar")
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (16, 3, 10, 12), dtype=torch.uint8, generator=g)
    plan = epoch_plan(c, 16, 0, (10, 12))
    mean = torch.tensor([0.0, 0.0, 0.0])
    std = torch.tensor([1 / 255] * 3)  # normalisation becomes the identity on 0..255
    got = augment_batch(x, plan, c, mean, std)
    want = _reference_crop_flip(x, plan.crop, 4, plan.flip).float()
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=0, atol=1e-4)
    # the zero padding shows up: some crops hold zeros at the border
    assert bool((plan.crop == 0).any())


def test_normalisation_and_channels_last():
    c = make_config("cifar", crop_padding=0, flip=False)
    x = torch.full((2, 3, 4, 4), 255, dtype=torch.uint8)
    mean = torch.tensor([0.5, 0.25, 0.0])
    std = torch.tensor([0.5, 0.25, 2.0])
    y = augment_batch(x, epoch_plan(c, 2, 0, (4, 4)), c, mean, std, channels_last=True)
    assert y.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y[:, :, 0, 0], torch.tensor([[1.0, 3.0, 0.5]] * 2))
    xf = x.float()
    augment_batch(xf, None, c, mean, std)
    assert float(xf[0, 0, 0, 0]) == 255.0  # the caller's tensor is left alone


def test_random_resized_crop():
    c = make_config("imagenet")
    x = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    mean, std = torch.zeros(3), torch.full((3,), 1 / 255)
    full = torch.tensor([[1.0, 1.0, 0.0, 0.0]] * 4)  # the whole image: the identity
    plan = EpochPlan(torch.arange(4), rrc=full, flip=torch.tensor([False, True, False, True]))
    y = augment_batch(x, plan, c, mean, std)
    want = torch.where(plan.flip[:, None, None, None], x.flip(3), x).float()
    torch.testing.assert_close(y, want, rtol=0, atol=1e-3)
    # the top-left quarter, scaled up (bilinear: the samples next to the crop's edge reach
    # half a pixel beyond it, so the constant patch is one pixel wider than the crop)
    x2 = torch.zeros((1, 1, 8, 8), dtype=torch.uint8)
    x2[:, :, :5, :5] = 200
    q = EpochPlan(torch.arange(1), rrc=torch.tensor([[0.5, 0.5, -0.5, -0.5]]))
    y2 = augment_batch(x2, q, c, torch.zeros(1), torch.full((1,), 1 / 255))
    torch.testing.assert_close(y2, torch.full((1, 1, 8, 8), 200.0), rtol=0, atol=1e-3)
    drawn = epoch_plan(c, 500, 0, (16, 16))
    assert drawn.rrc is not None and drawn.crop is None
    a_x, a_y, b_x, b_y = drawn.rrc.unbind(1)
    assert bool((a_x <= 1).all() and (a_y <= 1).all())
    # every box lies inside the image: |b| + a <= 1
    assert bool(((b_x.abs() + a_x) <= 1 + 1e-6).all() and ((b_y.abs() + a_y) <= 1 + 1e-6).all())
    assert float((a_x * a_y).min()) >= 0.08 - 1e-6


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["cosine", "linear", "constant", "step"]),
    st.floats(0.001, 5.0),
    st.integers(1, 6),
    st.integers(1, 50),
    st.data(),
)
def test_the_lr_never_exceeds_its_base_value(schedule, warmup, epochs, steps, data):
    """Even a warm-up shorter than one step (a text epoch of few steps) starts at the base lr."""
    config = make_config("text", schedule=schedule, warmup_epochs=warmup, epochs=epochs)
    epoch = data.draw(st.integers(0, epochs - 1))
    step = data.draw(st.integers(0, steps - 1))
    assert 0 <= lr_at(config, epoch, step, steps) <= config.lr * (1 + 1e-12)
