"""The ``vit`` backbone: Hugging Face's ViT logit for logit, its block kinds, its refusals."""

from __future__ import annotations

import json
import re

import pytest
import torch
import transformers
from cli_runner import run_cli
from fixtures_path import REPO
from hypothesis import given, settings
from hypothesis import strategies as st

import formulac
import formulac.hf
from formulac.cli import main
from formulac.codegen.backbones import BACKBONES, DEFAULT_BACKBONE, BackboneError, get_backbone
from formulac.codegen.info import network_info
from formulac.hf import HFLoadError

PRE_NORM = "h_<n+1> = x_n + A(x_n)\nx_<n+1> = h_<n+1> + M(h_<n+1>)"
WHOLE_BLOCK = "x_<n+1> = x_n + F(x_n)"
PARALLEL = "x_<n+1> = x_n + A(x_n) + M(x_n)"
SIZE = {
    "dim": 32,
    "heads": 4,
    "patch": 4,
    "mlp_ratio": 2,
    "in_channels": 3,
    "num_classes": 7,
    "input_size": 16,
}


def hf_vit(depth: int, seed: int = 0, **overrides):
    """``ViTForImageClassification`` with random weights from a config (no download)."""
    torch.manual_seed(seed)
    config = transformers.ViTConfig(
        hidden_size=SIZE["dim"],
        num_hidden_layers=depth,
        num_attention_heads=SIZE["heads"],
        intermediate_size=SIZE["dim"] * SIZE["mlp_ratio"],
        image_size=SIZE["input_size"],
        patch_size=SIZE["patch"],
        num_channels=SIZE["in_channels"],
        num_labels=SIZE["num_classes"],
        **overrides,
    )
    model = transformers.ViTForImageClassification(config).eval()
    # the default initialisation leaves the LayerNorms at 1/0; make every tensor count
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layernorm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("formula", [PRE_NORM, WHOLE_BLOCK])
def test_logits_equal_hugging_face_vit(formula):
    """The pre-norm formula (A and M, or the whole block F) with Hugging Face's weights
    computes Hugging Face's logits."""
    hf = hf_vit(depth=3)
    net = formulac.compile(formula, backbone="vit", depth=3, **SIZE).eval()
    formulac.hf.load(net, hf.state_dict())
    x = torch.randn(5, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = hf(pixel_values=x).logits
        got = net(x)
    assert got.shape == expected.shape == (5, 7)
    assert relative(got, expected) <= 1e-5


def test_another_formula_with_the_same_weights_computes_another_network():
    """The golden test can fail: the parallel formula loads the same tensors, computes else."""
    hf = hf_vit(depth=2)
    net = formulac.compile(PARALLEL, backbone="vit", depth=2, **SIZE).eval()
    formulac.hf.load(net, hf.state_dict())
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert relative(net(x), hf(pixel_values=x).logits) > 1e-2


def test_load_names_what_does_not_fit():
    hf = hf_vit(depth=2)
    net = formulac.compile(PRE_NORM, backbone="vit", depth=3, **SIZE)
    with pytest.raises(HFLoadError, match=r"tensors of the network that no key fills: layers\.2\.A"):
        formulac.hf.load(net, hf.state_dict())
    wide = formulac.compile(PRE_NORM, backbone="vit", depth=2, **{**SIZE, "num_classes": 3})
    with pytest.raises(HFLoadError, match=r"classifier\.weight: \(7, 32\) for \(3, 32\)"):
        formulac.hf.load(wide, hf.state_dict())
    state = dict(hf.state_dict())
    state["vit.extra.weight"] = torch.zeros(1)
    with pytest.raises(HFLoadError, match=r"keys with no place in the network: vit\.extra\.weight"):
        formulac.hf.load(formulac.compile(PRE_NORM, backbone="vit", depth=2, **SIZE), state)
    with pytest.raises(HFLoadError, match="no Hugging Face mapping"):
        formulac.hf.load(formulac.compile(WHOLE_BLOCK, backbone="mlp", depth=1), state)
    with pytest.raises(HFLoadError, match="give a state_dict .*not a ViTForImageClassification"):
        formulac.hf.load(formulac.compile(PRE_NORM, backbone="vit", depth=2, **SIZE), hf)


def test_state_dict_layout_and_block_kinds():
    net = formulac.compile(PRE_NORM, backbone="vit", depth=2, **SIZE)
    keys = list(net.state_dict())
    assert keys[:4] == ["cls_token", "position", "patch_embed.weight", "patch_embed.bias"]
    assert keys[-4:] == ["norm.weight", "norm.bias", "classifier.weight", "classifier.bias"]
    assert type(net.layers[0].A).__name__ == "ViTAttention" and type(net.layers[1].M).__name__ == "ViTMLP"
    assert net.position.shape == (1, (16 // 4) ** 2 + 1, 32)
    mean = formulac.compile(PRE_NORM, backbone="vit", depth=1, pool="mean", **SIZE)
    assert mean.position.shape == (1, 16, 32) and not hasattr(mean, "cls_token")
    assert mean(torch.randn(2, 3, 16, 16)).shape == (2, 7)


def test_multiply_adds_count_attention():
    """Every Linear and the patch convolution per token, plus QK^T and AV (T^2 * dim each)."""
    depth, dim, tokens, hidden = 2, SIZE["dim"], (16 // 4) ** 2 + 1, SIZE["dim"] * SIZE["mlp_ratio"]
    f = formulac.parse(PRE_NORM)
    net = f.compile(backbone="vit", depth=depth, **SIZE)
    info = network_info(f.rec, net, 16, 3, "vit", {**SIZE, "depth": depth})
    patches = (tokens - 1) * dim * 3 * 4 * 4
    per_layer = tokens * (3 * dim * dim + dim * dim + 2 * dim * hidden) + 2 * tokens * tokens * dim
    assert info.multiply_adds == patches + depth * per_layer + dim * SIZE["num_classes"]
    assert info.input_shape == (3, 16, 16)


@pytest.mark.parametrize(
    "formula, options, message",
    [
        ("x_<n+1> = x_n + G(x_n)", [], r"no block 'G'; its blocks are: A \(attention.*M \(MLP.*F \("),
        (
            "x_<n+1> = x_n + A(cat(x_n, x_n))",
            [],
            r"block A takes inputs of the stream's width 32 only, not 64",
        ),
        (WHOLE_BLOCK, ["-O", "heads=5"], r"dim 32 is not divisible by heads 5"),
        (WHOLE_BLOCK, ["-O", "patch=5"], r"patch 5 does not divide the image size 16"),
        (WHOLE_BLOCK, ["-O", "mlp_ratio=inf"], r"'mlp_ratio' must be a positive number, got inf"),
        (WHOLE_BLOCK, ["-O", "mlp_ratio=nan"], r"'mlp_ratio' must be a positive number, got nan"),
    ],
)
def test_refusals_are_one_error_line(capsys, tmp_path, formula, options, message):
    path = tmp_path / "f.rec"
    path.write_text(formula + "\n")
    argv = ["info", path, "--backbone", "vit", "--depth", "2", "-O", "dim=32", "--input-size", "16", *options]
    status, out, err = run_cli(capsys, *argv)
    assert status == 2 and out == ""
    lines = err.strip().splitlines()  # the error, then (located ones) the line and a caret
    assert sum("error: " in line for line in lines) == 1 and "Traceback" not in err
    assert lines[0].startswith(("formulac: error: ", f"{path}:"))
    assert re.search(message, lines[0]), lines[0]


def test_unknown_block_is_a_backbone_error_naming_the_kinds():
    info = get_backbone("vit")
    assert [info.block_class(k) for k in "AMF"] == ["ViTAttention", "ViTMLP", "ViTBlock"]
    with pytest.raises(BackboneError, match="its blocks are: A"):
        info.block_class("B")
    assert get_backbone("mlp").block_class("anything") == "MLPBranch"


def test_the_default_backbone_and_the_cli_list_the_registry(capsys):
    assert DEFAULT_BACKBONE in BACKBONES
    with pytest.raises(SystemExit):
        main(["info", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "{" + ",".join(BACKBONES) + "}" in out
    assert f"default: {DEFAULT_BACKBONE}" in out


@settings(max_examples=15, deadline=None)
@given(dim=st.integers(1, 64), heads=st.integers(1, 8), patch=st.integers(1, 8), size=st.integers(1, 40))
def test_options_are_checked_before_torch_runs(dim, heads, patch, size):
    """The registry refuses exactly the sizes the torch classes cannot build."""
    options = {"dim": dim, "heads": heads, "patch": patch, "input_size": size}
    if dim % heads or size % patch:
        with pytest.raises(BackboneError):
            get_backbone("vit").validate(depth=1, **options)
    else:
        net = formulac.compile(WHOLE_BLOCK, backbone="vit", depth=1, in_channels=1, num_classes=2, **options)
        assert net(torch.randn(1, 1, size, size)).shape == (1, 2)


def test_emitted_file_is_standalone(tmp_path):
    """The written module builds the same network with no formulac import."""
    source = formulac.parse(PRE_NORM).source(backbone="vit", depth=2, **SIZE)
    assert "formulac" not in source.split('"""', 2)[2].replace("formulac.codegen.backbones", "")
    namespace: dict = {}
    exec(compile(source, str(tmp_path / "m.py"), "exec"), namespace)
    torch.manual_seed(0)
    a = namespace["FormulaNet"]().eval()
    torch.manual_seed(0)
    b = formulac.compile(PRE_NORM, backbone="vit", depth=2, **SIZE).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x))


def test_train_and_learned_on_vit_use_the_transformer_recipe(capsys, tmp_path):
    """``train --backbone vit`` picks the backbone's recipe (AdamW, warm-up + cosine, no decay
    on norms and biases, label smoothing) unless --recipe says otherwise; ``learned`` reads the
    run's per-step parameters from the vit stage."""
    from formulac.train import RECIPES

    recipe = RECIPES[get_backbone("vit").default_recipe]
    assert recipe["optimizer"] == "adamw" and recipe["schedule"] == "cosine"
    assert recipe["norm_bias_decay"] is False and recipe["label_smoothing"] > 0
    assert recipe["warmup_epochs"] > 0
    rezero = REPO / "examples" / "transformers" / "rezero.rec"
    common = ["--backbone", "vit", "--depth", "2", "-O", "dim=16", "-O", "heads=2", "--data"]
    common += ["synthetic:1x8x8:3", "--epochs", "1", "--limit-train", "32", "--limit-test", "32", "-q"]
    status, out, err = run_cli(capsys, "train", rezero, *common, "--out", tmp_path / "run")
    assert status == 0, err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["recipe"] == "transformer" and summary["config"]["optimizer"] == "adamw"
    status, out, err = run_cli(
        capsys, "train", rezero, *common, "--recipe", "fashion", "--out", tmp_path / "sgd"
    )
    assert status == 0 and json.loads((tmp_path / "sgd" / "summary.json").read_text())["recipe"] == "fashion"
    status, out, err = run_cli(capsys, "learned", tmp_path / "run")
    assert status == 0 and "stage layers (2 steps)" in out and "alpha:" in out
