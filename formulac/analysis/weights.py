"""Block and initial weights by iterating the recurrence backwards (adjoint pass), exactly.

The unrolled network to depth ``N`` is a DAG of state values ``s_j`` (``j = 1..N``), each a
linear combination of earlier values, of block outputs at its step and of a constant. The weight
of any input in ``x_N`` is the sum over paths of the products of coefficients, which one backward
sweep computes: ``r[x_N] = 1``; for each value from last to first, pass ``r * coef`` on to what it
reads. Cost: one multiply-add per coefficient per step (O(N d) for a d-term recurrence, O(N^2)
for a history sum). No closed form, no ``rsolve``.

Arithmetic happens in the smallest exact SymPy domain that holds every coefficient (``ZZ``,
``QQ``, ``QQ[a]``, ``QQ(a)``, ...), found by ``construct_domain``; per-step parameters become
generators ``k_0 .. k_{N-1}``. Symbolic weights can grow exponentially with depth, so the pass
counts terms and stops at :data:`MAX_TERMS` (:class:`TooLarge`).
"""

from __future__ import annotations

import sympy
from sympy.polys.constructor import construct_domain

from ..ir import StateRef, decimal_text, n, pair_indices, rec_expr, references, state
from ..limits import MAX_HISTORY_TERMS, MAX_TERMS
from .formatting import json_integer, json_number, json_value, poly_text, sympy_text
from .linear import NonLinear, Structure, decompose

__all__ = ["Weights", "TooLarge", "TooDeep", "MAX_TERMS", "MAX_HISTORY_TERMS", "compute_weights"]


class TooDeep(Exception):
    """A history sum at this depth would take too long to expand."""


def history_terms(st: Structure, depth: int) -> int:
    """How many state references the history sums of ``st`` expand to over ``depth`` steps."""
    total = 0
    if st.forms is None:
        return depth * depth // 2 if any(r.has(sympy.Sum) for r in st.rhs.values()) else 0
    for f in st.forms.values():
        for s in f.sums:
            refs = max(1, len(s.body.refs))

            # limits are n plus or minus a whole number, or whole numbers: the length is linear in t
            def length(t, s=s):
                return max(0, int(s.high.xreplace({n: t})) - int(s.low.xreplace({n: t})) + 1)

            total += refs * (length(0) + length(max(depth - 1, 0))) * depth // 2
    return total


class TooLarge(Exception):
    """The symbolic weights exceed the size budget."""

    def __init__(self, depth: int, step: int, terms: int):
        super().__init__(f"more than {MAX_TERMS} terms at step {step} of {depth}")
        self.depth, self.step, self.terms = depth, step, terms


