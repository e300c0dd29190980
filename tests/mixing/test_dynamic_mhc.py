"""mHC with its dynamic part (``param res_n[k,k] = identity + dynamic(h_n, linear)``,
``sinkhorn(res_n)`` per token) against the `hyper-connections` package's
``ManifoldConstrainedHyperConnections`` (PyPI, lucidrains; Xie et al. 2025) with the same,
random and nonzero, static and dynamic weights, float64.

The package computes per token, from each stream's RMS-normalised state (one learned gain),
``alpha[s, :] = static_alpha[s, :] + scale*(normed_s @ dynamic_alpha_fn)`` with no tanh (column
0: H_pre's logit, scale ``pre_branch_scale``; columns 1..k: H_res's logits, scale
``residual_scale``, with h'_t = sum_s alpha[s, 1 + t]*h_s), then ``sigmoid`` of H_pre's and
Sinkhorn-Knopp (20 rounds) of each token's H_res; ``beta[s] = 2*sigmoid(static_beta[s] +
h_post_scale*(normed_s @ dynamic_beta_fn))`` (H_post). Its mixing is cast to float32
(``.float()``); the tests keep it in float64, so that the comparison is float64's."""

from __future__ import annotations

import hyper_connections
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import formulac
from formulac.ir import sinkhorn_matrix
from tests.hyper_connections_package import one_stage_steps, randomise_coefficients, zero_dynamic_maps

EXAMPLES = formulac.__file__.rsplit("/", 2)[0] + "/examples"


@pytest.fixture
def package_in_float64(monkeypatch):
    """The package's ``.float()`` casts leave float64 tensors as they are."""
    to_float32 = torch.Tensor.float
    monkeypatch.setattr(torch.Tensor, "float", lambda t: t if t.dtype == torch.float64 else to_float32(t))


def _randomise(net, seed: int) -> None:
    """Random static logits, projections, gains and scales, large enough that the dynamic part
    moves the coefficients well away from the static ones."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for step in one_stage_steps(net):
            randomise_coefficients(step, generator)
            for name in ("res_map_scale", "pre_map_scale", "post_map_scale"):
                getattr(step, name).fill_(0.2 + 0.5 * float(torch.rand((), generator=generator)))


def _package_modules(net, width: int, streams: int):
    """One ManifoldConstrainedHyperConnections module per step holding the network's weights."""
    modules = []
    for index, step in enumerate(one_stage_steps(net)):
        hc = hyper_connections.ManifoldConstrainedHyperConnections(
            streams, dim=width, layer_index=index, sinkhorn_iters=20
        ).double()
        with torch.no_grad():
            hc.norm.gamma.copy_(step.h_norm_gain)
            hc.static_alpha[:, 0] = step.pre
            hc.static_alpha[:, 1:] = step.res.T  # the package's alpha[s, 1 + t] is res[t, s]
            hc.dynamic_alpha_fn[0, :, 0] = step.pre_map
            hc.dynamic_alpha_fn[0, :, 1:] = step.res_map
            hc.pre_branch_scale.fill_(float(step.pre_map_scale))
            hc.residual_scale.fill_(float(step.res_map_scale))
            hc.static_beta.copy_(step.post)
            hc.dynamic_beta_fn.copy_(step.post_map)
            hc.h_post_scale.fill_(float(step.post_map_scale))
        modules.append(hc)
    return modules


def _package_output(net, modules, stem_output, streams: int):
    """The network's head on the mean of the streams mixed by the package around its blocks."""
    expand, reduce = hyper_connections.get_expand_reduce_stream_functions(streams)
    residuals = expand(stem_output)
    for hc, step in zip(modules, one_stage_steps(net)):
        branch_input, add_residual = hc(residuals)
        residuals = add_residual(step.F(branch_input))
    return net.head(reduce(residuals) / streams)


@pytest.mark.parametrize("streams", [2, 4])
@pytest.mark.parametrize("depth", [1, 3])
def test_dynamic_mhc_matches_the_package_on_mlp(streams, depth, package_in_float64):
    net = formulac.load(f"{EXAMPLES}/dynamic_mhc_k{streams}.rec").compile(backbone="mlp", depth=depth)
    net = net.double()
    _randomise(net, seed=streams * 10 + depth)
    x = torch.randn(5, 1, 28, 28, dtype=torch.float64)
    want = _package_output(net, _package_modules(net, 64, streams), net.stem(x), streams)
    got = net(x)
    assert (got - want).abs().max() <= 1e-6 * want.abs().max()
    # the dynamic part is not negligible: the static network alone computes something else
    zero_dynamic_maps(net)
    assert (net(x) - want).abs().max() > 1e-3 * want.abs().max()


@pytest.mark.parametrize("streams", [2, 4])
def test_dynamic_mhc_matches_the_package_per_token_on_vit(streams, package_in_float64):
    """On tokens (B, T, D) every token gets its own coefficients and its own Sinkhorn matrix.
    Three steps: H_res of the first step mixes equal streams and the last one's columns sum to 1
    under the mean, so only a middle step's H_res shows in the output."""
    torch.manual_seed(0)
    net = formulac.load(f"{EXAMPLES}/dynamic_mhc_k{streams}.rec").compile(backbone="vit", depth=3, dim=32)
    net = net.double().eval()
    with torch.no_grad():  # blocks far from their start, whose small outputs hide the mixing
        for parameter in net.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    _randomise(net, seed=streams)
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    want = _package_output(net, _package_modules(net, 32, streams), net.stem(x), streams)
    got = net(x)
    assert (got - want).abs().max() <= 1e-6 * want.abs().max()


