"""The backbone parts: registry, torch-only files, published parameter counts, torchvision
layout and golden outputs, and the hand-written reference networks.

The networks are put together by ``assemble`` below, a small stand-in for the code generator
that follows the backbone contract exactly as the generator does: the step module subclasses
the branch and adds ``downsample``, stages are ``nn.ModuleList`` attributes registered between
the stem and ``build_head``.
"""

from __future__ import annotations

import ast
import inspect
import math
import subprocess
import sys
from pathlib import Path

import pytest
import reference_models as ref
import torch
import torch.nn as nn
import torch.nn.functional as F
from fixtures_path import REPO, TORCHVISION, assert_matches_golden

import formulac
from formulac import FormulacError
from formulac.codegen.backbones import BACKBONES, BackboneError, BackboneInfo, Stage, get_backbone

BACKBONE_DIR = REPO / "formulac" / "codegen" / "backbones"

# the formula each backbone is published with: relu(P(x) + F(x)) or P(x) + F(x)
POST_RELU = {
    "cifar-resnet": True,
    "imagenet-resnet": True,
    "resnext": True,
    "preact-cifar": False,
    "wrn": False,
    "mlp": False,
    "vit": False,
    "gpt": False,
}

# a small configuration of every backbone: (depth, options, input shape)
SMALL = {
    "cifar-resnet": (8, {}, (2, 3, 16, 16)),
    "imagenet-resnet": (18, {}, (2, 3, 32, 32)),
    "preact-cifar": (8, {}, (2, 3, 16, 16)),
    "wrn": (10, {"widen_factor": 2, "dropout": 0.3}, (2, 3, 16, 16)),
    "resnext": (11, {"cardinality": 2, "base_width": 4}, (2, 3, 16, 16)),
    "mlp": (2, {"width": 32, "stages": [32, 48]}, (2, 1, 28, 28)),
    "vit": (2, {"dim": 16, "heads": 2, "patch": 4, "input_size": 8}, (2, 3, 8, 8)),
    "gpt": (2, {"dim": 16, "heads": 2, "context": 8}, (2, 8)),
}


def example_input(shape, classes):
    """An image batch of ``shape``, or token ids below ``classes`` (the vocabulary) for a
    (batch, tokens) shape."""
    if len(shape) == 2:
        return torch.randint(0, classes, shape)
    return torch.randn(shape)


def output_shape(shape, classes):
    """(batch, classes) logits, or (batch, tokens, vocabulary) for a language model."""
    return (*shape, classes) if len(shape) == 2 else (shape[0], classes)


def _defs(namespace):
    if isinstance(namespace, dict):
        return namespace.__getitem__
    return lambda name: getattr(namespace, name)


def assemble(name, depth=None, num_classes=None, in_channels=None, post_relu=None, namespace=None, **options):
    """Build ``name``'s network for the formula x_{n+1} = relu(P(x_n) + F(x_n)) (or without
    the relu), P the projection at a stage's first step, the identity elsewhere.
    ``namespace`` (a dict) takes the definitions from there instead of the module."""
    info = get_backbone(name)
    stages = info.layout(depth, **options)
    lookup = _defs(info.module if namespace is None else namespace)
    Net, Branch = lookup(info.net_class), lookup(info.branch_class)
    project = lookup(info.projection_function)
    post = POST_RELU[info.name] if post_relu is None else post_relu
    nc = info.default_num_classes if num_classes is None else num_classes
    ic = info.default_in_channels if in_channels is None else in_channels
    net_kwargs = info.net_kwargs(**options)

    class Step(Branch):
        def __init__(self, in_width, width, stride, downsample, **branch_options):
            super().__init__(in_width, width, stride, **branch_options)
            self.downsample = downsample

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            out = identity + super().forward(x)
            return F.relu(out) if post else out

    class Model(Net):
        def __init__(self):
            super().__init__(num_classes=nc, in_channels=ic, **net_kwargs)
            width = self.stem_width
            for stage in stages:
                steps = []
                for i in range(stage.steps):
                    stride = stage.stride if i == 0 else 1
                    downsample = project(width, stage.width, stride, **stage.projection_options)
                    steps.append(Step(width, stage.width, stride, downsample, **stage.branch_options))
                    width = stage.width
                setattr(self, stage.name, nn.ModuleList(steps))
            self.build_head(width)

        def forward(self, x):
            x = self.stem(x)
            for stage in stages:
                for step in getattr(self, stage.name):
                    x = step(x)
            return self.head(x)

    model = Model()
    model.step_class = Step
    return model


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_on_meta(name, depth=None, **options) -> int:
    with torch.device("meta"):
        return count(assemble(name, depth, **options))


