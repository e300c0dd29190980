"""Static hyper-connections (examples/hyper_connections_k2.rec) against the `hyper-connections`
package (PyPI, lucidrains; Zhu et al., ICLR 2025, Algorithm 2) with the same weights, float64.

The package's static part is ``static_alpha`` (k x (1 + k): column 0 is H_pre, columns 1..k
H_res with h'_t = sum_s alpha[s, 1 + t] * h_s) and ``static_beta`` (H_post); its dynamic part
(tanh of a learned map of each normalised stream) starts at exactly zero, which is the static
network. Streams start as copies of the input and are summed at the end."""

from __future__ import annotations

import hyper_connections
import pytest
import torch

import formulac
from tests.hyper_connections_package import package_stream_sum

EXAMPLES = formulac.__file__.rsplit("/", 2)[0] + "/examples"
STREAMS = 2


def _random_mixing(net):
    torch.manual_seed(1)
    with torch.no_grad():
        for step in net.layer1:
            for name in ("a1", "a2", "r11", "r12", "r21", "r22", "b1", "b2"):
                getattr(step, name).copy_(torch.randn(()))


def _package_network(net, width):
    """One HyperConnections module per step with the formula's weights."""
    modules = []
    for k, step in enumerate(net.layer1):
        hc = hyper_connections.HyperConnections(STREAMS, dim=width, layer_index=k).double()
        with torch.no_grad():
            for s in range(STREAMS):
                hc.static_alpha[s, 0] = getattr(step, f"a{s + 1}")
                hc.static_beta[s] = getattr(step, f"b{s + 1}")
                for t in range(STREAMS):
                    hc.static_alpha[s, 1 + t] = getattr(step, f"r{s + 1}{t + 1}")
        assert torch.count_nonzero(hc.dynamic_alpha_fn) == 0 and torch.count_nonzero(hc.dynamic_beta_fn) == 0
        modules.append(hc)
    return modules


@pytest.mark.parametrize("depth", [1, 4])
def test_static_hyper_connections_match_the_package(depth):
    net = formulac.load(f"{EXAMPLES}/hyper_connections_k2.rec").compile(backbone="mlp", depth=depth).double()
    _random_mixing(net)
    x = torch.randn(6, 1, 28, 28, dtype=torch.float64)
    want = net.head(package_stream_sum(net, _package_network(net, 64), x, STREAMS))
    got = net(x)
    assert (got - want).abs().max() <= 1e-6 * want.abs().max()


def test_mixing_parameter_count_is_k_squared_plus_2k_per_step():
    net = formulac.load(f"{EXAMPLES}/hyper_connections_k2.rec").compile(backbone="mlp", depth=3)
    mixing = [p for name, p in net.named_parameters() if name.split(".")[-1][0] in "arb" and p.dim() == 0]
    assert len(mixing) == 3 * (STREAMS * STREAMS + 2 * STREAMS)


def _mhc_package_network(net, width):
    """ManifoldConstrainedHyperConnections per step with logits that give the formula's values:
    H_pre = sigmoid(column 0), H_res = Sinkhorn(exp(columns 1..k)), H_post = 2*sigmoid(beta)."""
    modules = []
    for k, step in enumerate(net.layer1):
        hc = hyper_connections.ManifoldConstrainedHyperConnections(
            STREAMS, dim=width, layer_index=k, sinkhorn_iters=200
        ).double()
        with torch.no_grad():
            hc.static_alpha[0, 0], hc.static_alpha[1, 0] = step.pre1, step.pre2
            # Sinkhorn's limit of exp([[L, 0], [0, L]]) is [[p, 1-p], [1-p, p]], p = sigmoid(L)
            hc.static_alpha[:, 1:] = torch.diag(torch.stack([step.res, step.res]))
            hc.static_beta[0], hc.static_beta[1] = step.post1, step.post2
        modules.append(hc)
    return modules


@pytest.mark.parametrize("depth", [1, 4])
def test_mhc_k2_matches_the_package(depth):
    net = formulac.load(f"{EXAMPLES}/mhc_k2.rec").compile(backbone="mlp", depth=depth).double()
    torch.manual_seed(2)
    with torch.no_grad():
        for step in net.layer1:
            for name in ("pre1", "pre2", "res", "post1", "post2"):
                getattr(step, name).copy_(torch.randn(()))
    x = torch.randn(6, 1, 28, 28, dtype=torch.float64)
    expand, reduce = hyper_connections.get_expand_reduce_stream_functions(STREAMS)
    residuals = expand(net.stem(x))
    for hc, step in zip(_mhc_package_network(net, 64), net.layer1):
        branch_input, add_residual = hc(residuals)
        residuals = add_residual(step.F(branch_input))
    want = net.head(reduce(residuals))
    # the package computes its coefficients and mixing in float32 (.float() inside), so the
    # agreement is float32's, not the 1e-6 of a float64 reference
    assert (net(x) - want).abs().max() <= 1e-5 * want.abs().max()
