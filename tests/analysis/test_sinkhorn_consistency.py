"""Consistency of a stream formula at its parameters' initial values when the mixing matrix is
``sinkhorn(res_n)`` (``examples/mhc_k4.rec``, issue 22).

Sinkhorn-Knopp ends each round by normalising the columns, so its matrix has columns summing to
1 and an eigenvalue of exactly 1 (1ᵀA = 1ᵀ): the characteristic polynomial vanishes at λ = 1.
The analysis holds the matrix's entries as 30-digit Floats, which left about 1e-31 and made it
say "no". The reference here is the eigenvalues of the network's own Sinkhorn matrix (NumPy)."""

from __future__ import annotations

import numpy as np
import pytest
from fixtures_path import REPO

from formulac.analysis import analyze
from formulac.ir import sinkhorn_matrix
from formulac.parse import parse

MHC_K4 = (REPO / "examples" / "mhc_k4.rec").read_text()


def _verdict(text: str) -> str:
    notes = analyze(parse(text), depth=4, paths=False).notes
    (note,) = [x for x in notes if x.startswith("consistent only where")]
    return note.split("at the parameters' initial values: ")[1]


@pytest.mark.parametrize(("scale", "consistent"), [("", True), ("1/2*", False)], ids=["mhc_k4", "half"])
def test_consistency_at_the_initial_values_agrees_with_the_eigenvalues(scale, consistent):
    text = MHC_K4.replace("sinkhorn(res_n) @ h_n", f"{scale}sinkhorn(res_n) @ h_n")
    identity = np.eye(4).tolist()
    mixing = np.array(sinkhorn_matrix(identity)) * (0.5 if scale else 1.0)
    has_one = bool(np.min(np.abs(np.linalg.eigvals(mixing) - 1)) < 1e-12)
    assert has_one is consistent  # the reference
    assert _verdict(text).startswith("yes" if consistent else "no")