# ------------------------------------------------------------------------------------------
# registry


def test_registry_names_and_fields():
    assert set(BACKBONES) == {
        "cifar-resnet",
        "imagenet-resnet",
        "preact-cifar",
        "wrn",
        "resnext",
        "mlp",
        "vit",
        "gpt",
    }
    for name, info in BACKBONES.items():
        assert isinstance(info, BackboneInfo) and info.name == name
        assert get_backbone(name) is info
        assert inspect.ismodule(info.module)
        assert info.module.__name__ == info.module_name
        assert isinstance(info.net, type) and issubclass(info.net, nn.Module)
        assert isinstance(info.branch, type) and issubclass(info.branch, nn.Module)
        assert callable(info.projection)
        assert info.description and isinstance(info.default_depth, int)
        # an image side, or a language model's context (its input is a sequence of tokens)
        assert info.default_input_size in (28, 32, 224, info.defaults.get("context"))
        info.validate(depth=info.default_depth)
        stages = info.layout(info.default_depth)
        assert stages and all(isinstance(s, Stage) for s in stages)
        if not info.block_kinds:  # the CNNs' stages; a transformer's one stage is "layers"
            assert [s.name for s in stages] == ["layer%d" % (i + 1) for i in range(len(stages))]
        assert info.layout() == stages  # the default depth
        assert info.resolve()["depth"] == info.default_depth
        assert not hasattr(info.branch, "downsample")
    with pytest.raises(dataclass_error()):
        get_backbone("wrn").name = "x"


def dataclass_error():
    import dataclasses

    return dataclasses.FrozenInstanceError


def test_get_backbone_unknown_lists_names_and_accepts_spellings():
    with pytest.raises(BackboneError) as exc:
        get_backbone("densenet")
    message = str(exc.value)
    assert "densenet" in message
    for name in BACKBONES:
        assert name in message
    assert get_backbone("CIFAR_ResNet") is BACKBONES["cifar-resnet"]


