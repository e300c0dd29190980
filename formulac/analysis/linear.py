"""The linear structure of a recurrence: per equation, the coefficient of every state reference,
of every block output (blocks are opaque inputs), of every history sum, and the constant rest.

``decompose`` either returns a :class:`LinearForm` or raises :class:`NonLinear` with a reason
a user can read (``relu(...) after the addition``, ``T(x_n)*x_n gates a state``, ``cat``).
:class:`Structure` holds the forms of all equations of a recurrence, the names under which the
block outputs are reported, and turns a form into its concrete version at an integer step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy

from .. import ir
from ..errors import UsageError
from ..ir import (
    BlockCall,
    Concat,
    Recurrence,
    StateRef,
    n,
    rec_expr,
    references,
    substitute_param_inits,
    walk,
)
from ..limits import MAX_ANALYSIS_DEPTH

__all__ = ["NonLinear", "LinearForm", "SumTerm", "Structure", "decompose", "structure", "check_steps"]


def check_steps(steps, what: str = "the number of steps") -> int:
    """A depth or number of steps: a whole number from 0 to :data:`MAX_ANALYSIS_DEPTH`."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise UsageError(f"{what} must be a whole number >= 0, not {steps!r}")
    if steps > MAX_ANALYSIS_DEPTH:
        raise UsageError(f"{what} must be at most {MAX_ANALYSIS_DEPTH}, not {steps}")
    return steps