@settings(max_examples=10, deadline=None)
@given(st.lists(st.floats(-4, 4), min_size=3 * 16, max_size=3 * 16))
def test_sinkhorn_per_token_is_each_tokens_sinkhorn(logits):
    """The emitted per-token Sinkhorn-Knopp on (k, k, tokens) logits, entry (j, i) first, is
    every token's doubly stochastic matrix (the analysis's high-precision Sinkhorn)."""
    namespace: dict = {"torch": torch}
    source = formulac.load(f"{EXAMPLES}/dynamic_mhc_k4.rec").source(backbone="mlp", depth=1)
    exec(source[source.index("def sinkhorn_knopp(") : source.index("def normalized_features")], namespace)
    tokens = torch.tensor(logits, dtype=torch.float64).reshape(3, 4, 4)
    got = namespace["sinkhorn_knopp_per_token"](tokens.permute(1, 2, 0))
    assert got.shape == (4, 4, 3)
    for t in range(3):
        want = torch.tensor(sinkhorn_matrix(tokens[t].tolist()), dtype=torch.float64)
        assert torch.allclose(got[:, :, t], want, rtol=0, atol=1e-12)


def test_h_res_learns_once_the_streams_differ():
    """At the package's start every stream is a copy of the input and stays one (H_post is equal
    on all streams), so a doubly stochastic H_res, whose rows sum to 1, mixes equal streams: no
    gradient reaches its logits (nor its map) at the first step. One step later the streams
    differ and a middle step's H_res learns; the first step's never does (its streams are all
    the input), nor the last one's (the streams' mean is unchanged by columns summing to 1)."""
    torch.manual_seed(0)
    net = formulac.load(f"{EXAMPLES}/dynamic_mhc_k4.rec").compile(backbone="mlp", depth=3).double()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.5)
    x, labels = torch.randn(8, 1, 28, 28, dtype=torch.float64), torch.randint(0, 10, (8,))

    def res_gradients():
        """Each step's largest gradient of H_res's logits, relative to the largest of H_post's."""
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(net(x), labels).backward()
        reference = max(float(step.post.grad.abs().max()) for step in net.layer1)
        return [float(step.res.grad.abs().max()) / reference for step in net.layer1]

    assert max(res_gradients()) <= 1e-12
    assert all(float(step.res_map.grad.abs().max()) <= 1e-12 for step in net.layer1)
    optimizer.step()
    first, middle, last = res_gradients()
    assert middle >= 1e-6 and first <= 1e-12 and last <= 1e-12


@pytest.mark.parametrize("streams", [2, 4])
def test_dynamic_mhc_matches_the_package_per_position_on_a_cnn(streams, package_in_float64):
    """On (B, C, H, W) the features are the channels: one set of coefficients and one Sinkhorn
    matrix per position. The package's module runs on the channels moved last, (B, H, W, C)
    (its ``channel_first=True`` returns the streams channel-last and then fails to add them to
    the block's channel-first output), the blocks on (B, C, H, W). The first stage of
    cifar-resnet (no projection), 3 steps."""
    torch.manual_seed(0)
    net = formulac.load(f"{EXAMPLES}/dynamic_mhc_k{streams}.rec").compile(backbone="cifar-resnet", depth=20)
    net = net.double().eval()
    _randomise(net, seed=streams + 7)
    stage_input = net.stem(torch.randn(2, 3, 32, 32, dtype=torch.float64))
    width = stage_input.shape[1]
    expand, reduce = hyper_connections.get_expand_reduce_stream_functions(streams)
    residuals = expand(stage_input.permute(0, 2, 3, 1))
    for hc, step in zip(_package_modules(net, width, streams), net.layer1):
        branch_input, add_residual = hc(residuals)
        residuals = add_residual(step.F(branch_input.permute(0, 3, 1, 2)).permute(0, 2, 3, 1))
    want = (reduce(residuals) / streams).permute(0, 3, 1, 2)
    got = net.run_stage(net.layer1, stage_input)
    assert len(net.layer1) == 3 and got.shape == want.shape
    assert (got - want).abs().max() <= 1e-6 * want.abs().max()


def test_analysis_at_initial_values_is_the_static_mhcs():
    """The dynamic parts start at 0: block weights and roots are those of mhc_k4.rec."""
    dynamic = formulac.load(f"{EXAMPLES}/dynamic_mhc_k4.rec").analyze(depth=4, params="init")
    static = formulac.load(f"{EXAMPLES}/mhc_k4.rec").analyze(depth=4, params="init")
    assert [float(w) for w in dynamic.block_weights["F"]] == [float(w) for w in static.block_weights["F"]]
    assert str(dynamic.roots) == str(static.roots)
    assert any(note.startswith("input-dependent: analysed at initial values") for note in dynamic.notes)


def test_the_step_mixes_every_token_at_once():
    """One per-token Sinkhorn call and broadcast products over the stacked streams: no Python
    loop in the step (the only loop is Sinkhorn-Knopp's 20 rounds, each on all tokens)."""
    source = formulac.load(f"{EXAMPLES}/dynamic_mhc_k4.rec").source(backbone="vit", depth=2, dim=32)
    forward = source.split("def forward(self, h_n")[1].split("\nclass ")[0]
    assert forward.count("sinkhorn_knopp_per_token(res_tokens)") == 1 and " for " not in forward
    assert forward.count("squash=None") == 3  # the three maps are linear