def test_registry_imports_without_torch():
    code = (
        "import sys, formulac.codegen.backbones as b; "
        "b.get_backbone('wrn').layout(28); assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_layouts():
    cifar = get_backbone("cifar-resnet").layout(20, shortcut="B")
    assert [(s.width, s.stride, s.steps) for s in cifar] == [(16, 1, 3), (32, 2, 3), (64, 2, 3)]
    assert all(s.projection_options == {"shortcut": "B"} for s in cifar)
    assert get_backbone("cifar-resnet").layout(20)[0].projection_options == {"shortcut": "A"}
    r50 = get_backbone("imagenet-resnet").layout(50, groups=32, width_per_group=4)
    assert [(s.width, s.stride, s.steps) for s in r50] == [
        (256, 1, 3),
        (512, 2, 4),
        (1024, 2, 6),
        (2048, 2, 3),
    ]
    assert r50[0].branch_options == {"bottleneck": True, "groups": 32, "base_width": 4}
    r18 = get_backbone("imagenet-resnet").layout(18)
    assert [(s.width, s.steps) for s in r18] == [(64, 2), (128, 2), (256, 2), (512, 2)]
    wrn = get_backbone("wrn").layout(40, widen_factor=4)
    assert [(s.width, s.stride, s.steps) for s in wrn] == [(64, 1, 6), (128, 2, 6), (256, 2, 6)]
    rx = get_backbone("resnext").layout(29)
    assert [(s.width, s.steps) for s in rx] == [(256, 3), (512, 3), (1024, 3)]
    mlp = get_backbone("mlp").layout(3, stages=[32, 64])
    assert [(s.name, s.width, s.stride, s.steps) for s in mlp] == [("layer1", 32, 1, 3), ("layer2", 64, 1, 3)]
    assert get_backbone("mlp").stem_width(width=32) == 32
    assert get_backbone("wrn").stem_width() == 16


@pytest.mark.parametrize(
    "name, options, fragment",
    [
        ("cifar-resnet", {"depth": 21}, "6n+2"),
        ("cifar-resnet", {"depth": 2}, "6n+2"),
        ("cifar-resnet", {"depth": 20.0}, "6n+2"),
        ("cifar-resnet", {"depth": 20, "shortcut": "C"}, "'shortcut'"),
        ("cifar-resnet", {"depth": 20, "widen_factor": 2}, "unknown option 'widen_factor'"),
        ("cifar-resnet", {"depth": 20, "num_classes": 0}, "'num_classes'"),
        ("imagenet-resnet", {"depth": 20}, "18, 34, 50, 101, 152"),
        ("imagenet-resnet", {"depth": 18, "groups": 32}, "basic branches"),
        ("imagenet-resnet", {"depth": 50, "width_per_group": 0}, "'width_per_group'"),
        ("preact-cifar", {"depth": 111}, "6n+2"),
        ("wrn", {"depth": 26}, "6n+4"),
        ("wrn", {"depth": 28, "widen_factor": True}, "'widen_factor'"),
        ("wrn", {"depth": 28, "dropout": 1.0}, "'dropout'"),
        ("wrn", {"depth": 28, "shortcut": "A"}, "unknown option 'shortcut'"),
        ("resnext", {"depth": 28}, "9n+2"),
        ("resnext", {"depth": 29, "cardinality": -1}, "'cardinality'"),
        ("mlp", {"depth": 0}, "positive integer"),
        ("mlp", {"depth": 2, "stages": []}, "'stages'"),
        ("mlp", {"depth": 2, "layernorm": "yes"}, "'layernorm'"),
    ],
)
def test_validate_rejects_bad_options(name, options, fragment):
    info = get_backbone(name)
    with pytest.raises(BackboneError) as exc:
        info.validate(**options)
    assert isinstance(exc.value, FormulacError)
    assert fragment in str(exc.value)
    assert repr(name) in str(exc.value)
    depth = options.pop("depth")
    with pytest.raises(BackboneError):
        info.layout(depth, **options)


# ------------------------------------------------------------------------------------------
# the torch-only files


ALLOWED_IMPORTS = {"math", "torch", "torch.nn", "torch.nn.functional"}


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_backbone_file_is_torch_only(name):
    info = get_backbone(name)
    path = Path(info.module.__file__)
    assert path.parent == BACKBONE_DIR
    tree = ast.parse(path.read_text())
    for i, node in enumerate(tree.body):
        if isinstance(node, ast.Import):
            assert {a.name for a in node.names} <= ALLOWED_IMPORTS, ast.dump(node)
        elif isinstance(node, ast.ImportFrom):  # the shared layers alone, copied with the file
            assert (node.level, node.module) == (1, "layers"), ast.dump(node)
        elif isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            pass
        elif i == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            pass  # the module docstring
        else:
            raise AssertionError("module-level code in %s: %s" % (path.name, ast.dump(node)))


def test_shared_layers_are_torch_only_and_stand_alone():
    """Every function of backbones/layers.py reads no name of that module but torch's, and each
    backbone file that imports one has it among the definitions the generator copies."""
    path = BACKBONE_DIR / "layers.py"
    tree = ast.parse(path.read_text())
    functions = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    for node in tree.body:
        if isinstance(node, ast.Import):
            assert {a.name for a in node.names} <= ALLOWED_IMPORTS, ast.dump(node)
        elif isinstance(node, ast.FunctionDef):
            read = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
            assert not read & (functions - {node.name}), node.name
        else:
            assert isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant), ast.dump(node)
    used = set()
    for name in BACKBONES:
        info = get_backbone(name)
        imported = {n for n in functions if getattr(info.module, n, None) is not None}
        assert imported <= set(info.definitions)
        used |= imported
    assert used == functions  # none left unused


