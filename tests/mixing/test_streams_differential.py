"""Random compact stream formulas (k = 1..4 streams; H_res plain, sinkhorn or softmax; H_pre
plain, softmax or sigmoid; H_post plain or 2*sigmoid; random initial values), wired over random
linear blocks, against a float64 iteration of the same formula written here with explicit
loops over the streams (no formulac code in the reference). The wired network is the compact
form's code (einsum over stacked streams); the analysis at initial values reads the lowered
form: its weight of the input in x_N is checked against the same iteration with zero blocks."""

from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import formulac

WIDTH, BATCH = 3, 2


def _sinkhorn(logits, iterations=20):
    m = [[math.exp(v - max(row)) for v in row] for row in logits]
    for _ in range(iterations):
        m = [[v / sum(row) for v in row] for row in m]
        columns = [sum(m[i][j] for i in range(len(m))) for j in range(len(m))]
        m = [[m[i][j] / columns[j] for j in range(len(m))] for i in range(len(m))]
    return m


def _softmax(values):
    e = [math.exp(v - max(values)) for v in values]
    return [v / sum(e) for v in e]


def _sigmoid(v):
    return 1 / (1 + math.exp(-v))


RES = {
    "plain": ("res_n", lambda m: m),
    "sinkhorn": ("sinkhorn(res_n)", _sinkhorn),
    "softmax": ("softmax(res_n)", lambda m: [_softmax(row) for row in m]),
}
PRE = {
    "plain": ("pre_n", lambda v: v),
    "softmax": ("softmax(pre_n)", _softmax),
    "sigmoid": ("sigmoid(pre_n)", lambda v: [_sigmoid(x) for x in v]),
}
POST = {
    "plain": ("post_n", lambda v: v),
    "sigmoid": ("2*sigmoid(post_n)", lambda v: [2 * _sigmoid(x) for x in v]),
}


@st.composite
def formulas(draw):
    k = draw(st.integers(1, 4))
    res, pre, post = (
        draw(st.sampled_from(sorted(RES))),
        draw(st.sampled_from(sorted(PRE))),
        draw(st.sampled_from(sorted(POST))),
    )
    res_init = draw(st.sampled_from(["identity", "1/2", "0"]))
    pre_init = draw(st.sampled_from([f"onehot({draw(st.integers(0, k - 1))})", "1", "-1/4"]))
    post_init = draw(st.sampled_from(["1", "0", "3/2"]))
    text = (
        f"stream h[{k}]\nparam res_n[{k},{k}] = {res_init}\nparam pre_n[{k}] = {pre_init}\n"
        f"param post_n[{k}] = {post_init}\nh_0 = x_0\n"
        f"h_<n+1> = {RES[res][0]} @ h_n + {POST[post][0]}*F({PRE[pre][0]} @ h_n)\n"
        "x_<n+1> = sum(h_<n+1>)\n"
    )
    return text, k, RES[res][1], PRE[pre][1], POST[post][1]


def _reference(x0, blocks, steps, k, res, pre, post):
    h = [x0] * k
    for block, step in zip(blocks, steps):
        mix = res(step.res.tolist())
        weights, writes = pre(step.pre.tolist()), post(step.post.tolist())
        out = block(sum(weights[i] * h[i] for i in range(k)))
        h = [sum(mix[j][i] * h[i] for i in range(k)) + writes[j] * out for j in range(k)]
    return sum(h)


@settings(max_examples=30, deadline=None, derandomize=True)
@given(formulas(), st.integers(1, 4), st.integers(0, 2**16), st.booleans())
def test_wired_streams_match_a_direct_iteration(formula, depth, seed_value, randomise):
    text, k, res, pre, post = formula
    torch.manual_seed(seed_value)
    blocks = [torch.nn.Linear(WIDTH, WIDTH, bias=False).double() for _ in range(depth)]
    net = formulac.wire(formulac.parse(text), {"F": blocks}).double()
    if randomise:  # trained values, not only the initial ones
        with torch.no_grad():
            for p in net.parameters():
                if p.dim() <= 2 and p.shape[-1] == k and not any(p is b.weight for b in blocks):
                    p.copy_(torch.randn_like(p))
    x0 = torch.randn(BATCH, WIDTH, dtype=torch.float64)
    want = _reference(x0, blocks, list(net.steps), k, res, pre, post)
    got = net(x0)
    assert (got - want).abs().max() <= 1e-9 * (1 + want.abs().max())


@settings(max_examples=20, deadline=None, derandomize=True)
@given(formulas(), st.integers(1, 4))
def test_analysis_at_initial_values_weighs_the_input_as_the_iteration_does(formula, depth):
    text, k, res, pre, post = formula
    rec = formulac.parse(text)
    analysis = rec.analyze(depth=depth, params="init")
    (weight,) = [float(w) for key, w in analysis.initial_weights.items()]
    net = formulac.wire(rec, {"F": [torch.nn.Linear(1, 1, bias=False) for _ in range(depth)]}).double()
    zero = [lambda v: 0 * v] * depth  # blocks that add nothing: x_N = weight * x_0
    want = _reference(torch.ones(1, 1, dtype=torch.float64), zero, list(net.steps), k, res, pre, post)
    assert math.isclose(weight, float(want), rel_tol=1e-9, abs_tol=1e-12)