class Weights:
    """Weights as exact domain elements, converted to SymPy (and text) only when asked.

    ``block``: key -> [weight at step 0, ..., N-1]; ``initial``: input text (``"x_0"``, or an
    initial value that is not linear in ``x_0``) -> weight; ``offset``: the constant part of
    ``x_N`` (0 unless the formula adds constants).
    """

    def __init__(self, K, block_elems: dict, initial_elems: dict, offset_elem, inputs: dict, back: dict):
        self.K = K
        self.block_elems = block_elems
        self.initial_elems = initial_elems
        self.offset_elem = offset_elem
        self.inputs = inputs  # initial input text -> its SymPy expression
        self._back = back
        self._block = self._initial = None

    @property
    def domain(self) -> str:
        return str(self.K)

    def expr(self, x) -> sympy.Expr:
        v = self.K.to_sympy(x)
        return v.xreplace(self._back) if self._back else v

    @property
    def block(self) -> dict:
        if self._block is None:
            self._block = {k: [self.expr(x) for x in ws] for k, ws in self.block_elems.items()}
        return self._block

    @property
    def initial(self) -> dict:
        if self._initial is None:
            self._initial = {k: self.expr(x) for k, x in self.initial_elems.items()}
        return self._initial

    @property
    def offset(self) -> sympy.Expr:
        return self.expr(self.offset_elem)

    # fast conversions for the JSON contract and terminal tables
    def _fast(self) -> bool:
        K = self.K
        if K.is_ZZ or K.is_QQ:
            return True
        return bool((K.is_PolynomialRing or K.is_FractionField) and (K.domain.is_ZZ or K.domain.is_QQ))

    def json(self, x):
        """A JSON value: a number when numeric, else a string in SymPy syntax."""
        K = self.K
        if K.is_ZZ:
            return json_integer(int(x))
        if K.is_QQ:
            return json_number(sympy.Rational(int(x.numerator), int(x.denominator)))
        if (K.is_PolynomialRing or K.is_FractionField) and all(g.is_number for g in K.symbols):
            return json_value(self.expr(x))  # generators such as exp(1) or sigmoid(1): a number
        if self._fast():
            if K.is_PolynomialRing and x.is_ground:
                return self._ground_json(x)
            if K.is_FractionField and x.numer.is_ground and x.denom.is_ground:
                return json_number(K.to_sympy(x))
            return self.text(x)
        return json_value(self.expr(x))

    def _ground_json(self, x):
        return json_number(self.K.domain.to_sympy(x.LC if x else self.K.domain.zero))

    def text(self, x) -> str:
        """The exact value in SymPy syntax (``3/4``, ``k_1*k_2 + 1``)."""
        K = self.K
        if K.is_ZZ:
            return decimal_text(int(x))
        if K.is_QQ:
            p, q = decimal_text(int(x.numerator)), decimal_text(int(x.denominator))
            return p if q == "1" else f"{p}/{q}"
        if K.is_PolynomialRing and (K.domain.is_ZZ or K.domain.is_QQ):
            return poly_text(x, self._gen_names())
        if K.is_FractionField and (K.domain.is_ZZ or K.domain.is_QQ):
            names = self._gen_names()
            num, den = poly_text(x.numer, names), poly_text(x.denom, names)
            if den == "1":
                return num
            num = f"({num})" if len(x.numer) > 1 else num
            den = f"({den})" if len(x.denom) > 1 or "*" in den or "/" in den else den
            return f"{num}/{den}"
        return sympy_text(self.expr(x))

    def _gen_names(self) -> list[str]:
        if not hasattr(self, "_names"):
            self._names = [
                sympy_text(g.xreplace(self._back)) if self._back else sympy_text(g) for g in self.K.symbols
            ]
        return self._names

    def terms(self, x) -> int:
        K = self.K
        if K.is_PolynomialRing:
            return len(x)
        if K.is_FractionField:
            return len(x.numer) + len(x.denom)
        return 1


#: Depth of the trial run that decides, for deep formulas with per-step parameters, whether
#: symbolic weights can fit the budget (the last steps of a deep run repeat the trial's pattern).
PROBE_DEPTH = 32


def compute_weights(st: Structure, depth: int, state_name: str | None = None) -> Weights:
    """Weights of every block output and initial input in ``output_depth`` (or in
    ``state_name`` at ``depth``).

    Raises :class:`TooLarge` when symbolic weights exceed :data:`MAX_TERMS`.
    """
    if st.forms is None:
        raise ValueError("the formula is not linear")
    target = state_name or st.output
    if st.has_sums and history_terms(st, depth) > MAX_HISTORY_TERMS:
        raise TooDeep(
            f"the history sum expands to {history_terms(st, depth)} terms at depth {depth} "
            f"(the limit is {MAX_HISTORY_TERMS}, about depth {int((2 * MAX_HISTORY_TERMS) ** 0.5)})"
        )
    if depth > PROBE_DEPTH and st.params_mode == "symbolic" and _per_step_only(st):
        # a step-invariant formula whose coefficients carry per-step parameters: the weights of
        # the last PROBE_DEPTH blocks at depth N are those of a PROBE_DEPTH-deep run (with the
        # parameters renamed), so if that run overflows away from the initial steps, so does this
        # one; finding out takes a fraction of the full run with its N generators.
        refs = (StateRef.of(r) for f in st.forms.values() for r in f.refs)
        order = max((1 - ref.offset for ref in refs if ref.offset is not None), default=1)
        try:
            _compute(st, PROBE_DEPTH, target)
        except TooLarge as exc:
            if exc.step >= order:
                raise TooLarge(depth, depth - PROBE_DEPTH + exc.step, exc.terms) from None
    return _compute(st, depth, target)