IMPORTS = "import math\nimport torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n"


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_definitions_are_self_contained(name):
    """The generator copies the backbone's definitions alone (the shared layers it imports, the
    net class, the block classes, the projection function; inspect.getsource) under the four
    imports: that must be enough."""
    info = get_backbone(name)
    parts = [IMPORTS] + [inspect.getsource(getattr(info.module, attr)) for attr in info.definitions]
    namespace: dict = {"__name__": "emitted"}
    exec(compile("\n\n".join(parts), "<emitted %s>" % name, "exec"), namespace)
    depth, options, shape = SMALL[name]
    torch.manual_seed(0)
    model = assemble(name, depth, num_classes=5, namespace=namespace, **options)
    torch.manual_seed(0)
    original = assemble(name, depth, num_classes=5, **options)
    assert list(model.state_dict()) == list(original.state_dict())
    model.load_state_dict(original.state_dict())
    model.eval(), original.eval()
    x = example_input(shape, 5)
    torch.testing.assert_close(model(x), original(x))


# ------------------------------------------------------------------------------------------
# branches and projections


@pytest.mark.parametrize(
    "name, options, names",
    [
        ("cifar-resnet", {}, ["conv1", "bn1", "relu", "conv2", "bn2"]),
        ("imagenet-resnet", {"bottleneck": False}, ["conv1", "bn1", "relu", "conv2", "bn2"]),
        ("imagenet-resnet", {"bottleneck": True}, ["conv1", "bn1", "conv2", "bn2", "conv3", "bn3", "relu"]),
        ("resnext", {}, ["conv1", "bn1", "conv2", "bn2", "conv3", "bn3", "relu"]),
        ("preact-cifar", {}, ["bn1", "relu", "conv1", "bn2", "dropout", "conv2"]),
        ("wrn", {"dropout": 0.3}, ["bn1", "relu", "conv1", "bn2", "dropout", "conv2"]),
        ("mlp", {"layernorm": True}, ["norm", "fc1", "relu", "fc2"]),
    ],
)
def test_branch_layer_names(name, options, names):
    info = get_backbone(name)
    width = 64 if name == "mlp" else 256
    branch = info.branch(width, width, 1, **options)
    assert [n for n, _ in branch.named_children()] == names
    assert not hasattr(branch, "downsample")


def test_bottleneck_branch_widths():
    Branch = get_backbone("imagenet-resnet").branch
    # resnext50_32x4d layer1: inner width 128, 32 groups; wide_resnet50_2: inner 128
    b = Branch(64, 256, 1, bottleneck=True, groups=32, base_width=4)
    assert b.conv2.weight.shape == (128, 4, 3, 3) and b.conv2.groups == 32
    b = Branch(64, 256, 2, bottleneck=True, base_width=128)
    assert b.conv2.weight.shape == (128, 128, 3, 3) and b.conv2.stride == (2, 2)
    assert b.conv1.stride == (1, 1)  # v1.5: the stride is on the 3x3 convolution
    with pytest.raises(ValueError):
        Branch(64, 64, 1, bottleneck=False, groups=2)
    rx = get_backbone("resnext").branch(512, 1024, 2, cardinality=8, base_width=64)
    assert rx.conv2.weight.shape == (2048, 256, 3, 3) and rx.conv2.groups == 8


