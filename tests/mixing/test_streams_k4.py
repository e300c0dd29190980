"""Compact stream formulas (stream h[4], param res_n[4,4]) against the `hyper-connections`
package (PyPI, lucidrains) with the same weights, in float64: static HyperConnections and
ManifoldConstrainedHyperConnections with num_residual_streams = 4. Also: the compact k = 2
formula equals the spelled-out hyper_connections_k2.rec, the code mixes the streams with one
einsum per operation, and the analyses read the lowered formula.

The package's static_alpha is k x (1 + k): column 0 is H_pre, columns 1..k H_res with
h'_t = sum_s alpha[s, 1 + t] * h_s, so the formula's res_n (stream j of res_n @ h_n is
sum_i res_n[j, i] * h_i) is its transpose; static_beta is H_post. Its dynamic parts start at
exactly zero, which is the static network."""

from __future__ import annotations

import hyper_connections
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import formulac
from formulac.ir import sinkhorn_matrix
from tests.hyper_connections_package import compact_hyper_connections, package_stream_sum

EXAMPLES = formulac.__file__.rsplit("/", 2)[0] + "/examples"
K = 4


def _randomise(net, seed):
    torch.manual_seed(seed)
    with torch.no_grad():
        for step in net.layer1:
            for name in ("res", "pre", "post"):
                getattr(step, name).copy_(torch.randn_like(getattr(step, name)))


def _package_forward(net, modules, x):
    # the examples take the streams' mean (the package: sum)
    return net.head(package_stream_sum(net, modules, x, K) / K)


def _copy_static(hc, step):
    with torch.no_grad():
        hc.static_alpha[:, 0] = step.pre
        hc.static_alpha[:, 1:] = step.res.T
        hc.static_beta.copy_(step.post)
    assert torch.count_nonzero(hc.dynamic_alpha_fn) == 0 and torch.count_nonzero(hc.dynamic_beta_fn) == 0


@pytest.mark.parametrize("depth", [1, 3])
def test_static_hyper_connections_k4_match_the_package(depth):
    net = formulac.load(f"{EXAMPLES}/hyper_connections_k4.rec").compile(backbone="mlp", depth=depth).double()
    _randomise(net, depth)
    modules = []
    for k, step in enumerate(net.layer1):
        hc = hyper_connections.HyperConnections(K, dim=64, layer_index=k).double()
        _copy_static(hc, step)
        modules.append(hc)
    x = torch.randn(6, 1, 28, 28, dtype=torch.float64)
    want = _package_forward(net, modules, x)
    assert (net(x) - want).abs().max() <= 1e-6 * want.abs().max()


@pytest.mark.parametrize("depth", [1, 3])
def test_mhc_k4_matches_the_package(depth, monkeypatch):
    net = formulac.load(f"{EXAMPLES}/mhc_k4.rec").compile(backbone="mlp", depth=depth).double()
    _randomise(net, 10 + depth)
    modules = []
    for k, step in enumerate(net.layer1):
        hc = hyper_connections.ManifoldConstrainedHyperConnections(
            K, dim=64, layer_index=k, sinkhorn_iters=20
        )
        hc = hc.double()
        _copy_static(hc, step)
        modules.append(hc)
    x = torch.randn(6, 1, 28, 28, dtype=torch.float64)
    # the package casts its mixing to float32 (.float()); kept in float64 here, so that the
    # comparison is float64's and not float32's
    to_float32 = torch.Tensor.float
    monkeypatch.setattr(torch.Tensor, "float", lambda t: t if t.dtype == torch.float64 else to_float32(t))
    want = _package_forward(net, modules, x)
    assert (net(x) - want).abs().max() <= 1e-6 * want.abs().max()


def test_the_initial_network_is_the_packages_initial_network():
    """Initial values as the package's at layer indices that are multiples of 4."""
    for example, cls in (
        ("hyper_connections_k4", hyper_connections.HyperConnections),
        ("mhc_k4", hyper_connections.ManifoldConstrainedHyperConnections),
    ):
        net = formulac.load(f"{EXAMPLES}/{example}.rec").compile(backbone="mlp", depth=1)
        hc = cls(K, dim=64, layer_index=0)
        (step,) = net.layer1
        assert torch.equal(step.pre, hc.static_alpha[:, 0].detach())
        assert torch.equal(step.res, hc.static_alpha[:, 1:].T.detach())
        assert torch.equal(step.post, hc.static_beta.detach())


COMPACT_K2 = compact_hyper_connections(2)


def test_compact_k2_equals_the_spelled_out_formula():
    torch.manual_seed(3)
    compact = formulac.parse(COMPACT_K2).compile(backbone="mlp", depth=3).double()
    spelled = formulac.load(f"{EXAMPLES}/hyper_connections_k2.rec").compile(backbone="mlp", depth=3).double()
    spelled.load_state_dict(
        {k: v for k, v in compact.state_dict().items() if k.rsplit(".", 1)[-1] not in ("res", "pre", "post")},
        strict=False,
    )
    with torch.no_grad():
        for a, b in zip(compact.layer1, spelled.layer1):
            for s in range(2):
                getattr(b, f"a{s + 1}").copy_(torch.randn(()))
                getattr(b, f"b{s + 1}").copy_(torch.randn(()))
                a.pre[s], a.post[s] = getattr(b, f"a{s + 1}"), getattr(b, f"b{s + 1}")
                for t in range(2):
                    getattr(b, f"r{s + 1}{t + 1}").copy_(torch.randn(()))
                    a.res[t, s] = getattr(b, f"r{s + 1}{t + 1}")  # h'_t = sum_s r_st h_s
    x = torch.randn(5, 1, 28, 28, dtype=torch.float64)
    want = spelled(x)
    assert (compact(x) - want).abs().max() <= 1e-12 * want.abs().max()


