"""Properties of input-dependent coefficients over varied formulas: the text reads back the
same, the analysis counts the maps the compiled network holds (at any width), and the
network starts as the static formula's (maps at 0)."""

from __future__ import annotations

import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

import formulac
from formulac.ir import to_rec

MAP_SUFFIXES = ("_map", "_map_scale", "_norm_gain")


@st.composite
def dynamic_formulas(draw):
    """A k-stream hyper-connection formula in which some of H_res, H_pre, H_post are dynamic,
    with varied static starts, and the same formula without any dynamic part."""
    k = draw(st.integers(1, 4))
    number = st.sampled_from(["0", "1", "0.5", "-0.25", "2"])
    res = draw(st.one_of(st.just("identity"), number))
    pre = draw(st.one_of(st.integers(0, k - 1).map(lambda j: f"onehot({j})"), number))
    post = draw(number)
    dynamic = draw(st.lists(st.booleans(), min_size=3, max_size=3))
    if not any(dynamic):
        dynamic[draw(st.integers(0, 2))] = True
    static_lines = [f"res_n[{k},{k}] = {res}", f"pre_n[{k}] = {pre}", f"post_n[{k}] = {post}"]
    lines = [line + (" + dynamic(h_n)" if d else "") for line, d in zip(static_lines, dynamic)]
    body = f"h_0 = x_0\nh_<n+1> = res_n @ h_n + post_n*F(pre_n @ h_n)\nx_<n+1> = sum(h_<n+1>)/{k}\n"

    def text(params):
        return f"stream h[{k}]\n" + "".join(f"param {p}\n" for p in params) + body

    return text(lines), text(static_lines)


# a static vector times a block output that read a dynamic one (refused by an early version)
MIXED = (
    "stream h[1]\nparam res_n[1,1] = identity\nparam pre_n[1] = onehot(0) + dynamic(h_n)\nparam post_n[1] = 0\n"
    "h_0 = x_0\nh_<n+1> = res_n @ h_n + post_n*F(pre_n @ h_n)\nx_<n+1> = sum(h_<n+1>)/1\n"
)


@settings(max_examples=12, deadline=None)
@given(dynamic_formulas(), st.integers(2, 40), st.integers(1, 3))
@example((MIXED, MIXED.replace(" + dynamic(h_n)", "")), 5, 2)
def test_dynamic_formulas_read_back_count_and_start_static(formulas, width, depth):
    text, static_text = formulas
    formula = formulac.parse(text)
    assert formulac.parse(to_rec(formula.rec.compact)).rec.compact.params == formula.rec.compact.params
    (note,) = [
        n for n in formula.analyze(depth=depth, params="init").notes if n.startswith("input-dependent maps")
    ]
    per_feature, fixed = map(int, note.split("; ")[1].split(" at depth")[0].replace("d", "").split(" + "))
    torch.manual_seed(0)
    net = formula.compile(backbone="mlp", depth=depth, width=width).double()
    held = sum(p.numel() for name, p in net.named_parameters() if name.endswith(MAP_SUFFIXES))
    assert held == per_feature * width + fixed
    static = formulac.parse(static_text).compile(backbone="mlp", depth=depth, width=width).double()
    with torch.no_grad():
        for p in static.parameters():
            p.add_(0.2 * torch.randn_like(p))
    missing, unexpected = net.load_state_dict(static.state_dict(), strict=False)
    assert not unexpected and all(key.endswith(MAP_SUFFIXES) for key in missing)
    x = torch.randn(3, 1, 28, 28, dtype=torch.float64)
    with torch.no_grad():
        want, got = static(x), net(x)
    assert (got - want).abs().max() <= 1e-12 * max(1.0, float(want.abs().max()))