def test_cifar_option_a_projection():
    project = get_backbone("cifar-resnet").projection
    assert project(16, 16, 1, shortcut="A") is None
    assert project(16, 16, 1, shortcut="B") is None
    a = project(16, 32, 2, shortcut="A")
    assert count(a) == 0 and not a.state_dict()
    x = torch.randn(2, 16, 9, 9)
    expected = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, 8, 8))
    assert torch.equal(a(x), expected)
    assert torch.equal(a(x.to(memory_format=torch.channels_last)), expected)
    # odd width difference: the extra zero channel goes behind
    odd = project(16, 19, 1, shortcut="A")
    assert torch.equal(odd(x), F.pad(x, (0, 0, 0, 0, 1, 2)))
    # subsampling only
    assert torch.equal(project(16, 16, 2, shortcut="A")(x), x[:, :, ::2, ::2])
    # fewer channels (a formula that concatenates): 1x1 conv + BN whatever the option
    shrink = project(48, 32, 2, shortcut="A")
    assert list(shrink.state_dict())[:2] == ["0.weight", "1.weight"]
    assert shrink(torch.randn(2, 48, 8, 8)).shape == (2, 32, 4, 4)
    b = project(16, 32, 2, shortcut="B")
    assert [k for k, v in b.state_dict().items()] == [
        "0.weight",
        "1.weight",
        "1.bias",
        "1.running_mean",
        "1.running_var",
        "1.num_batches_tracked",
    ]
    with pytest.raises(ValueError):
        project(16, 32, 2, shortcut="C")


def test_other_projections():
    assert get_backbone("imagenet-resnet").projection(64, 64, 1) is None
    assert next(iter(get_backbone("imagenet-resnet").projection(64, 128, 2).state_dict())) == "0.weight"
    assert next(iter(get_backbone("imagenet-resnet").projection(64, 64, 2).state_dict())) == "0.weight"
    wrn = get_backbone("wrn").projection(16, 160, 1)
    assert list(wrn.state_dict()) == ["0.weight"]  # no batch norm
    pre = get_backbone("preact-cifar").projection
    assert list(pre(16, 32, 2).state_dict()) == ["0.weight"]
    assert count(pre(16, 32, 2, shortcut="A")) == 0
    assert list(get_backbone("resnext").projection(64, 256, 1).state_dict())[:2] == ["0.weight", "1.weight"]
    mlp = get_backbone("mlp").projection
    assert mlp(32, 32, 1) is None and mlp(32, 48, 1).weight.shape == (48, 32)
    with pytest.raises(ValueError):
        mlp(32, 48, 2)


# ------------------------------------------------------------------------------------------
# parameter counts


@pytest.mark.parametrize(
    "depth, expected",
    [
        (20, 269_722),
        (32, 464_154),
        (44, 658_586),
        (56, 853_018),
        (110, 1_727_962),
        (1202, 19_421_274),
    ],
)
def test_cifar_resnet_published_counts(depth, expected):
    assert count_on_meta("cifar-resnet", depth, num_classes=10) == expected


def test_cifar_resnet_option_b_count():
    # option B adds conv1x1 + BN at the two stage boundaries: 16*32 + 64 + 32*64 + 128
    assert count_on_meta("cifar-resnet", 20, shortcut="B") == 269_722 + 2_752


@pytest.mark.parametrize(
    "depth, options, expected_m, exact",
    [
        (28, {"widen_factor": 10}, 36.48, 36_479_194),
        (40, {"widen_factor": 4}, 8.95, 8_949_210),
    ],
)
def test_wrn_published_counts(depth, options, expected_m, exact):
    n = count_on_meta("wrn", depth, **options)
    assert round(n / 1e6, 2) == expected_m
    assert n == exact


