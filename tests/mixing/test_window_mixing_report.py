"""``formulac learned``'s mixing figures of a window (``examples/denseformer_window.rec``).

A window keeps the last outputs ``b_n, b_<n-1>, b_<n-2>`` as lags: a history, not parallel
streams. Stream similarity (collapse) is a figure of hyper-connection streams, states handed on
one value at a time; a window's ``b`` beside the output ``x`` (equal to ``b`` at the initial
weights) must not be reported as two collapsed streams. Reference for the weights: the window
unrolled by hand with the checkpoint's vectors.
"""

from __future__ import annotations

import numpy as np
import torch
from fixtures_path import REPO
from learned_runs import randomise_pair_weights

import formulac
from formulac.codegen import parameter_attributes
from formulac.search.learned_mixing import mixing_report

WINDOW = REPO / "examples" / "denseformer_window.rec"


def _window_weights(alphas):
    """Effective weight of F at step k in x after step t; w_<t,i> for i = t-2 .. t+1, and
    b_<-2>, b_<-1> are 0 (states other than the output start at 0)."""
    depth = len(alphas)
    b = {-2: np.zeros(depth), -1: np.zeros(depth), 0: np.zeros(depth)}  # b_0 = x_0: no block
    x = np.zeros(depth)
    rows = []
    for t in range(depth):
        new = x.copy()
        new[t] += 1
        b[t + 1] = new
        x = sum(a * b[t - 2 + j] for j, a in enumerate(alphas[t]))
        rows.append(x)
    return np.array(rows)


def test_a_window_is_not_reported_as_streams():
    formula = formulac.load(WINDOW)
    net = formula.compile(backbone="mlp", depth=5)
    state = randomise_pair_weights(net)
    (report,) = mixing_report(formula.rec, parameter_attributes(formula.rec), state, {}).values()
    alphas = [state[f"layer1.{t}.w"].double().numpy() for t in range(5)]
    np.testing.assert_allclose(report["effective_weights"]["F"], _window_weights(alphas), rtol=1e-9)
    assert "stream_similarity" not in report and "streams" not in report


def test_entries_weighing_states_before_the_start_are_not_flagged_unmoved():
    """w_<0,-2>, w_<0,-1>, w_<1,-1> weigh b_<-2>, b_<-1>, which are 0: training cannot move them,
    and that is no sign of a broken mixing. An entry that could move and did not is flagged."""
    formula = formulac.load(WINDOW)
    net = formula.compile(backbone="mlp", depth=4)
    state = net.state_dict()
    torch.manual_seed(3)
    for t in range(4):
        vector = state[f"layer1.{t}.w"]
        before_start = max(0, 2 - t)  # entries i = t-2 .. -1
        vector[before_start:] = torch.randn(len(vector) - before_start)
    state["layer1.3.w"][0] = 0.0  # w_<3,1> reads b_1: it could have moved
    (report,) = mixing_report(formula.rec, parameter_attributes(formula.rec), state, {}).values()
    assert report["unmoved"] == ["w_<3,1>"]
