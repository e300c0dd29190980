"""Learned mixing read back numerically: what a trained network's coefficients make of its stream.

Given numbers for every parameter (shared ``k``, per step ``k[t]``, per pair ``w[t, i]``), a
forward sweep over the linear forms of a formula gives each state value as a combination of
the input and of every block output (:func:`effective_weights`): row ``t`` of the matrix is the
output state after step ``t``, column ``k`` the block output of step ``k``. For a formula that
reads only the previous step (order 1; hyper-connection streams, ResNets), the step's linear
map between the states it carries is a matrix (:func:`transition_matrices`): the spectral
radius of their product, each one's distance from the identity and from the doubly stochastic
matrices, and how alike the streams' effective weights are (collapse) follow from them. No
torch here: the numbers come from a checkpoint read elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sympy

from ..errors import UsageError
from ..ir import Recurrence, StateRef, n
from .linear import NonLinear, Structure, decompose, structure

__all__ = [
    "EffectiveWeights",
    "effective_weights",
    "carried_states",
    "transition_matrices",
    "spectral_radius_of_product",
    "distance_from_identity",
    "distance_from_doubly_stochastic",
    "stream_similarity",
]


@dataclass
class EffectiveWeights:
    """``columns``: ``"input"`` then ``(block key, step)``; ``states[(name, t)]``: the weights
    of ``name_t`` over the columns (``t`` from 0: values before the start and at it)."""

    depth: int
    output: str
    columns: list
    states: dict

    def matrix(self, name: str | None = None, block: str | None = None) -> np.ndarray:
        """Rows: ``name_1 .. name_depth`` (the output state by default); columns: the block
        outputs of ``block`` (the first block by default) at steps ``0 .. depth-1``."""
        name = name or self.output
        keys = [c for c in self.columns if c != "input"]
        block = block or keys[0][0]
        picked = [i for i, c in enumerate(self.columns) if c != "input" and c[0] == block]
        return np.array([self.states[(name, t + 1)][picked] for t in range(self.depth)])

    def input_weights(self, name: str | None = None) -> np.ndarray:
        """The weight of the input in ``name_1 .. name_depth``."""
        name = name or self.output
        return np.array([self.states[(name, t + 1)][0] for t in range(self.depth)])


def _numbers(expr, values: dict) -> float:
    value = sympy.sympify(sympy.sympify(expr).xreplace(values))
    if value.free_symbols:
        names = ", ".join(sorted(str(s) for s in value.free_symbols))
        raise UsageError(f"no value for {names} in the learned mixing")
    return float(value)


def _linear_structure(rec: Recurrence) -> Structure:
    st = structure(rec, "symbolic")
    if not st.linear:
        raise UsageError(f"the formula is not linear in its states ({st.reason}): no effective weights")
    return st


def effective_weights(rec: Recurrence, depth: int, values: dict) -> EffectiveWeights:
    """Every state value up to ``depth`` as weights over the input and the block outputs,
    with the parameters at ``values`` (SymPy parameter references -> numbers)."""
    st = _linear_structure(rec)
    columns: list = ["input"] + [(key, t) for t in range(depth) for key in st.key_order]
    position = {c: i for i, c in enumerate(columns)}
    width = len(columns)
    states: dict = {}

    def before_start(name: str, index: int) -> np.ndarray:
        value = st.initial_value(name, index)
        weights = np.zeros(width)
        try:
            form = decompose(value, (st.output,))
        except NonLinear as exc:
            raise UsageError(
                f"the initial value of {name} is not linear in the input: {exc.reason}"
            ) from None
        weights[0] = sum(_numbers(c, values) for c in form.refs.values())
        return weights

    def read(name: str, index: int) -> np.ndarray:
        if (name, index) not in states:
            if index > 0:
                raise UsageError(f"{name}_{index} is read before it is computed")
            states[(name, index)] = before_start(name, index)
        return states[(name, index)]

    for t in range(depth):
        for s in st.states:
            form = st.concrete(s, t)
            weights = np.zeros(width)
            for (name, index), c in form.refs.items():
                weights += _numbers(c, values) * read(name, index)
            for key, c in form.blocks.items():
                weights[position[(key, t)]] += _numbers(c, values)
            states[(s, t + 1)] = weights
    for s in st.states:
        read(s, 0)
    return EffectiveWeights(depth, st.output, columns, states)


def carried_states(rec: Recurrence) -> list[str]:
    """The states a step hands to the next, one value each (read at ``n``): the streams of a
    hyper-connection. A state kept further back (a window's ``b_<n-2>``) is a history.

    Not :attr:`Recurrence.carried_lags` (the states a step *keeps*): that also holds the output
    when no step reads it (``x``, the sum of the streams, in ``hyper_connections_k2.rec``) and a
    state summed over its history, neither of which is a stream of the state matrices."""
    return [s for s in rec.states if rec.lags.get(s, 0) == 1]


def transition_matrices(rec: Recurrence, depth: int, values: dict) -> list[np.ndarray] | None:
    """For an order-1 formula, per step ``t`` the matrix ``A_t`` with ``carried_{t+1} = A_t
    carried_t + (blocks)``: row ``i`` the coefficients of the carried states in carried state
    ``i`` (for hyper-connections, ``H_res`` transposed: rows are the new streams). None when a
    state is read further back than one step or through a history sum."""
    st = _linear_structure(rec)
    if any(lag not in (0, 1) for lag in rec.lags.values()):
        return None
    carried = carried_states(rec)
    if not carried:
        return None
    index = {s: i for i, s in enumerate(carried)}
    matrices = []
    for t in range(depth):
        rows: dict[str, np.ndarray] = {}
        for s in st.states:  # evaluation order: same-step reads are already rows
            row = np.zeros(len(carried))
            for node, c in st.forms[s].refs.items():
                ref = StateRef.of(node)
                coefficient = _numbers(sympy.sympify(c).xreplace({n: t}), values)
                if ref.offset == 0 and ref.name in index:
                    row[index[ref.name]] += coefficient
                elif ref.offset == 1:
                    row += coefficient * rows[ref.name]
            rows[s] = row
        matrices.append(np.array([rows[s] for s in carried]))
    return matrices


def spectral_radius_of_product(matrices: list[np.ndarray]) -> float:
    """The largest modulus of an eigenvalue of ``A_{T-1} ... A_1 A_0`` (1 for the identity)."""
    product = np.eye(matrices[0].shape[0])
    for a in matrices:
        product = a @ product
    return float(max(abs(np.linalg.eigvals(product))))


def distance_from_identity(matrix: np.ndarray) -> float:
    """The Frobenius norm of ``matrix - I``."""
    return float(np.linalg.norm(matrix - np.eye(matrix.shape[0])))


def distance_from_doubly_stochastic(matrix: np.ndarray) -> float:
    """How far ``matrix`` is from satisfying the doubly stochastic constraints: the sum of
    ``|row sum - 1|``, ``|column sum - 1|`` and of the negative entries' magnitudes (0 exactly
    for a doubly stochastic matrix, such as mHC's Sinkhorn-projected ``H_res``)."""
    rows = np.abs(matrix.sum(axis=1) - 1).sum()
    columns = np.abs(matrix.sum(axis=0) - 1).sum()
    return float(rows + columns + np.clip(-matrix, 0, None).sum())


def stream_similarity(weights: EffectiveWeights, streams: list[str]) -> np.ndarray:
    """Cosine similarity of the streams' effective weights after the last step: 1 off the
    diagonal means two streams carry the same combination of input and blocks (collapse)."""
    rows = np.array([weights.states[(s, weights.depth)] for s in streams])
    norms = np.linalg.norm(rows, axis=1)
    norms[norms == 0] = 1
    unit = rows / norms[:, None]
    return unit @ unit.T