@pytest.mark.parametrize(
    "options, expected_m, exact",
    [
        ({"cardinality": 8, "base_width": 64}, 34.4, 34_426_698),
        ({"cardinality": 16, "base_width": 64}, 68.1, 68_155_210),
    ],
)
def test_resnext_published_counts(options, expected_m, exact):
    # Xie et al. 2017, table 7: 34.4M and 68.1M. Their figures agree with the weights of the
    # convolutions and the classifier rounded (34.37M, 68.05M), or with all parameters
    # truncated (34.43M, 68.16M); the architecture is that of the authors' Torch code and of
    # the usual PyTorch port (prlz77/ResNeXt.pytorch).
    with torch.device("meta"):
        model = assemble("resnext", 29, **options)
    n = count(model)
    assert n == exact
    assert math.floor(n / 1e5) / 10 == expected_m
    norm = sum(count(m) for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert round((n - norm) / 1e6, 1) == expected_m


def test_preact_counts():
    # ~1.7M for PreAct ResNet-110 (He et al. 2016). With option A the count equals the
    # original ResNet-110's: no stem BN (-16*2) but a final BN (+64*2), and the first BN of
    # the two boundary branches acts on the narrower input (-16*2, -32*2).
    assert count_on_meta("preact-cifar", 110, shortcut="A") == 1_727_962
    n = count_on_meta("preact-cifar", 110)  # option B: 1x1 convolutions, no BN
    assert n == 1_727_962 + 16 * 32 + 32 * 64
    assert round(n / 1e6, 1) == 1.7
    with torch.device("meta"):
        model = assemble("preact-cifar", 20)
    assert [n for n, _ in model.named_children()] == ["conv1", "layer1", "layer2", "layer3", "bn", "linear"]


# ------------------------------------------------------------------------------------------
# torchvision layout and golden outputs


# the layout against torchvision's fixture: tests/codegen/test_compile.py (through compile)


@pytest.mark.parametrize("model_name", ["resnet18", "resnet34"])
def test_imagenet_resnet_golden_logits(model_name):
    depth, options = TORCHVISION[model_name]
    assert_matches_golden(
        ref.deterministic_weights_(assemble("imagenet-resnet", depth, **options)), model_name
    )


def test_imagenet_init_is_torchvision():
    torch.manual_seed(0)
    model = assemble("imagenet-resnet", 18)
    assert torch.equal(model.layer1[0].bn1.weight, torch.ones(64))
    assert torch.equal(model.layer2[0].downsample[1].bias, torch.zeros(128))
    w = model.layer4[0].conv2.weight  # fan_out = 512 * 9
    assert w.std().item() == pytest.approx(math.sqrt(2 / (512 * 9)), rel=0.05)


# ------------------------------------------------------------------------------------------
# forward, backward, memory formats, compile


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_forward_backward(name):
    depth, options, shape = SMALL[name]
    torch.manual_seed(0)
    model = assemble(name, depth, num_classes=7, **options)
    assert model.stem_width == get_backbone(name).stem_width(**options)
    x = example_input(shape, 7)
    out = model(x)
    assert out.shape == output_shape(shape, 7)
    out.square().sum().backward()
    for key, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), key
    if len(shape) == 4 and name != "mlp":
        model.eval()
        with torch.no_grad():
            a = model(x)
            b = model.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_autocast_bfloat16(name):
    depth, options, shape = SMALL[name]
    model = assemble(name, depth, num_classes=7, **options)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(example_input(shape, 7))
    assert out.shape == output_shape(shape, 7) and torch.isfinite(out.float()).all()


