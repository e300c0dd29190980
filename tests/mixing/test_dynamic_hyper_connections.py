"""Dynamic hyper-connections (``param pre_n[k] = onehot(0) + dynamic(h_n)``) against the
`hyper-connections` package's ``HyperConnections`` (PyPI, lucidrains; Zhu et al., ICLR 2025,
eq. 6-9) with the same, random and nonzero, static and dynamic weights, float64.

The package computes per token, from each stream's RMS-normalised state (one learned gain),
``alpha[s, :] = static_alpha[s, :] + scale_a*tanh(normed_s @ dynamic_alpha_fn)`` (column 0:
H_pre, columns 1..k: H_res, with h'_t = sum_s alpha[s, 1 + t]*h_s) and ``beta[s] =
static_beta[s] + scale_b*tanh(normed_s @ dynamic_beta_fn)`` (H_post)."""

from __future__ import annotations

import hyper_connections
import pytest
import torch

import formulac
from tests.hyper_connections_package import (
    one_stage_steps,
    package_stream_sum,
    randomise_coefficients,
    zero_dynamic_maps,
)


def dynamic_hyper_connections(streams: int) -> str:
    """Dynamic hyper-connections with ``streams`` streams, summed at the end as the package does."""
    return f"""stream h[{streams}]
param res_n[{streams},{streams}] = identity + dynamic(h_n)
param pre_n[{streams}] = onehot(0) + dynamic(h_n)
param post_n[{streams}] = 1 + dynamic(h_n)
h_0 = x_0
h_<n+1> = res_n @ h_n + post_n*F(pre_n @ h_n)
x_<n+1> = sum(h_<n+1>)
"""


def _randomise(net, seed: int) -> None:
    """Random static parts, projections, gains; H_pre and H_res share one scale, as the package's alpha."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for step in one_stage_steps(net):
            randomise_coefficients(step, generator)
            alpha_scale, beta_scale = 0.3 + torch.rand(2, generator=generator, dtype=torch.float64)
            step.res_map_scale.fill_(alpha_scale)
            step.pre_map_scale.fill_(alpha_scale)
            step.post_map_scale.fill_(beta_scale)


def _package_network(net, width: int, streams: int):
    """One HyperConnections module per step holding the formula network's weights."""
    modules = []
    for index, step in enumerate(one_stage_steps(net)):
        hc = hyper_connections.HyperConnections(streams, dim=width, layer_index=index).double()
        with torch.no_grad():
            hc.norm.gamma.copy_(step.h_norm_gain)
            hc.static_alpha[:, 0] = step.pre
            hc.static_alpha[:, 1:] = step.res.T  # the package's alpha[s, 1 + t] is res[t, s]
            hc.dynamic_alpha_fn[:, 0] = step.pre_map
            hc.dynamic_alpha_fn[:, 1:] = step.res_map
            hc.dynamic_alpha_scale.copy_(step.res_map_scale)
            hc.static_beta.copy_(step.post)
            hc.dynamic_beta_fn.copy_(step.post_map)
            hc.dynamic_beta_scale.copy_(step.post_map_scale)
        modules.append(hc)
    return modules


@pytest.mark.parametrize("streams", [2, 4])
@pytest.mark.parametrize("depth", [1, 3])
def test_dynamic_hyper_connections_match_the_package_on_mlp(streams, depth):
    net = formulac.parse(dynamic_hyper_connections(streams)).compile(backbone="mlp", depth=depth).double()
    _randomise(net, seed=streams * 10 + depth)
    x = torch.randn(5, 1, 28, 28, dtype=torch.float64)
    want = net.head(package_stream_sum(net, _package_network(net, 64, streams), x, streams))
    got = net(x)
    assert (got - want).abs().max() <= 1e-6 * want.abs().max()
    # the dynamic part is not negligible: the static network alone computes something else
    zero_dynamic_maps(net)
    assert (net(x) - want).abs().max() > 1e-3 * want.abs().max()


@pytest.mark.parametrize("streams", [2, 4])
def test_dynamic_hyper_connections_match_the_package_per_token_on_vit(streams):
    """On tokens (B, T, D) every token gets its own coefficients, as in the package."""
    torch.manual_seed(0)
    net = formulac.parse(dynamic_hyper_connections(streams)).compile(backbone="vit", depth=2, dim=32)
    net = net.double().eval()
    _randomise(net, seed=streams)
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    expand, reduce = hyper_connections.get_expand_reduce_stream_functions(streams)
    residuals = expand(net.stem(x))
    for hc, step in zip(_package_network(net, 32, streams), net.layers):
        branch_input, add_residual = hc(residuals)
        residuals = add_residual(step.F(branch_input))
    want = net.head(reduce(residuals))
    got = net(x)
    assert (got - want).abs().max() <= 1e-6 * want.abs().max()


def _channel_first_module(step, width: int, streams: int, index: int):
    """The package's channel-first HyperConnections (1 x 1 convolutions as the maps) with the
    weights of one step."""
    from hyper_connections.hyper_connections_channel_first import HyperConnections

    hc = HyperConnections(streams, dim=width, layer_index=index).double()
    with torch.no_grad():
        hc.norm.gamma.copy_(step.h_norm_gain.view(width, 1, 1))
        hc.static_alpha[:, 0] = step.pre
        hc.static_alpha[:, 1:] = step.res.T
        alpha_map = torch.cat([step.pre_map[:, None], step.res_map], dim=1)  # (width, 1 + k)
        hc.dynamic_alpha_fn.weight.copy_(alpha_map.T[:, :, None, None])
        hc.dynamic_alpha_scale.copy_(step.res_map_scale)
        hc.static_beta.copy_(step.post)
        hc.dynamic_beta_fn[0].weight.copy_(step.post_map.view(1, width, 1, 1))
        hc.dynamic_beta_scale.copy_(step.post_map_scale)
    return hc


@pytest.mark.parametrize("streams", [2, 4])
def test_dynamic_hyper_connections_match_the_package_per_position_on_a_cnn(streams):
    """On (B, C, H, W) the features are the channels: the package's channel-first module, one
    set of coefficients per position. The first stage of cifar-resnet (no projection), 2 steps."""
    from hyper_connections.hyper_connections_channel_first import get_expand_reduce_stream_functions

    torch.manual_seed(0)
    net = formulac.parse(dynamic_hyper_connections(streams)).compile(backbone="cifar-resnet", depth=14)
    net = net.double().eval()
    _randomise(net, seed=streams + 7)
    stage_input = net.stem(torch.randn(2, 3, 32, 32, dtype=torch.float64))
    width = stage_input.shape[1]
    expand, reduce = get_expand_reduce_stream_functions(streams)
    residuals = expand(stage_input)
    for index, step in enumerate(net.layer1):
        branch_input, add_residual = _channel_first_module(step, width, streams, index)(residuals)
        residuals = add_residual(step.F(branch_input))
    want = reduce(residuals)
    got = net.run_stage(net.layer1, stage_input)
    assert len(net.layer1) == 2 and got.shape == want.shape
    assert (got - want).abs().max() <= 1e-6 * want.abs().max()