def _per_step_only(st: Structure) -> bool:
    if st.has_sums:
        return False
    coefs = [c for f in st.forms.values() for c in f.coefficients() if isinstance(c, sympy.Basic)]

    def step_dependent(c):
        refs = c.atoms(sympy.Indexed)
        return (c.xreplace({r: sympy.Dummy() for r in refs}) if refs else c).has(n)

    return not any(step_dependent(c) for c in coefs) and any(c.atoms(sympy.Indexed) for c in coefs)


def _compute(st: Structure, depth: int, target: str) -> Weights:
    # a template holds offsets from n; a read of x_0 has none, so such formulas go step by step
    templated = not st.has_sums and not st.time_varying() and not st.reads_start
    template, concrete, coef_exprs, initial_refs = _step_forms(st, depth, templated)
    if depth == 0:
        initial_refs.add((target, 0))
    initial_forms, inputs = _initial_forms(st, initial_refs, coef_exprs)
    domain = _Domain(coef_exprs)
    adj, wblock, offset = _backward_sweep(st, depth, target, domain, template, concrete)
    return _reached_start(st, domain, adj, wblock, offset, initial_forms, inputs)


def _step_forms(st: Structure, depth: int, templated: bool):
    """Phase 1: concrete forms per step (a template with integer offsets for constant
    coefficients): (template, concrete, coefficient expressions, initial references read)."""
    if not templated:
        concrete = [[st.concrete(s, t) for s in st.states] for t in range(depth)]
        coef_exprs: set = set()
        initial_refs: set = set()
        for row in concrete:
            for cf in row:
                coef_exprs.update(cf.refs.values())
                coef_exprs.update(cf.blocks.values())
                coef_exprs.add(cf.const)
                initial_refs.update(k for k in cf.refs if k[1] <= 0)
        return None, concrete, coef_exprs, initial_refs
    template = {}
    for s in st.states:
        f = st.forms[s]
        refs = [(ref.name, ref.offset, c) for ref, c in ((StateRef.of(r), c) for r, c in f.refs.items())]
        blocks = {}
        for call, c in f.blocks.items():
            key = st.block_keys[call]
            blocks[key] = blocks.get(key, 0) + c
        template[s] = (refs, list(blocks.items()), f.const)
    coef_exprs = {c for refs, blocks, const in template.values() for _, _, c in refs}
    coef_exprs |= {c for refs, blocks, const in template.values() for _, c in blocks}
    coef_exprs |= {const for refs, blocks, const in template.values()}
    initial_refs = set()
    lowest = min((off for refs, _, _ in template.values() for _, off, _ in refs), default=0)
    for t in range(min(depth, 1 - lowest)):
        for refs, _, _ in template.values():
            for name, off, _ in refs:
                if t + off <= 0:
                    initial_refs.add((name, t + off))
    return template, None, coef_exprs, initial_refs


def _initial_forms(st: Structure, initial_refs: set, coef_exprs: set):
    """Phase 2: initial values as combinations of the inputs: ({(state, j): (parts, constant)},
    {input text: input}); their coefficients join ``coef_exprs``."""
    initial_forms: dict = {}
    inputs: dict = {}
    for name, j in initial_refs:
        value = sympy.sympify(st.initial_value(name, j))
        parts: dict = {}
        const = sympy.Integer(0)
        try:
            form = decompose(value, (st.output,))
            if form.blocks or form.sums:
                raise NonLinear("blocks in an initial value")
            for ref, c in form.refs.items():
                text = rec_expr(ref)
                inputs[text] = ref
                parts[text] = parts.get(text, 0) + c
            const = form.const
        except NonLinear:
            text = rec_expr(value)
            inputs[text] = value
            parts[text] = sympy.Integer(1)
        initial_forms[(name, j)] = (parts, const)
        coef_exprs.update(parts.values())
        coef_exprs.add(const)
    return initial_forms, inputs


class _Domain:
    """Phase 3: one exact domain for every coefficient; ``el(e)`` is ``e`` in it."""

    def __init__(self, coef_exprs: set):
        exprs = [sympy.sympify(e) for e in coef_exprs] + [sympy.Integer(1)]
        params, self.back = _param_dummies(exprs)
        self.K, elems = _domain([e.xreplace(params) if params else e for e in exprs])
        self.to_dom = dict(zip(exprs, elems))
        self.zero, self.one = self.K.zero, self.K.one
        self.exact_numeric = self.K.is_ZZ or self.K.is_QQ or self.K.is_RR or self.K.is_CC
        self.size = _size_function(self.K)

    def el(self, e):
        return self.to_dom[sympy.sympify(e)]