def test_mlp_inputs():
    model = assemble("mlp", 3, width=32)
    assert [n for n, _ in model.named_children()] == ["embed", "relu", "layer1", "fc"]
    assert model(torch.randn(4, 1, 28, 28)).shape == (4, 10)
    assert model(torch.randn(4, 784)).shape == (4, 10)
    one_d = assemble(
        "mlp", 2, in_channels=20, input_size=1, num_classes=3, width=16, stages=[16, 24], layernorm=True
    )
    assert one_d(torch.randn(5, 20)).shape == (5, 3)
    assert one_d.layer2[0].downsample.weight.shape == (24, 16)
    assert one_d.layer2[1].downsample is None
    rgb = assemble("mlp", 1, in_channels=3, input_size=8, num_classes=2)
    assert rgb(torch.randn(2, 3, 8, 8)).shape == (2, 2)


def test_torch_compile_fullgraph_cifar_step():
    torch.manual_seed(0)
    model = assemble("cifar-resnet", 8)
    step = model.layer2[0]  # stride 2, option-A projection
    x = torch.randn(2, 16, 8, 8, requires_grad=True)
    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(x), step(x))
    compiled(x).sum().backward()
    assert x.grad is not None and step.conv1.weight.grad is not None


# ------------------------------------------------------------------------------------------
# the hand-written reference networks


@pytest.mark.parametrize("shortcut", ["A", "B"])
def test_hand_resnet_cifar_matches_backbone(shortcut):
    torch.manual_seed(0)
    hand = ref.HandResNetCifar(depth=20, shortcut=shortcut)
    built = assemble("cifar-resnet", 20, shortcut=shortcut)
    expected = {20: {"A": 269_722, "B": 272_474}}[20][shortcut]
    assert count(hand) == count(built) == expected
    hand_sd, built_sd = hand.state_dict(), built.state_dict()
    assert list(hand_sd) == list(built_sd)
    assert [v.shape for v in hand_sd.values()] == [v.shape for v in built_sd.values()]
    ref.deterministic_weights_(hand)
    built.load_state_dict(hand.state_dict())
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(built(x), hand(x))  # train mode (batch statistics)
    hand.eval(), built.eval()
    torch.testing.assert_close(built(x), hand(x))


def test_hand_resnet_cifar_counts():
    for depth, expected in [(20, 269_722), (32, 464_154), (56, 853_018)]:
        with torch.device("meta"):
            assert count(ref.HandResNetCifar(depth)) == expected


def _plain_residual_copy(hand):
    """The backbone network of x_{n+1} = P(x_n) + F(x_n) with ``hand``'s weights."""
    built = assemble("cifar-resnet", 20, post_relu=False)
    state = {k: v for k, v in hand.state_dict().items() if not k.endswith(".k")}
    built.load_state_dict(state)
    return built


def test_hand_lm_resnet():
    torch.manual_seed(0)
    lm = ref.deterministic_weights_(ref.HandLMResNetCifar(depth=20, k_init=1.0)).eval()
    keys = list(lm.state_dict())
    assert "layer1.0.k" in keys and "layer3.2.k" in keys
    assert sum(k.endswith(".k") for k in keys) == 9
    assert lm.layer2[0].k.shape == ()
    assert count(lm) == 269_722 + 9
    x = torch.randn(2, 3, 32, 32)
    # with k = 1 the scheme is x_{n+1} = x_n + F(x_n)
    torch.testing.assert_close(lm(x), _plain_residual_copy(lm).eval()(x))
    # with k != 1 the previous state matters, and k learns
    with torch.no_grad():
        for stage in lm.stages():
            for block in stage:
                block.k.fill_(1.2)
    lm.train()
    out = lm(x)
    assert not torch.allclose(out, _plain_residual_copy(lm).train()(x))
    out.sum().backward()
    assert lm.layer1[1].k.grad is not None and lm.layer1[1].k.grad != 0
    assert ref.HandLMResNetCifar(depth=8, post_relu=True)(x).shape == (2, 10)


