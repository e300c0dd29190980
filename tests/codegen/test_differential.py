"""Differential test of the whole pipeline: random formulas, four computations that must agree.

Hypothesis draws formulas from a model of the language kept in this file (orders 1-5, sums over
the history, with coefficients that follow the sum's index too, and windows, both reaching
before step 0; explicit initial conditions and the defaults; reads of ``x_0`` and ``v_0``;
constants, per-step and shared parameters, coefficients in ``n``; two- and three-state systems
with same-step reads; blocks reading older states, nested blocks; non-linear activations),
prints each as ``.rec`` text, and checks on it:

1. the analyzer's exact block and initial weights (``formulac.analyze(..., params="init")``)
   against an exact ``Fraction`` iteration of the model written here (linear formulas);
2. ``formulac.wire`` over random float64 blocks against a float64 iteration of the model with
   the same blocks, and that iteration against the analyzer's weights applied to the block
   outputs it recorded (linear formulas);
3. the steps of the compiled ``mlp`` backbone network (``run_stage``) against the float64
   iteration with the network's own blocks.

None of the references uses formulac's code: the model evaluates the formula itself, with the
language's rules for states before step 0 (docs/language.md: the output state equals ``x_0``
before the start, every other state is 0 at step 0 and before, unless an initial condition
says otherwise).

The suite runs a fixed (derandomized) set of examples in well under a minute. For a longer
hunt, set ``FORMULAC_DIFFERENTIAL_EXAMPLES`` (say 2000) and, to draw other formulas than the
fixed set, ``FORMULAC_DIFFERENTIAL_SEED`` (any integer)::

    FORMULAC_DIFFERENTIAL_EXAMPLES=2000 FORMULAC_DIFFERENTIAL_SEED=7 \\
        .venv/bin/python -m pytest -q tests/codegen/test_differential.py
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction

import pytest
import sympy
import torch
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from torch import nn

import formulac

EXAMPLES = int(os.environ.get("FORMULAC_DIFFERENTIAL_EXAMPLES", "60"))
SEED = os.environ.get("FORMULAC_DIFFERENTIAL_SEED")
WIDTH = 5  # features of the states
BATCH = 3

# ------------------------------------------------------------------------------------------
# the model: a formula as data, printable as .rec text


@dataclass(frozen=True)
class Ref:
    """``state_<n+offset>``; offset 1 (same step) only for a state computed earlier."""

    state: str
    offset: int


@dataclass(frozen=True)
class Start:
    """``state_0``: the input for the output state, an initial value for the others."""

    state: str


@dataclass(frozen=True)
class Block:
    name: str
    argument: tuple  # terms


@dataclass(frozen=True)
class History:
    """``sum(i=low..n, weight*state_<i-shift>)``, times ``(i+1)`` in each term when ``by_index``."""

    state: str
    low: int
    shift: int
    weight: Fraction
    by_index: bool = False


@dataclass(frozen=True)
class Window:
    """``sum(j=n-back..n-upto, state_<j-shift>)``."""

    state: str
    back: int
    upto: int
    shift: int


@dataclass(frozen=True)
class Activation:
    name: str  # relu, tanh, sigmoid
    argument: tuple  # terms


@dataclass(frozen=True)
class Term:
    """``coefficient * body``; a coefficient is a Fraction or one of the names below; a body of
    None is the coefficient alone (a constant term)."""

    coefficient: object
    body: object


# coefficient names: a constant, a per-step and a shared parameter, and 1/(n+1)
CONSTANT, PER_STEP, SHARED, STEP = "a", "k", "g", "step"


@dataclass(frozen=True)
class Model:
    states: tuple  # evaluation order; the last is the output x
    equations: dict  # state -> tuple of terms
    initial: dict  # (state, index <= 0) -> (c, d): c*x_0 + d
    constant: Fraction
    per_step_init: Fraction
    shared_init: Fraction
    blocks: tuple  # every block name, top-level ones first

    @property
    def output(self) -> str:
        return self.states[-1]

    @property
    def linear(self) -> bool:
        return not any(isinstance(node, Activation) for node in _nodes(self))

    def text(self) -> str:
        used = {node.coefficient for node in _nodes(self) if isinstance(node, Term)}
        lines = []
        if CONSTANT in used:
            lines.append(f"a = {_fraction(self.constant)}")
        if PER_STEP in used:
            lines.append(f"param k_n = {_fraction(self.per_step_init)}")
        if SHARED in used:
            lines.append(f"param g = {_fraction(self.shared_init)}")
        for (s, index), (c, d) in self.initial.items():
            head = f"{s}_0" if index == 0 else f"{s}_<{index}>"
            lines.append(f"{head} = ({_fraction(c)})*{self.output}_0 + ({_fraction(d)})")
        for s in self.states:
            lines.append(f"{s}_<n+1> = {_terms_text(self.equations[s])}")
        return "\n".join(lines) + "\n"


def _nodes(model: Model):
    stack = [t for terms in model.equations.values() for t in terms]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, Term):
            stack.append(node.body)
        elif isinstance(node, (Block, Activation)):
            stack.extend(node.argument)


def _fraction(f: Fraction) -> str:
    return str(f.numerator) if f.denominator == 1 else f"{f.numerator}/{f.denominator}"


def _index(var: str, offset: int) -> str:
    return var if offset == 0 else f"<{var}{offset:+d}>"


def _terms_text(terms) -> str:
    return " + ".join(_term_text(t) for t in terms)


def _term_text(term: Term) -> str:
    c = term.coefficient
    coefficient = {CONSTANT: "a", PER_STEP: "k_n", SHARED: "g", STEP: "1/(n+1)"}.get(c) or f"({_fraction(c)})"
    if term.body is None:
        return coefficient
    return f"{coefficient}*{_body_text(term.body)}"


def _body_text(body) -> str:
    if isinstance(body, Ref):
        return f"{body.state}_{_index('n', body.offset)}"
    if isinstance(body, Start):
        return f"{body.state}_0"
    if isinstance(body, Block):
        return f"{body.name}({_terms_text(body.argument)})"
    if isinstance(body, Activation):
        return f"{body.name}({_terms_text(body.argument)})"
    if isinstance(body, History):
        factor = "(i+1)*" if body.by_index else ""
        term = f"({_fraction(body.weight)})*{factor}{body.state}_{_index('i', -body.shift)}"
        return f"sum(i={body.low}..n, {term})"
    if isinstance(body, Window):
        high = "n" if body.upto == 0 else f"n-{body.upto}"
        return f"sum(j=n-{body.back}..{high}, {body.state}_{_index('j', -body.shift)})"
    raise TypeError(body)


# ------------------------------------------------------------------------------------------
# evaluation of the model, by its own rules: exact (linear combinations) and float64


class Iteration:
    """The states ``s_1 .. s_N`` of the model from ``x_0``, in a given arithmetic.

    ``blocks(name, t, argument)`` is a block output (``argument()`` computes its input);
    ``lift(c, d)`` the value ``c*x_0 + d``; ``number(c)`` a Fraction as a factor;
    ``activation(name, value)`` an element-wise function (float only).
    """

    def __init__(self, model: Model, blocks, lift, number, activation=None):
        self.model, self.blocks, self.lift, self.number = model, blocks, lift, number
        self.activation = activation
        self.values: dict = {}

    def run(self, depth: int):
        for t in range(depth):
            for s in self.model.states:
                self.values[(s, t + 1)] = self._terms(self.model.equations[s], t)
        return self.value(self.model.output, depth)

    def value(self, s: str, index: int):
        if index >= 1:
            return self.values[(s, index)]
        if (s, index) in self.model.initial:
            return self.lift(*self.model.initial[(s, index)])
        if s == self.model.output:
            return self.lift(Fraction(1), Fraction(0))  # x_0 itself, and the default before it
        return self.lift(Fraction(0), Fraction(0))

    def _terms(self, terms, t: int):
        total = self.lift(Fraction(0), Fraction(0))
        for term in terms:
            c = self._coefficient(term.coefficient, t)
            if term.body is None:
                total = total + self.lift(Fraction(0), c)
            else:
                total = total + self._body(term.body, t) * self.number(c)
        return total

    def _coefficient(self, c, t: int) -> Fraction:
        if isinstance(c, Fraction):
            return c
        if c == STEP:
            return Fraction(1, t + 1)
        return {
            CONSTANT: self.model.constant,
            PER_STEP: self.model.per_step_init,
            SHARED: self.model.shared_init,
        }[c]

    def _body(self, body, t: int):
        if isinstance(body, Ref):
            return self.value(body.state, t + body.offset)
        if isinstance(body, Start):
            return self.value(body.state, 0)
        if isinstance(body, Block):
            return self.blocks(body.name, t, lambda: self._terms(body.argument, t))
        if isinstance(body, Activation):
            return self.activation(body.name, self._terms(body.argument, t))
        if isinstance(body, History):
            total = self.lift(Fraction(0), Fraction(0))
            for i in range(body.low, t + 1):
                weight = body.weight * (i + 1) if body.by_index else body.weight
                total = total + self.value(body.state, i - body.shift) * self.number(weight)
            return total
        if isinstance(body, Window):
            total = self.lift(Fraction(0), Fraction(0))
            for j in range(t - body.back, t - body.upto + 1):
                total = total + self.value(body.state, j - body.shift)
            return total
        raise TypeError(body)


class Combination(dict):
    """An exact linear combination: key -> Fraction; keys "x_0", "1" and (block, step)."""

    def __add__(self, other):
        out = Combination(self)
        for k, v in other.items():
            out[k] = out.get(k, Fraction(0)) + v
        return out

    def __mul__(self, c):
        return Combination({k: v * Fraction(c) for k, v in self.items()})


def exact_weights(model: Model, depth: int) -> Combination:
    """``x_N`` as a combination of x_0, 1 and the top-level block outputs (Fraction arithmetic)."""

    def blocks(name, t, argument):
        return Combination({(name, t): Fraction(1)})  # the argument does not matter to a weight

    return Iteration(model, blocks, lambda c, d: Combination({"x_0": c, "1": d}), Fraction).run(depth)


def float_iteration(model: Model, x0: torch.Tensor, block_fns: dict, depth: int):
    """``x_N`` in float64 with the given block functions; also every top-level block output."""
    outputs: dict = {}
    top_level = {
        t.body.name for terms in model.equations.values() for t in terms if isinstance(t.body, Block)
    }

    def blocks(name, t, argument):
        out = block_fns[name][t](argument())
        if name in top_level:
            outputs[(name, t)] = out
        return out

    def lift(c, d):
        return x0 * float(c) + float(d)

    def activation(name, value):
        return {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid}[name](value)

    return Iteration(model, blocks, lift, float, activation).run(depth), outputs


# ------------------------------------------------------------------------------------------
# the strategy

FRACTIONS = st.sampled_from(
    [Fraction(v) for v in ("1", "-1", "1/2", "-1/2", "1/3", "-1/4", "3/2", "2", "1/5")]
)
DYADIC = st.sampled_from([Fraction(v) for v in ("1/2", "3/4", "-1/4", "5/4", "1")])
STATE_SETS = [("x",), ("v", "x"), ("u", "v", "x")]


@st.composite
def models(draw) -> Model:
    states = draw(st.sampled_from(STATE_SETS))
    order = draw(st.integers(1, 5))
    nonlinear = draw(st.booleans()) and draw(st.booleans())  # about one formula in four
    block_names = iter(("F", "G", "H", "P", "Q", "R"))
    used_blocks: list[str] = []

    def coefficient():
        return draw(st.one_of(FRACTIONS, st.sampled_from((CONSTANT, PER_STEP, SHARED, STEP))))

    def ref(position: int, same_step: bool = True):
        """A state that the equation of states[position] may read."""
        earlier = states[:position] if same_step else ()
        s = draw(st.sampled_from(states))
        if s in earlier and draw(st.booleans()):
            return Ref(s, 1)
        return Ref(s, -draw(st.integers(0, order - 1)))

    def argument(position: int, depth: int) -> tuple:
        refs = dict.fromkeys(ref(position) for _ in range(draw(st.integers(1, 2))))  # none cancel
        terms = [Term(draw(FRACTIONS), r) for r in refs]
        if depth < 2 and draw(st.integers(0, 3)) == 0:  # a nested block
            name = next(block_names)
            used_blocks.append(name)
            terms.append(Term(draw(FRACTIONS), Block(name, argument(position, depth + 1))))
        return tuple(terms)

    def body(position: int):
        kind = draw(st.sampled_from(("ref", "ref", "ref", "block", "history", "window", "start", "constant")))
        s = draw(st.sampled_from(states))
        if kind == "ref":
            return ref(position)
        if kind == "block":
            name = next(block_names, None)
            if name is None:
                return ref(position)
            used_blocks.append(name)
            return Block(name, argument(position, 0))
        if kind == "history":
            return History(
                s, draw(st.integers(0, 1)), draw(st.integers(0, 3)), draw(FRACTIONS), draw(st.booleans())
            )
        if kind == "window":
            back = draw(st.integers(0, 3))
            return Window(s, back, draw(st.integers(0, back)), draw(st.integers(0, 2)))
        if kind == "start":
            return Start(s)
        return None

    equations = {}
    for position, s in enumerate(states):
        terms = [Term(coefficient(), body(position)) for _ in range(draw(st.integers(1, 4)))]
        if all(t.body is None for t in terms):
            terms.append(Term(draw(FRACTIONS), ref(position)))
        if s == states[-1]:  # the output reads its oldest lag, so the order is what was drawn
            terms.append(Term(draw(FRACTIONS), Ref(s, 1 - order)))
            if not any(isinstance(t.body, Block) for t in terms):
                name = next(block_names)
                used_blocks.append(name)
                terms.append(Term(Fraction(1), Block(name, (Term(Fraction(1), Ref(s, 0)),))))
        if nonlinear and draw(st.booleans()):
            name = draw(st.sampled_from(("relu", "tanh", "sigmoid")))
            cut = draw(st.integers(0, len(terms) - 1))
            terms = [*terms[:cut], Term(Fraction(1), Activation(name, tuple(terms[cut:])))]
        equations[s] = tuple(terms)
    if nonlinear and not any(isinstance(t.body, Activation) for terms in equations.values() for t in terms):
        out = states[-1]
        equations[out] = (Term(Fraction(1), Activation("tanh", equations[out])),)

    model = Model(states, equations, {}, draw(FRACTIONS), draw(DYADIC), draw(DYADIC), tuple(used_blocks))
    initial = {}
    for s in states:
        for index in range(-_reach(model, s), 1):
            if (s, index) != (model.output, 0) and draw(st.integers(0, 2)) == 0:
                initial[(s, index)] = (draw(FRACTIONS), draw(st.sampled_from((Fraction(0), Fraction(1, 2)))))
    return Model(
        states, equations, initial, model.constant, model.per_step_init, model.shared_init, model.blocks
    )


def _reach(model: Model, s: str) -> int:
    """How far before step 0 the formula reads state s."""
    reach = 0
    for node in _nodes(model):
        if isinstance(node, Ref) and node.state == s:
            reach = max(reach, -node.offset)
        elif isinstance(node, History) and node.state == s:
            reach = max(reach, node.shift - node.low)
        elif isinstance(node, Window) and node.state == s:
            reach = max(reach, node.back + node.shift)
    return reach


# ------------------------------------------------------------------------------------------
# the four computations


def _random_blocks(names, depth: int, generator: torch.Generator) -> dict:
    def block():
        linear = nn.Linear(WIDTH, WIDTH, dtype=torch.float64)
        with torch.no_grad():
            linear.weight.copy_(torch.randn(WIDTH, WIDTH, generator=generator, dtype=torch.float64) / WIDTH)
            linear.bias.copy_(torch.randn(WIDTH, generator=generator, dtype=torch.float64))
        return nn.Sequential(linear, nn.Tanh())

    return {name: [block() for _ in range(depth)] for name in names}


def _close(actual: torch.Tensor, expected: torch.Tensor, what: str, text: str) -> None:
    scale = max(1.0, float(expected.abs().max()))
    assert torch.allclose(actual, expected, rtol=1e-9, atol=1e-9 * scale), (
        f"{what} differs from the model's float64 iteration on\n{text}"
        f"max difference {float((actual - expected).abs().max())}"
    )


def _check(model: Model, depth: int) -> None:
    text = model.text()
    formula = formulac.parse(text)
    assert set(formula.blocks) == set(model.blocks), text
    generator = torch.Generator().manual_seed(depth)
    x0 = torch.randn(BATCH, WIDTH, generator=generator, dtype=torch.float64)

    # 1. the analyzer against the exact iteration
    analysis = formula.analyze(depth=depth, params="init")
    if model.linear:
        exact = exact_weights(model, depth)
        weights = analysis.block_weights
        assert weights is not None, f"linear formula reported non-linear:\n{text}"
        for key, ws in weights.items():
            assert ws == [_rational(exact.get((key, t), 0)) for t in range(depth)], (key, text)
        assert {k[0] for k in exact if isinstance(k, tuple) and exact[k]} <= set(weights), text
        assert analysis.initial_weights == {"x_0": _rational(exact.get("x_0", 0))}, text
        assert analysis.offset == _rational(exact.get("1", 0)), text
    else:
        assert analysis.block_weights is None, f"non-linear formula given block weights:\n{text}"

    # 2. wire over random float64 blocks
    blocks = _random_blocks(model.blocks, depth, generator)
    wired = formula.wire(blocks).double()
    with torch.no_grad():
        expected, outputs = float_iteration(model, x0, blocks, depth)
        _close(wired(x0), expected, "wire", text)
    if model.linear:  # the analyzer's weights applied to the block outputs give x_N too
        combined = x0 * float(exact.get("x_0", 0)) + float(exact.get("1", 0))
        for (name, t), out in outputs.items():
            combined = combined + out * float(analysis.block_weights[name][t])
        _close(combined, expected, "the analyzer's weights times the block outputs", text)

    # 3. the compiled mlp network's steps, against the iteration with the network's blocks
    net = formulac.compile(formula, backbone="mlp", depth=depth, width=WIDTH).double().eval()
    steps = net.layer1
    assert len(steps) == depth
    own = {name: [getattr(step, name) for step in steps] for name in model.blocks}
    with torch.no_grad():
        expected, _ = float_iteration(model, x0, own, depth)
        _close(net.run_stage(steps, x0), expected, "the compiled mlp network", text)


def _rational(f) -> sympy.Rational:
    f = Fraction(f)
    return sympy.Rational(f.numerator, f.denominator)


def _settings(test):
    test = settings(
        max_examples=EXAMPLES,
        derandomize=SEED is None,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )(test)
    return seed(int(SEED))(test) if SEED is not None else test


@_settings
@given(model=models(), depth=st.integers(1, 7))
def test_four_computations_agree(model, depth):
    _check(model, depth)


# ------------------------------------------------------------------------------------------
# the examples of issue 11, by hand: zero blocks, an input of ones


@pytest.mark.parametrize(
    "text, depth, value",
    [
        ("x_<-1> = 0\nx_<n+1> = sum(j=n-1..n, x_j) + F(x_n)", 4, Fraction(5)),
        ("x_<n+1> = x_n + 1/2*sum(i=0..n, x_<i-1>) + F(x_n)", 4, Fraction(29, 4)),
        ("x_<n+1> = sum(j=n-2..n, x_j)/3 + F(x_n)", 4, Fraction(1)),
        ("x_<n+1> = x_n + sum(i=0..n, x_<i-2>) + F(x_n)", 3, None),
    ],
)
def test_issue_examples_with_zero_blocks(text, depth, value):
    formula = formulac.parse(text)
    exact = formula.analyze(depth=depth).initial_weights["x_0"]
    if value is not None:
        assert exact == _rational(value)
    zero = {"F": [_Zero() for _ in range(depth)]}
    ones = torch.ones(2, WIDTH, dtype=torch.float64)
    assert torch.allclose(formula.wire(zero)(ones), ones * float(exact))
    net = formulac.compile(formula, backbone="mlp", depth=depth, width=WIDTH).double()
    for step in net.layer1:  # zero branches: the last linear layer's weights and bias
        nn.init.zeros_(step.fc2.weight)
        nn.init.zeros_(step.fc2.bias)
    with torch.no_grad():
        assert torch.allclose(net.run_stage(net.layer1, ones), ones * float(exact))


class _Zero(nn.Module):
    def forward(self, x):
        return torch.zeros_like(x)
