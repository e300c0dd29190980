"""``formulac learned`` on tiny trained DenseFormer and hyper-connection runs: the mixing figures
against values computed directly from the checkpoint (by hand-written unrolling and numpy)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from learned_runs import EXAMPLES, randomise_pair_weights, trained_and_read

import formulac
from formulac.cli import main


def _denseformer_weights(alphas):
    """Effective weight of F at step k in x after step t, by unrolling DenseFormer directly."""
    depth = len(alphas)
    b = [np.zeros(depth)]  # b_0 = x_0: no block
    x = np.zeros(depth)
    rows = []
    for t in range(depth):
        new = x.copy()
        new[t] += 1
        b.append(new)
        x = sum(a * bi for a, bi in zip(alphas[t], b))
        rows.append(x)
    return np.array(rows)


def test_learned_denseformer_effective_weights(capsys, tmp_path):
    data, state, text = trained_and_read(capsys, tmp_path, "denseformer.rec")
    alphas = [state[f"layer1.{t}.w"].double().numpy() for t in range(3)]
    report = data["mixing"]["layer1"]
    np.testing.assert_allclose(
        report["effective_weights"]["F"], _denseformer_weights(alphas), rtol=1e-9, atol=1e-12
    )
    assert report["unmoved"] == []  # every weight received a gradient and moved
    assert "effective weight of F" in text
    (figure,) = report["figures"]
    assert figure.endswith("mixing_layer1_F.png") and Path(figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_learned_hyper_connections_spectra_and_distances(capsys, tmp_path):
    data, state, text = trained_and_read(capsys, tmp_path, "hyper_connections_k2.rec")
    report = data["mixing"]["layer1"]
    matrices = []
    for t in range(3):
        r = {name: float(state[f"layer1.{t}.{name}"]) for name in ("r11", "r12", "r21", "r22")}
        # rows: the new streams h1, h2; h'_t = sum_s r_st h_s
        matrices.append(np.array([[r["r11"], r["r21"]], [r["r12"], r["r22"]]]))
    np.testing.assert_allclose(report["state_matrices"], matrices, rtol=1e-12)
    product = matrices[2] @ matrices[1] @ matrices[0]
    assert report["spectral_radius_of_product"] == pytest.approx(max(abs(np.linalg.eigvals(product))))
    assert report["distance_from_identity"] == pytest.approx(
        [np.linalg.norm(m - np.eye(2)) for m in matrices]
    )
    for m, d in zip(matrices, report["distance_from_doubly_stochastic"]):
        expected = np.abs(m.sum(0) - 1).sum() + np.abs(m.sum(1) - 1).sum() + np.clip(-m, 0, None).sum()
        assert d == pytest.approx(expected)
    assert report["streams"] == ["h1", "h2"] and -1 <= report["most_similar_streams"] <= 1 + 1e-12
    assert "spectral radius of the product" in text


def test_unmoved_parameters_are_flagged(capsys, tmp_path):
    # the run's step-1 weights put back to their initial values [0, 0, 1]: as if no gradient came
    trained_and_read(capsys, tmp_path, "denseformer.rec")
    checkpoint_path = tmp_path / "run" / "checkpoint.pt"
    checkpoint = torch.load(checkpoint_path, weights_only=True)
    checkpoint["model"]["layer1.1.w"] = torch.tensor([0.0, 0.0, 1.0])
    torch.save(checkpoint, checkpoint_path)
    assert main(["learned", str(tmp_path / "run"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)["mixing"]["layer1"]
    assert report["unmoved"] == ["w_<1,0>", "w_<1,1>", "w_<1,2>"]


def test_learned_mhc_stays_doubly_stochastic(capsys, tmp_path):
    data, state, _ = trained_and_read(capsys, tmp_path, "mhc_k2.rec")
    report = data["mixing"]["layer1"]
    assert max(report["distance_from_doubly_stochastic"]) < 1e-9  # the constraint holds after training
    p = [torch.sigmoid(state[f"layer1.{t}.res"].double()).item() for t in range(3)]
    expected = [2 * (1 - q) for q in p]  # ||[[q, 1-q], [1-q, q]] - I||_F: four entries of size 1-q
    assert report["distance_from_identity"] == pytest.approx(expected)


def test_mixing_report_of_every_stage_of_a_cnn():
    """cifar-resnet-14 has three stages of two steps;
    each stage restarts its history (transition reset), so each gets its own matrix."""
    from formulac.codegen import parameter_attributes
    from formulac.search.learned_mixing import mixing_report

    rec = formulac.load(f"{EXAMPLES}/denseformer.rec").rec
    net = formulac.load(f"{EXAMPLES}/denseformer.rec").compile(backbone="cifar-resnet", depth=14)
    state = randomise_pair_weights(net)
    reports = mixing_report(rec, parameter_attributes(rec), state, {})
    assert sorted(reports) == ["layer1", "layer2", "layer3"]
    for stage, report in reports.items():
        alphas = [state[f"{stage}.{t}.w"].double().numpy() for t in range(report["steps"])]
        np.testing.assert_allclose(report["effective_weights"]["F"], _denseformer_weights(alphas), rtol=1e-9)
        assert report["unmoved"] == []


def _sinkhorn(logits, iterations=20):
    """Sinkhorn-Knopp as the hyper-connections package computes it (numpy, on exp(logits))."""
    m = np.exp(logits - logits.max(axis=1, keepdims=True))
    for _ in range(iterations):
        m = m / m.sum(axis=1, keepdims=True)
        m = m / m.sum(axis=0, keepdims=True)
    return m


@pytest.mark.parametrize("example", ["hyper_connections_k4.rec", "mhc_k4.rec"])
def test_learned_k4_streams_from_the_checkpoints_matrices(capsys, tmp_path, example):
    data, state, text = trained_and_read(capsys, tmp_path, example)
    report = data["mixing"]["layer1"]
    logits = [state[f"layer1.{t}.res"].double().numpy() for t in range(3)]
    matrices = [_sinkhorn(m) for m in logits] if example.startswith("mhc") else logits
    np.testing.assert_allclose(report["state_matrices"], matrices, rtol=1e-9, atol=1e-12)
    product = matrices[2] @ matrices[1] @ matrices[0]
    assert report["spectral_radius_of_product"] == pytest.approx(max(abs(np.linalg.eigvals(product))))
    assert report["distance_from_identity"] == pytest.approx(
        [np.linalg.norm(m - np.eye(4)) for m in matrices]
    )
    if example.startswith("mhc"):  # the columns sum to 1 exactly, the rows after 20 rounds
        assert max(report["distance_from_doubly_stochastic"]) < 1e-3
    assert report["streams"] == ["h0", "h1", "h2", "h3"] and report["most_similar_streams"] <= 1 + 1e-12
    assert report["unmoved"] == []
    assert "spectral radius of the product" in text
    # the trained matrices and vectors, not their initial values, are what learned reports
    for name in ("res", "pre", "post"):
        trained = [state[f"layer1.{t}.{name}"].double().numpy() for t in range(3)]
        np.testing.assert_allclose(data["shaped"][name]["layer1"], trained, rtol=1e-12)
    assert data["stages"] == [] and "whole network" not in text  # no analysis at initial values
    assert f"# res_n in layer1, step 2: [[{float(logits[2][0][0]):.6g}, " in text