def _backward_sweep(st: Structure, depth: int, target: str, domain: _Domain, template, concrete):
    """Phase 4: the backward sweep from ``target`` at ``depth``: (adjoints of what reached the
    start, block weights per step, constant offset)."""
    el, zero = domain.el, domain.zero
    states = st.states
    adj: dict = {(target, depth): domain.one}
    wblock = {key: [zero] * depth for key in st.key_order}
    offset = zero
    if template is not None:
        tmpl = {
            s: ([(nm, off, el(c)) for nm, off, c in refs], [(k, el(c)) for k, c in blocks], el(const))
            for s, (refs, blocks, const) in template.items()
        }
    terms_done = 0
    for t in range(depth - 1, -1, -1):
        for si in range(len(states) - 1, -1, -1):
            s = states[si]
            a = adj.pop((s, t + 1), None)
            if a is None or a == zero:
                continue
            if template is not None:
                refs, blocks, const = tmpl[s]
                for nm, off, c in refs:
                    key = (nm, t + off)
                    adj[key] = adj.get(key, zero) + a * c
                for k, c in blocks:
                    wblock[k][t] += a * c
                if const != zero:
                    offset += a * const
            else:
                cf = concrete[t][si]
                for key, c in cf.refs.items():
                    adj[key] = adj.get(key, zero) + a * el(c)
                for k, c in cf.blocks.items():
                    wblock[k][t] += a * el(c)
                if cf.const != 0:
                    offset += a * el(cf.const)
        if not domain.exact_numeric:
            terms_done += sum(domain.size(w[t]) for w in wblock.values())
            total = terms_done + sum(domain.size(v) for v in adj.values())
            if total > MAX_TERMS:
                raise TooLarge(depth, t, total)
    return adj, wblock, offset


def _reached_start(st: Structure, domain: _Domain, adj, wblock, offset, initial_forms, inputs) -> Weights:
    """Phase 5: what reached the start, as weights of the inputs."""
    el, zero = domain.el, domain.zero
    winit: dict = {}
    for key, a in adj.items():
        if key not in initial_forms:
            if key == (st.output, 0):
                initial_forms[key] = ({rec_expr(state(st.output, 0)): sympy.Integer(1)}, 0)
            else:  # a value never computed: cannot happen for a well-formed recurrence
                raise AssertionError(f"unexpected reference {key}")
        parts, const = initial_forms[key]
        for text, c in parts.items():
            winit[text] = winit.get(text, zero) + a * el(c)
        if const != 0:
            offset += a * el(const)
    out_text = rec_expr(state(st.output, 0))
    inputs.setdefault(out_text, state(st.output, 0))
    winit.setdefault(out_text, zero)

    initial_order = sorted(winit, key=lambda k: k != out_text)
    return Weights(domain.K, wblock, {k: winit[k] for k in initial_order}, offset, inputs, domain.back)


def _param_dummies(exprs):
    """Per-step parameter references ``k[3]`` -> plain symbols (polynomial generators)."""
    params: dict = {}
    for e in exprs:
        for ref in references(e):
            if ref.indexed not in params:
                # names of the language contain no underscore, so k_3 cannot clash
                indices = "_".join(str(i) for i in (pair_indices(ref.indexed) or (ref.index,)))  # w_2_3
                params[ref.indexed] = sympy.Symbol(f"{ref.name}_{indices}")
    return params, {v: k for k, v in params.items()}


def _domain(exprs):
    K, elems = construct_domain(exprs)
    if K.is_EX:
        try:
            K2, elems2 = construct_domain(exprs, extension=True)
            if not K2.is_EX:
                return K2, elems2
        except Exception:
            pass
    return K, elems


def _size_function(K):
    if K.is_PolynomialRing:
        scale = max(1, len(K.gens) // 64)  # every term carries an exponent per generator
        return lambda x: len(x) * scale
    if K.is_FractionField:
        return lambda x: len(x.numer) + len(x.denom)
    if K.is_EX:
        return lambda x: sympy.count_ops(x.ex) + 1
    return lambda x: 1
