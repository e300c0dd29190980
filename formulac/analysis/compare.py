"""Compare two formulas at one depth: same unrolled form or not, and where they differ."""

from __future__ import annotations

import sympy

from ..errors import UsageError
from .result import Analysis, Diff

__all__ = ["diff_analyses"]

_PROPERTIES = (
    "output",
    "order",
    "linear",
    "characteristic_polynomial",
    "roots",
    "stability",
    "rate",
    "consistent",
)


def _equal(x, y) -> bool:
    if x is None or y is None:
        return x is y
    x, y = sympy.sympify(x), sympy.sympify(y)
    if x == y:
        return True
    d = x - y
    if d.is_number:
        return d == 0 or (d.is_zero is True)
    if sympy.count_ops(d) > 2000:
        return False
    return sympy.expand(d) == 0


def _roots_equal(ra, rb) -> bool:
    if ra is None or rb is None:
        return ra is rb
    if len(ra) != len(rb):
        return False

    def key(r):
        return (
            (r.multiplicity, complex(r.value.evalf(15)).real, complex(r.value.evalf(15)).imag)
            if r.value.is_number
            else (r.multiplicity, 0, 0)
        )

    try:
        sa, sb = sorted(ra, key=key), sorted(rb, key=key)
    except TypeError:
        sa, sb = ra, rb
    return all(x.multiplicity == y.multiplicity and _equal(x.value, y.value) for x, y in zip(sa, sb))


def _expansion_terms(an: Analysis) -> dict | None:
    """Concrete block output (or input) -> weight, for a linear analysis."""
    if an.weights is None:
        return None
    st, w = an.structure, an.weights
    terms: dict = {}
    for text, weight in w.initial.items():
        if weight != 0:
            terms[w.inputs[text]] = weight
    for key, ws in w.block.items():
        for t, weight in enumerate(ws):
            if weight != 0:
                call = st.concrete_call(key, t)
                terms[call] = terms.get(call, 0) + weight
    if w.offset != 0:
        terms[sympy.Integer(1)] = w.offset
    return terms


def diff_analyses(a: Analysis, b: Analysis) -> Diff:
    depth = a.depth
    notes: list = []
    # same unrolled form?
    same: bool | None
    ta, tb = _expansion_terms(a), _expansion_terms(b)
    if ta is not None and tb is not None:
        same = set(ta) == set(tb) and all(_equal(ta[k], tb[k]) for k in ta)
    elif a.linear != b.linear:
        same = False
    else:
        try:
            ea, eb = a.unrolled().expr, b.unrolled().expr
            same = ea == eb or (
                sympy.count_ops(ea) + sympy.count_ops(eb) < 5000 and sympy.expand(ea - eb) == 0
            )
        except UsageError as exc:
            same = None
            notes.append(f"unrolled forms not compared: {exc.message}")
    # weights
    bw = None
    if a.block_weights is not None and b.block_weights is not None:
        bw = {}
        keys = list(dict.fromkeys(list(a.block_weights) + list(b.block_weights)))
        for k in keys:
            wa = a.block_weights.get(k, [sympy.Integer(0)] * depth)
            wb = b.block_weights.get(k, [sympy.Integer(0)] * depth)
            rows = [(t, wa[t], wb[t]) for t in range(depth) if not _equal(wa[t], wb[t])]
            if rows:
                bw[k] = rows
    elif a.block_weights is not None or b.block_weights is not None:
        notes.append("block weights exist for only one of the formulas (the other is not linear)")
    iw = None
    if a.initial_weights is not None and b.initial_weights is not None:
        iw = {}
        for k in dict.fromkeys(list(a.initial_weights) + list(b.initial_weights)):
            wa, wb = a.initial_weights.get(k, sympy.Integer(0)), b.initial_weights.get(k, sympy.Integer(0))
            if not _equal(wa, wb):
                iw[k] = (wa, wb)
    props: dict = {}
    for name in _PROPERTIES:
        va, vb = getattr(a, name), getattr(b, name)
        if name == "roots":
            differ = not _roots_equal(va, vb)
        elif name in ("characteristic_polynomial", "rate"):
            differ = not _equal(va, vb)
        else:
            differ = va != vb
        if differ:
            props[name] = (va, vb)
    return Diff(a, b, depth, same, bw, iw, props, notes)