def test_one_einsum_per_stream_operation_and_no_loop_over_pairs():
    source = formulac.load(f"{EXAMPLES}/mhc_k4.rec").source(backbone="mlp", depth=2)
    forward = source.split("def forward(self, h_n):")[1].split("class FormulaNet")[0]
    assert forward.count("torch.einsum(") == 3  # read, mix, write
    assert " for " not in forward
    assert (
        "[[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]" in source
    )


def test_analysis_at_initial_values_reads_the_lowered_streams():
    analysis = formulac.load(f"{EXAMPLES}/hyper_connections_k4.rec").analyze(depth=5, params="init")
    # identity mixing, H_post ones, H_pre on stream 0, the mean of 4 streams: the plain ResNet
    assert [float(w) for w in analysis.block_weights["F"]] == [1.0] * 5
    assert [float(w) for w in analysis.initial_weights.values()] == [1.0]


def test_analysis_text_shows_the_parameters_as_declared():
    """The parameters line and the notes give res_n[4,4] = identity, not 24 entries one by one;
    the tables keep the entries' names, and the line says how to read them."""
    text = formulac.load(f"{EXAMPLES}/mhc_k4.rec").analyze(depth=4).to_text()
    (line,) = [t for t in text.splitlines() if t.startswith("parameters")]
    assert line.startswith("parameters   res_n[4,4] = identity, pre_n[4] = onehot(0), post_n[4] = 1 (")
    assert "sinkhornres00_n below is entry [0,0] of sinkhorn(res_n)" in line
    assert "res01_n = 0" not in text and "res01 = 0" not in text
    dynamic = formulac.load(f"{EXAMPLES}/dynamic_hyper_connections_k2.rec").analyze(depth=3).to_text()
    assert "pre_n[2] = onehot(0) + dynamic(h_n)" in dynamic


@settings(max_examples=10, deadline=None)
@given(st.lists(st.floats(-3, 3), min_size=16, max_size=16))
def test_sinkhorn_columns_sum_to_one_and_match_the_compiled_function(logits):
    matrix = [logits[i * 4 : i * 4 + 4] for i in range(4)]
    m = sinkhorn_matrix(matrix)
    for j in range(4):
        assert abs(sum(row[j] for row in m) - 1) <= 1e-12
    namespace: dict = {"torch": torch}
    source = formulac.load(f"{EXAMPLES}/mhc_k4.rec").source(backbone="mlp", depth=1)
    start = source.index("def sinkhorn_knopp")
    exec(source[start : source.index("class FormulaStep")], namespace)
    compiled = namespace["sinkhorn_knopp"](torch.tensor(matrix, dtype=torch.float64))
    assert torch.allclose(compiled, torch.tensor(m, dtype=torch.float64), rtol=0, atol=1e-12)


def test_transform_refuses_stream_formulas_with_one_clear_error():
    from formulac.errors import UsageError

    model = torch.nn.Sequential(*[torch.nn.Linear(4, 4) for _ in range(3)])
    with pytest.raises(UsageError, match=r"transform does not support stream states"):
        formulac.transform(model, formulac.load(f"{EXAMPLES}/hyper_connections_k4.rec"), stacks=[""])


@pytest.mark.parametrize("example", ["hyper_connections_k4", "mhc_k4"])
def test_canonical_text_is_the_compact_form_and_parses_back_to_the_same_formula(example):
    rec = formulac.load(f"{EXAMPLES}/{example}.rec").rec
    assert rec.text.startswith("stream h[4]\nparam res_n[4,4] = identity\n")
    again = formulac.parse(rec.text).rec
    assert again.text == rec.text
    assert [(eq.state, eq.rhs) for eq in again.equations] == [(eq.state, eq.rhs) for eq in rec.equations]
    assert again.params == rec.params  # the same lowered formula


def test_a_free_symbol_in_a_stream_formula_is_bound_before_compiling():
    text = COMPACT_K2.replace("h_<n+1> = res_n @ h_n", "symbol a\nh_<n+1> = a*res_n @ h_n")
    formula = formulac.parse(text)
    assert formula.rec.free_symbols == ("a",)
    source = formula.bind(a=0.5).source(backbone="mlp", depth=2)
    assert 'torch.einsum("ji,i...->j...", 0.5 * self.res, h_n)' in source
    weights = formula.bind(a=0.5).analyze(depth=3, params="init").block_weights["F"]
    # F writes to both streams (post 1, 1), which a*res_n halves at every later step
    assert [float(w) for w in weights] == [0.5, 1.0, 2.0]