def test_hand_lm_resnet_boundary_policy():
    """At a stage's first step both history states are the projected input."""
    torch.manual_seed(0)
    lm = ref.HandLMResNetCifar(depth=8, k_init=1.5).eval()  # one block per stage
    built = _plain_residual_copy_depth8(lm)
    x = torch.randn(2, 3, 16, 16)
    # k*p + (1-k)*p = p: every step of a one-block-per-stage LM network is a plain step
    torch.testing.assert_close(lm(x), built(x), rtol=1e-5, atol=1e-5)


def _plain_residual_copy_depth8(hand):
    built = assemble("cifar-resnet", 8, post_relu=False)
    built.load_state_dict({k: v for k, v in hand.state_dict().items() if not k.endswith(".k")})
    return built.eval()


def test_hand_momentum_resnet():
    torch.manual_seed(0)
    mom = ref.deterministic_weights_(ref.HandMomentumResNetCifar(depth=20, gamma=0.0)).eval()
    assert count(mom) == 269_722
    x = torch.randn(2, 3, 32, 32)
    # gamma = 0: v_{n+1} = F(x_n), x_{n+1} = x_n + F(x_n)
    torch.testing.assert_close(mom(x), _plain_residual_copy(mom).eval()(x))
    mom.gamma = 0.9
    out = mom(x)
    assert not torch.allclose(out, _plain_residual_copy(mom).eval()(x))
    # by hand, the first stage: v1 = 0.1 F0(x0), x1 = x0 + v1, v2 = 0.9 v1 + 0.1 F1(x1), ...
    with torch.no_grad():
        x0 = mom.stem(x)
        v = 0.1 * mom.layer1[0].branch(x0)
        x1 = x0 + v
        v = 0.9 * v + 0.1 * mom.layer1[1].branch(x1)
        x2 = x1 + v
        v = 0.9 * v + 0.1 * mom.layer1[2].branch(x2)
        x3 = x2 + v
        # the second stage restarts v at 0 and starts from the projected input
        v = 0.1 * mom.layer2[0].branch(x3)
        x4 = mom.layer2[0].downsample(x3) + v
        y = x4
        for block in list(mom.layer2)[1:]:
            v = 0.9 * v + 0.1 * block.branch(y)
            y = y + v
        v = 0.1 * mom.layer3[0].branch(y)
        y = mom.layer3[0].downsample(y) + v
        for block in list(mom.layer3)[1:]:
            v = 0.9 * v + 0.1 * block.branch(y)
            y = y + v
        torch.testing.assert_close(mom.head(y), out)


def test_deterministic_weights_recipe():
    a = ref.deterministic_weights_(ref.HandResNetCifar(20))
    b = ref.deterministic_weights_(ref.HandResNetCifar(20))
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k
    sd = a.state_dict()
    assert int(sd["bn1.num_batches_tracked"]) == 0
    assert ((sd["bn1.running_var"] >= 0.5) & (sd["bn1.running_var"] < 1.5)).all()
    # entry 0 is conv1.weight: randn(shape, seed 1000) * sqrt(2 / 27)
    g = torch.Generator().manual_seed(1000)
    torch.testing.assert_close(
        sd["conv1.weight"], torch.randn((16, 3, 3, 3), generator=g) * math.sqrt(2 / 27)
    )


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_net_classes_take_exactly_their_options(name):
    """The torch classes swallow nothing: a misspelled option is Python's TypeError there, and
    formulac's own entry points refuse it first, naming the options the backbone knows."""
    info = get_backbone(name)
    with pytest.raises(TypeError, match="widht"):
        info.net(num_classes=3, widht=8)
    with pytest.raises(BackboneError, match=r"unknown option 'widht' \(known options: depth, num_classes"):
        formulac.compile("x_<n+1> = x_n + F(x_n)", backbone=name, widht=8)


def test_unknown_backbone_is_a_usage_error_in_the_cli(capsys):
    from formulac.cli import main

    assert main(["info", str(REPO / "examples" / "resnet.rec"), "--backbone", "densenet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("formulac: error: unknown backbone 'densenet'; known backbones: cifar-resnet")
    assert "Traceback" not in err
