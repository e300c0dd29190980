"""``formulac learned`` on tiny trained runs with input-dependent coefficients: the static parts
and the size of the dynamic parts against the checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
from learned_runs import trained_and_read


def test_learned_dynamic_hyper_connections(capsys, tmp_path):
    data, state, text = trained_and_read(capsys, tmp_path, "dynamic_hyper_connections_k2.rec")
    for name in ("res", "pre", "post"):
        for t in range(3):
            # the static part is the trained parameter itself
            np.testing.assert_allclose(
                data["shaped"][name]["layer1"][t], state[f"layer1.{t}.{name}"].double().numpy(), rtol=1e-12
            )
            projection = state[f"layer1.{t}.{name}_map"].double()
            figures = data["dynamic"][name]["layer1"][t]
            assert figures["map_norm"] == pytest.approx(float(projection.norm()), rel=1e-9)
            assert figures["map_norm"] > 0  # the map started at 0 and trained
            scale = float(state[f"layer1.{t}.{name}_map_scale"])
            assert figures["scale"] == pytest.approx(scale, rel=1e-12) and scale != 0.01
            assert figures["largest_change"] == pytest.approx(abs(scale))
            assert figures["unmoved"] is False
    assert "input-dependent parts" in text and "res_n[2,2] in layer1: step 0: |W| = " in text


def test_learned_dynamic_gate(capsys, tmp_path):
    data, state, text = trained_and_read(capsys, tmp_path, "dynamic_gate.rec")
    assert data["per_step"]["g"]["layer1"] == pytest.approx([float(state[f"layer1.{t}.g"]) for t in range(3)])
    norms = [float(state[f"layer1.{t}.g_map"].double().norm()) for t in range(3)]
    assert [f["map_norm"] for f in data["dynamic"]["g"]["layer1"]] == pytest.approx(norms, rel=1e-9)
    assert "g_n: the trained static parts" in data["formula"] and "g_n in layer1" in text


def test_learned_dynamic_mhc(capsys, tmp_path):
    """mHC's linear dynamic part: its sizes with no bound on the change, and the mixing figures of
    the trained static parts (each step's state matrix: Sinkhorn-Knopp of the trained logits)."""
    from formulac.ir import sinkhorn_matrix

    data, state, text = trained_and_read(capsys, tmp_path, "dynamic_mhc_k2.rec")
    mixing = data["mixing"]["layer1"]
    for t in range(3):
        logits = state[f"layer1.{t}.res"].double()
        np.testing.assert_allclose(data["shaped"]["res"]["layer1"][t], logits.numpy(), rtol=1e-12)
        np.testing.assert_allclose(mixing["state_matrices"][t], sinkhorn_matrix(logits.tolist()), atol=1e-12)
        for name in ("res", "pre", "post"):
            figures = data["dynamic"][name]["layer1"][t]
            norm = float(state[f"layer1.{t}.{name}_map"].double().norm())
            assert figures["map_norm"] == pytest.approx(norm, rel=1e-9, abs=1e-30)
            assert figures["largest_change"] is None  # a linear map: no bound from the scale
    assert max(mixing["distance_from_doubly_stochastic"]) <= 1e-12
    # the first step's H_res mixes copies of the input and the last one's columns leave the
    # streams' mean unchanged: their maps receive no gradient, and are flagged
    res, pre = data["dynamic"]["res"]["layer1"], data["dynamic"]["pre"]["layer1"]
    assert all(res[t]["map_norm"] <= 1e-12 and res[t]["unmoved"] is True for t in (0, 2))
    assert all(f["map_norm"] > 1e-3 and f["unmoved"] is False for f in pre)
    assert "res_n[2,2] in layer1: step 0: |W| = " in text and "dynamic(state, linear)" in text
    assert "never moved from 0 (no gradient reached the map) at steps 0, " in text