class NonLinear(Exception):
    """The expression is not a linear combination of states and block outputs."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class SumTerm:
    """``coef * sum(var=low..high, body)`` with ``body`` linear in the states."""

    coef: sympy.Expr
    var: sympy.Symbol
    low: sympy.Expr
    high: sympy.Expr
    body: LinearForm


@dataclass
class LinearForm:
    """``sum(coef * ref) + sum(coef * block) + sums + const``; coefficients are free of states."""

    refs: dict = field(default_factory=dict)  # Indexed state reference -> coefficient
    blocks: dict = field(default_factory=dict)  # BlockCall -> coefficient
    sums: list = field(default_factory=list)  # SumTerm
    const: sympy.Expr = sympy.S.Zero

    def scaled(self, c: sympy.Expr) -> LinearForm:
        if c == 1:
            return self
        return LinearForm(
            {k: c * v for k, v in self.refs.items()},
            {k: c * v for k, v in self.blocks.items()},
            [SumTerm(c * s.coef, s.var, s.low, s.high, s.body) for s in self.sums],
            c * self.const,
        )

    def add(self, other: LinearForm) -> LinearForm:
        refs = dict(self.refs)
        for k, v in other.refs.items():
            refs[k] = refs.get(k, 0) + v
        blocks = dict(self.blocks)
        for k, v in other.blocks.items():
            blocks[k] = blocks.get(k, 0) + v
        return LinearForm(
            {k: v for k, v in refs.items() if v != 0},
            {k: v for k, v in blocks.items() if v != 0},
            self.sums + other.sums,
            self.const + other.const,
        )

    def substitute(self, ref: sympy.Indexed, form: LinearForm) -> LinearForm:
        """Replace a state reference by a linear form (same-step references)."""
        if ref not in self.refs:
            return self
        c = self.refs[ref]
        rest = LinearForm(
            {k: v for k, v in self.refs.items() if k != ref}, dict(self.blocks), list(self.sums), self.const
        )
        return rest.add(form.scaled(c))

    def coefficients(self):
        yield from self.refs.values()
        yield from self.blocks.values()
        for s in self.sums:
            yield s.coef
            yield from s.body.coefficients()
        yield self.const


def _is_coefficient(expr: sympy.Expr, states: frozenset[str]) -> bool:
    if expr.is_Number or expr.is_Symbol:
        return True
    if expr.has(BlockCall, Concat):
        return False
    return next(references(expr, states), None) is None


def decompose(expr: sympy.Expr, states) -> LinearForm:
    """The linear form of ``expr`` in the states named ``states``; :class:`NonLinear` if none."""
    states = frozenset(states)
    return _decompose(expr, states)


def _decompose(e: sympy.Expr, states: frozenset[str]) -> LinearForm:
    if _is_coefficient(e, states):
        return LinearForm(const=e)
    if isinstance(e, sympy.Indexed):
        return LinearForm(refs={e: sympy.Integer(1)})
    if isinstance(e, BlockCall):
        return LinearForm(blocks={e: sympy.Integer(1)})
    if isinstance(e, sympy.Add):
        form = LinearForm()
        for a in e.args:
            form = form.add(_decompose(a, states))
        return form
    if isinstance(e, sympy.Mul):
        coefs = [a for a in e.args if _is_coefficient(a, states)]
        rest = [a for a in e.args if not _is_coefficient(a, states)]
        if len(rest) == 1:
            return _decompose(rest[0], states).scaled(sympy.Mul(*coefs))
        if any(isinstance(a, BlockCall) for a in rest) and any(not isinstance(a, BlockCall) for a in rest):
            raise NonLinear(
                f"the gate {rec_expr(e)} multiplies states by a block output: not linear in the states"
            )
        raise NonLinear(f"the product {rec_expr(e)} is not linear in the states")
    if isinstance(e, sympy.Sum):
        body = _decompose(e.function, states)
        if body.blocks or body.sums:
            raise NonLinear(
                f"{rec_expr(e)} applies a block inside a history sum, which the linear analysis does not cover"
            )
        ((var, low, high),) = e.limits
        return LinearForm(sums=[SumTerm(sympy.Integer(1), var, low, high, body)])
    if isinstance(e, Concat):
        raise NonLinear(f"{rec_expr(e)} concatenates channels: not scalar-linear")
    if isinstance(e, sympy.Pow):
        raise NonLinear(f"the power {rec_expr(e)} is not linear in the states")
    if isinstance(e, sympy.Function):
        return _nonlinear_function(e)
    raise NonLinear(f"{rec_expr(e)} is not linear in the states")


def _nonlinear_function(e: sympy.Expr):
    name = getattr(e.func, "__name__", str(e.func))
    raise NonLinear(f"{name}(...) is applied to states ({rec_expr(e)}): not linear in the states")


@dataclass
class ConcreteForm:
    """A linear form at an integer step: ``(state, index) -> coefficient``, block key -> coefficient."""

    refs: dict
    blocks: dict
    const: sympy.Expr


@dataclass
class Structure:
    """Everything the analyses need from a recurrence, computed once."""

    rec: Recurrence
    params_mode: str
    states: tuple[str, ...]
    output: str
    rhs: dict  # state -> resolved canonical rhs (constants substituted; params per mode)
    forms: dict | None  # state -> LinearForm, None when not linear
    reason: str | None  # why not linear
    block_keys: dict  # generic canonical BlockCall -> key (block name or its step-generic text)
    key_order: list  # keys in order of first appearance
    display_calls: dict  # generic canonical BlockCall -> display BlockCall (user's term order)

    @property
    def linear(self) -> bool:
        return self.forms is not None

    @property
    def has_sums(self) -> bool:
        return any(f.sums for f in (self.forms or {}).values()) or any(
            r.has(sympy.Sum) for r in self.rhs.values()
        )

    @property
    def reads_start(self) -> bool:
        """Does an equation read a state at the absolute index 0 (``x_0``, ``v_0``)?"""
        return any(ref.step is not None for r in self.rhs.values() for ref in references(r, self.states))

    def time_varying(self) -> bool:
        """Do coefficients depend on the step (``n`` or per-step parameters)?"""
        for f in self.forms.values():
            for c in f.coefficients():
                if c.has(n) or any(isinstance(a, sympy.Indexed) for a in walk(c)):
                    return True
        return False

    # -- concrete steps ---------------------------------------------------------------------
    def concrete(self, state_name: str, t: int) -> ConcreteForm:
        """The form of ``state_<t+1>`` (computed at step ``t``)."""
        form = self.forms[state_name]
        sub = {n: sympy.Integer(t)}
        refs: dict = {}
        extra = sympy.Integer(0)
        for node, c in form.refs.items():
            ref = StateRef.of(node)
            key = (ref.name, ref.at(t))
            refs[key] = refs.get(key, 0) + _at(c, sub)
        for s in form.sums:
            outer = _at(s.coef, sub)
            low, high = int(s.low.xreplace(sub)), int(s.high.xreplace(sub))
            body = [
                (ref.name, ref.shift, c) for ref, c in ((StateRef.of(r), c) for r, c in s.body.refs.items())
            ]
            for name, off, c in body:
                varying = isinstance(c, sympy.Basic) and (c.has(s.var) or c.has(n))
                cc = outer * c
                for i in range(low, high + 1):
                    key = (name, i + off)
                    if varying:
                        cc = outer * _at(c, {n: sympy.Integer(t), s.var: sympy.Integer(i)})
                    refs[key] = refs.get(key, 0) + cc
            if s.body.const != 0:
                for i in range(low, high + 1):
                    extra += outer * _at(s.body.const, {n: sympy.Integer(t), s.var: sympy.Integer(i)})
        blocks: dict = {}
        for call, c in form.blocks.items():
            key = self.block_keys[call]
            blocks[key] = blocks.get(key, 0) + _at(c, sub)
        const = _at(form.const, sub) + extra
        return ConcreteForm({k: v for k, v in refs.items() if v != 0}, blocks, const)

    def concrete_call(self, key: str, t: int) -> BlockCall | None:
        """The block output reported under ``key`` at step ``t``, arguments in named states."""
        for call, k in self.block_keys.items():
            if k == key:
                return self.name_initial_states(call.xreplace({n: sympy.Integer(t)}))
        return None

    def name_initial_states(self, expr: sympy.Expr) -> sympy.Expr:
        """Replace states before the start (and non-output states at 0) by their initial values."""
        mapping = {}
        for ref in references(expr, self.states):
            step = ref.step
            if step is not None and step <= 0 and not (ref.name == self.output and step == 0):
                mapping[ref.indexed] = self.rec.initial_value(ref.name, step)
        return expr.xreplace(mapping) if mapping else expr

    def initial_value(self, name: str, index: int) -> sympy.Expr:
        value = self.rec.initial_value(name, index).xreplace(self.rec.substitutions())
        if self.params_mode == "init":
            value = substitute_param_inits(value, self.rec.params)
        return value


def _at(c, sub):
    if not isinstance(c, sympy.Basic) or c.is_Number:
        return c
    v = c.xreplace(sub)
    if v.has(sympy.Sum):
        v = v.doit()
    return v


def structure(rec: Recurrence, params: str = "symbolic") -> Structure:
    """The linear structure of ``rec`` (``params``: keep parameters symbolic or use their inits)."""
    if params not in ("symbolic", "init"):
        raise UsageError(f"params must be 'symbolic' or 'init', not {params!r}")
    states = rec.states
    # a window is its lags (x_<n-2>, ...); its pair parameters' initial values [n-2 == n+1],
    # written out unevaluated, are evaluated again so that they are numbers
    rhs = {
        s: ir.windows_written_out(rec.resolved_rhs(s, params=params)).replace(
            sympy.KroneckerDelta, lambda *sides: sympy.KroneckerDelta(*sides)
        )
        for s in states
    }
    forms: dict | None = {}
    reason = None
    for s in states:
        try:
            forms[s] = decompose(rhs[s], states)
        except NonLinear as exc:
            forms, reason = None, exc.reason
            break

    # display forms of block calls, for step-generic keys
    subs = rec.substitutions()
    display_calls: dict = {}
    for eq in rec.equations:
        for c in ir.block_calls(eq.display_rhs):  # the calls as written, and canonical
            canon = ir.rebuild(c).xreplace(subs)
            if params == "init":
                canon = substitute_param_inits(canon, rec.params)
            display_calls.setdefault(canon, c)

    # top-level block outputs, per block name, in order of appearance
    outputs: dict[str, dict] = {b: {} for b in rec.blocks}
    if forms is not None:
        for s in states:
            for call in forms[s].blocks:
                outputs.setdefault(call.block, {})[call] = None
    block_keys: dict = {}
    key_order: list = []
    shown = {call: i for i, call in enumerate(display_calls)}
    for name, calls in outputs.items():
        calls = sorted(calls, key=lambda c: shown.get(c, len(shown)))
        if len(calls) == 1:
            block_keys[calls[0]] = name
            key_order.append(name)
        elif not calls:
            key_order.append(name)  # only nested: its outputs never reach a state directly
        else:
            for call in calls:
                key = rec_expr(display_calls.get(call, call))
                block_keys[call] = key
                key_order.append(key)
    return Structure(
        rec, params, states, rec.output, rhs, forms, reason, block_keys, key_order, display_calls
    )


def same_step_substituted(st: Structure, blocks: bool = True) -> dict:
    """Generic forms with same-step references (``v_<n+1>`` in ``x``'s equation) substituted;
    without ``blocks``, the block outputs left out (the characteristic polynomial reads only the
    states; in a chain of same-step states each form would hold every later block, N^2/2 terms)."""
    done: dict = {}
    for s in st.states:
        form = st.forms[s]
        if not blocks:
            form = LinearForm(form.refs, {}, form.sums, form.const)
        for node in list(form.refs):
            ref = StateRef.of(node)
            if ref.offset == 1 and ref.name in done:
                form = form.substitute(node, done[ref.name])
        done[s] = form
    return done
