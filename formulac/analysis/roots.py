"""Characteristic polynomial of the linear part, its roots, stability, rate and consistency.

The state vector ``S_n`` holds every state at every lag the equations read outside block
arguments (``x_n, x_<n-1>, v_n, ...``); same-step references are substituted in evaluation
order, so ``S_{n+1} = A S_n + B u_n`` and the characteristic polynomial is ``det(lambda I - A)``.
Only constant coefficients have one: per-step parameters are frozen (``k_n -> k``) and coefficients
that depend on ``n`` (or a history sum) give ``None`` with a note.

Every SymPy call is bounded: factoring only for small degree, exact roots for factors of degree
<= 2, ``nroots`` (mpmath) for higher-degree factors with numeric coefficients, and symbolic roots
only for degree <= 2 or for small polynomials that factor into such pieces.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import mpmath
import sympy
from sympy.core.evalf import PrecisionExhausted
from sympy.polys.matrices import DomainMatrix

from ..ir import StateRef, has_activation, lags_of, n, rec_expr, written_out
from ..limits import MAX_DIMENSION
from .formatting import LAMBDA, MAX_EVALF_DIGITS, certain_value, stream_parameters_text
from .linear import Structure, same_step_substituted

__all__ = ["LAMBDA", "Root", "Spectrum", "spectrum", "MAX_DIMENSION"]

_MAX_SYMBOLIC_OPS = 400
# Symbolic factoring of a polynomial in many symbols (a k = 4 stream formula's learned mixing has
# 16) runs sympy's multivariate Wang factoring, which takes seconds or hours depending on the
# order of the symbols (the hash seed); past this many the roots are given at initial values.
_MAX_FACTOR_SYMBOLS = 4
_MAX_FACTOR_DEGREE = 16
_DIGITS = 30
_UNIT_TOL = sympy.Float("1e-20", _DIGITS)


@dataclass(frozen=True)
class Root:
    """A root of the characteristic polynomial."""

    value: sympy.Expr
    multiplicity: int
    modulus: sympy.Expr | None
    exact: bool

    def to_json(self, convert) -> dict:
        v = self.value
        re_im = (None, None)
        if v.is_number:
            c = complex(certain_value(v, _DIGITS)) if self.exact else complex(v)
            re_im = (c.real, c.imag)
        return {
            "value": convert(v),
            "real": re_im[0],
            "imag": re_im[1],
            "multiplicity": self.multiplicity,
            "modulus": convert(self.modulus) if self.modulus is not None else None,
            "exact": self.exact,
        }


@dataclass
class Spectrum:
    polynomial: sympy.Expr | None = None
    matrix: sympy.Matrix | None = None
    roots: list | None = None
    stability: str | None = None
    rate: sympy.Expr | None = None
    rate_multiplicity: int | None = None
    consistent: bool | None = None
    notes: list = field(default_factory=list)


def spectrum(st: Structure) -> Spectrum:
    """Characteristic polynomial, roots, stability, rate and consistency of a linear formula,
    in four phases: the linear coefficients of the states, the companion matrix and its
    polynomial, consistency, and the roots with the stability they give."""
    out = Spectrum()
    if st.forms is None:
        return out
    if st.has_sums:
        out.notes.append(
            "the formula sums over past states (sum(i=...)): the analysis gives no characteristic "
            "polynomial, roots, stability class or rate for it"
        )
        out.consistent = _consistent_scalar(st, out.notes)
        return out
    coefs, forcing = _linear_coefficients(st)
    if any(c.has(n) for c in coefs.values()):
        where = next(c for c in coefs.values() if c.has(n))
        out.notes.append(
            f"coefficients depend on the step n (e.g. {rec_expr(where)}): no characteristic polynomial, "
            "roots, stability class or rate"
        )
        out.consistent = _consistent_scalar(st, out.notes)
        return out
    companion = _companion(st, coefs, out)
    if companion is None:
        return out
    A, poly, scalar_companion = companion
    _consistency(st, poly, forcing, out)
    _stability(st, poly, A, scalar_companion, out)
    return out


def _linear_coefficients(st: Structure) -> tuple[dict, list]:
    """Phase 1: ``{(state, reference read): coefficient}`` of every equation once same-step
    references are substituted (per-step parameters frozen), and the coefficients of the start
    values (``x_0``) read at every step, a constant input."""
    forms = same_step_substituted(st, blocks=False)
    frozen = _freeze_per_step(st)
    coefs = {}
    forcing = []
    for s, f in forms.items():
        for ref, c in f.refs.items():
            c = c.xreplace(frozen) if frozen else c
            if StateRef.of(ref).step is not None:
                forcing.append(c)
            else:
                coefs[(s, ref)] = c
    return coefs, forcing


def _companion(st: Structure, coefs: dict, out: Spectrum) -> tuple | None:
    """Phase 2: the matrix that advances the state vector one step and its characteristic
    polynomial (set on ``out``), and whether it is a scalar recurrence's companion matrix; None
    (with a note) when the vector is too long.

    The vector holds the values of the linear part's reads, so its lags are counted from the
    coefficients themselves, not taken from ``Recurrence.carried_lags`` (the states a step
    keeps): a value kept only for a block's argument (``v_<n-1>`` in ``F(v_<n-1>)``) is an
    opaque input here, and as an entry of the vector it would add a root 0 that no linear
    reading of the formula has. Both count with :func:`~formulac.ir.lags_of`."""
    read = [(s, StateRef.of(node)) for s, node in coefs]
    for s, ref in read:
        if ref.offset > 0:  # a same-step reference left over: cannot happen after substitution
            raise AssertionError(f"same-step reference {ref} left in {s}")
    lags = lags_of((ref for _, ref in read), st.states)
    lags[st.output] = max(lags[st.output], 1)
    vector = [(s, j) for s in st.states for j in range(lags[s])]
    d = len(vector)
    if d > MAX_DIMENSION:
        out.notes.append(
            f"the state vector has {d} entries (more than {MAX_DIMENSION}): characteristic polynomial not computed"
        )
        return None
    col = {v: i for i, v in enumerate(vector)}
    rows = [[sympy.Integer(0)] * d for _ in range(d)]
    for i, (s, j) in enumerate(vector):
        if j == 0:
            for (s2, node), c in coefs.items():
                if s2 == s:
                    ref = StateRef.of(node)
                    rows[i][col[(ref.name, -ref.offset)]] += c
        else:
            rows[i][col[(s, j - 1)]] = sympy.Integer(1)
    A = sympy.Matrix(rows)
    out.matrix = A
    dm = DomainMatrix.from_Matrix(A)
    cp = dm.charpoly()
    poly = sympy.Add(*[dm.domain.to_sympy(c) * LAMBDA ** (d - i) for i, c in enumerate(cp)])
    out.polynomial = poly
    scalar_companion = sum(1 for s in st.states if lags[s] > 0) == 1
    return A, poly, scalar_companion


def _parameter_values(st: Structure) -> tuple[set, dict]:
    """The symbols of the formula's parameters, and their initial values."""
    param_syms = {sympy.Symbol(p) for p in st.rec.params}
    inits = {sympy.Symbol(p.name): p.init for p in st.rec.params.values()}
    return param_syms, inits


def _consistency(st: Structure, poly: sympy.Expr, forcing: list, out: Spectrum) -> None:
    """Phase 3: consistent when lambda = 1 is a root and no constant input moves the states."""
    param_syms, inits = _parameter_values(st)
    free = poly.free_symbols - {LAMBDA}
    p1 = sympy.expand(poly.xreplace({LAMBDA: sympy.Integer(1)}))
    if any(c != 0 for c in forcing):
        out.consistent = False if all(c.is_number for c in forcing) else None
        out.notes.append(
            "consistent only where the coefficients of the start values (x_0) read at every step are 0"
        )
    elif p1 == 0:
        out.consistent = True
    elif p1.is_number:
        out.consistent = _is_zero(p1)
        if out.consistent is None:
            out.notes.append(f"consistency not determined: {_txt(p1)} could not be decided to be 0")
    else:
        cond = sympy.factor(p1) if sympy.count_ops(p1) < _MAX_SYMBOLIC_OPS else p1
        text = f"consistent only where {_txt(cond)} = 0 (the characteristic polynomial at λ = 1)"
        if free <= param_syms and free:
            text += f"; at the parameters' initial values: {_zero_at_initial_values(p1, inits)}"
        out.notes.append(text)


#: Digits of the rounded initial values (constrained entries, parse/streams.py) trusted to be 0.
_ROUNDED_DIGITS = 25


def _zero_at_initial_values(p1: sympy.Expr, inits: dict) -> str:
    """``yes``/``no``/``undecided`` for the polynomial ``p1`` at the parameters' initial values.

    Exact values are decided exactly. The entries of ``sinkhorn(...)`` and ``softmax(...)``
    are 30-digit Floats, so a value that is 0 in exact arithmetic comes out near 1e-30 (a
    Sinkhorn matrix's columns sum to 1, so the polynomial vanishes at 1 exactly): such a value
    is 0 to the digits the entries carry, relative to the size of the terms that cancel."""
    value = sympy.expand(p1.xreplace(inits))
    if not any(isinstance(v, sympy.Float) for v in inits.values()):
        zero = _is_zero(value)
        return "undecided" if zero is None else "yes" if zero else "no"
    terms = sympy.Add.make_args(sympy.expand(p1))
    size = sum(abs(float(t.xreplace(inits).evalf(30))) for t in terms)
    if abs(float(value.evalf(30))) <= size * 10.0**-_ROUNDED_DIGITS:
        return f"yes, to the {_ROUNDED_DIGITS} digits the constrained initial values are exact to"
    return "no"


def _stability(
    st: Structure, poly: sympy.Expr, A: sympy.Matrix, scalar_companion: bool, out: Spectrum
) -> None:
    """Phase 4: roots, stability class and rate: numeric for numeric coefficients; at the
    parameters' initial values for learned ones; as regions of one unbound symbol, or a
    contraction condition, otherwise."""
    param_syms, inits = _parameter_values(st)
    free = poly.free_symbols - {LAMBDA}
    if not free:
        roots, stability, rate, mult, notes = _numeric(poly, A, scalar_companion)
        out.roots, out.stability, out.rate, out.rate_multiplicity = roots, stability, rate, mult
        out.notes.extend(notes)
        return

    # symbolic coefficients
    out.roots = _symbolic_roots(poly, out.notes)
    unbound = free - param_syms
    if not unbound:
        p_init = poly.xreplace(inits)
        roots, stability, rate, mult, notes = _numeric(
            sympy.expand(p_init), A.xreplace(inits), scalar_companion
        )
        shown = stream_parameters_text(st.rec, {str(k) for k in free}) or ", ".join(
            f"{k} = {_txt(v)}" for k, v in inits.items() if k in free
        )
        out.stability, out.rate, out.rate_multiplicity = stability, rate, mult
        out.notes.append(
            f"stability and rate evaluated at the parameters' initial values ({shown}); training changes them"
        )
        if out.roots is None:
            out.roots = roots
            out.notes.append(f"roots given at the parameters' initial values ({shown})")
        out.notes.extend(notes)
        return
    names = ", ".join(sorted(str(s) for s in unbound))
    fixed = {k: v for k, v in inits.items() if k in free}
    p_cond = sympy.expand(poly.xreplace(fixed))
    msg = f"stability and rate depend on {names}, which {'is' if len(unbound) == 1 else 'are'} not bound"
    regions = None
    if len(unbound) == 1:
        regions = _regions(p_cond, A.xreplace(fixed), scalar_companion, next(iter(unbound)))
    if regions:
        msg += ": " + "; ".join(f"{kind} for {where}" for kind, where in regions)
    elif sympy.expand(p_cond.xreplace({LAMBDA: 1})) != 0:
        cond = _jury(p_cond, unbound)  # strict inequalities: exactly the contracting region
        if cond:
            msg += f"; contracting iff {cond}"
    msg += f" (bind with --set {sorted(str(s) for s in unbound)[0]}=VALUE)"
    out.notes.append(msg)


# -- stability as a function of one free symbol ------------------------------------------------

#: The most values of a free symbol at which the stability class may change that are examined.
_MAX_CRITICAL = 24


def _regions(poly: sympy.Expr, A: sympy.Matrix, companion: bool, symbol: sympy.Symbol) -> list | None:
    """``[(class, where)]``: the stability class for every value of ``symbol``, boundaries
    included, or None when it cannot be worked out exactly.

    The class can only change where a root reaches the unit circle, two roots meet, or the
    degree drops; those values (the critical points) are found exactly, and the class is
    computed exactly at each of them and at one point between each two.
    """
    try:
        points = _critical_points(poly, symbol)
        if points is None:
            return None
        between = [_between(a, b) for a, b in itertools.pairwise(points)]
        edges = [points[0] - 1, *between, points[-1] + 1]
        samples = [value for pair in zip(edges, points) for value in pair] + [edges[-1]]
        classes = []
        for value in samples:
            p = sympy.expand(poly.xreplace({symbol: value}))
            if sympy.Poly(p, LAMBDA).degree() != sympy.Poly(poly, LAMBDA).degree():
                return None
            stability = _numeric(p, A.xreplace({symbol: value}), companion)[1]
            if stability is None:
                return None
            classes.append(stability)
    except (sympy.PolynomialError, ValueError, TypeError, NotImplementedError):
        return None
    return _describe_regions(points, classes, symbol)


def _critical_points(poly: sympy.Expr, symbol: sympy.Symbol) -> list | None:
    """Sorted real values of ``symbol`` where a root of ``poly`` may reach the unit circle, two
    roots may meet, or the degree drops (a superset is fine); ``[0]`` when there are none."""
    P = sympy.Poly(poly, LAMBDA)
    conditions = [P.LC(), sympy.discriminant(P)]
    for factor, _ in sympy.factor_list(P.as_expr(), LAMBDA)[1]:
        F = sympy.Poly(factor, LAMBDA)
        if symbol not in factor.free_symbols:
            continue
        c = F.all_coeffs()
        conditions += [F.eval(1), F.eval(-1)]
        if F.degree() == 2:
            conditions += [c[2] - c[0], c[2] + c[0]]  # a complex pair's moduli are sqrt(c0/lc)
        elif F.degree() > 2:
            reciprocal = sympy.Poly(list(reversed(c)), LAMBDA)
            res = sympy.resultant(F, reciprocal)
            if sympy.expand(res) == 0:
                return None
            conditions.append(res)
    points: set = set()
    for condition in conditions:
        numerator = sympy.together(sympy.expand(condition)).as_numer_denom()[0]
        if symbol not in numerator.free_symbols:
            continue
        Q = sympy.Poly(numerator, symbol)
        if not (Q.domain.is_ZZ or Q.domain.is_QQ) or Q.degree() > 8:
            return None
        points.update(Q.real_roots())
        if len(points) > _MAX_CRITICAL:
            return None
    return sorted(points, key=lambda v: float(v.evalf(30))) or [sympy.Integer(0)]


def _between(a: sympy.Expr, b: sympy.Expr) -> sympy.Expr:
    """A simple rational strictly between ``a < b``."""
    lo, hi = sympy.Rational(str(sympy.N(a, 30))), sympy.Rational(str(sympy.N(b, 30)))
    middle = (lo + hi) / 2
    for denominator in (1, 2, 4, 10, 100, 1000):
        guess = sympy.Rational(round(middle * denominator), denominator)
        if a < guess < b:
            return guess
    return middle


def _describe_regions(points: list, classes: list[str], symbol: sympy.Symbol) -> list:
    """Merge the classes of ``(-oo, p0), {p0}, (p0, p1), ..., (pk, oo)`` into readable ranges."""
    name = str(symbol)
    pieces = []  # (class, low, low_closed, high, high_closed) over consecutive samples
    for i, cls in enumerate(classes):
        k = i // 2
        if i % 2 == 0:  # the open interval before points[k] (or after the last point)
            low = points[k - 1] if k > 0 else None
            high = points[k] if k < len(points) else None
            piece = [cls, low, False, high, False]
        else:
            piece = [cls, points[k], True, points[k], True]
        if pieces and pieces[-1][0] == cls:
            pieces[-1][3:5] = piece[3:5]
        else:
            pieces.append(piece)
    by_class: dict[str, list[str]] = {}
    for cls, low, low_closed, high, high_closed in pieces:
        by_class.setdefault(cls, []).append(_range_text(name, low, low_closed, high, high_closed))
    order = ("contracting", "neutral", "expanding")
    return [(cls, " or ".join(by_class[cls])) for cls in order if cls in by_class]


def _range_text(name: str, low, low_closed: bool, high, high_closed: bool) -> str:
    if low is None and high is None:
        return f"every {name}"
    if low is not None and high is not None and low == high:
        return f"{name} = {_txt(low)}"
    if low is None:
        return f"{name} {'<=' if high_closed else '<'} {_txt(high)}"
    if high is None:
        return f"{name} {'>=' if low_closed else '>'} {_txt(low)}"
    return f"{_txt(low)} {'<=' if low_closed else '<'} {name} {'<=' if high_closed else '<'} {_txt(high)}"


# -- helpers ------------------------------------------------------------------------------------


def _txt(e) -> str:
    return rec_expr(e).replace("lambda", "λ")


def _is_zero(number: sympy.Expr) -> bool | None:
    """Is a number (``sigmoid(1) + sigmoid(-1) - 1``) zero? None when it cannot be decided.

    Exact: a rational is compared with 0, anything else evaluated with SymPy's error-tracked
    ``evalf`` (``strict``: the digits it gives are right, however close to 0 the value is; -1e-120
    is not 0)."""
    value = sympy.expand(written_out(number))
    if value == 0 or value.is_zero:
        return True
    if value.is_Rational:
        return False
    try:
        approx = value.evalf(15, strict=True, maxn=MAX_EVALF_DIGITS)
        if approx.is_number and approx != 0:
            return False
    except PrecisionExhausted:
        pass  # no digit is certain: 0, or too close to it
    except (TypeError, ValueError):
        return None
    try:
        return True if not has_activation(value) and sympy.simplify(value) == 0 else None
    except (TypeError, ValueError):  # SymPy's factoring of some large integers fails
        return None


def _freeze_per_step(st: Structure) -> dict:
    mapping = {}
    for p in st.rec.params.values():
        if p.per_step:
            mapping[sympy.IndexedBase(p.name)[n]] = sympy.Symbol(p.name)
    return mapping


def _consistent_scalar(st: Structure, notes: list) -> bool | None:
    """Consistency of a one-state formula without a characteristic polynomial: the state
    coefficients (history sums included) add up to 1 at every step."""
    if len(st.states) != 1:
        notes.append("consistency of a system with step-dependent coefficients is not determined")
        return None
    f = st.forms[st.states[0]]
    total = sympy.Add(*f.refs.values())
    for s in f.sums:
        inner = sympy.Add(*s.body.refs.values())
        total += s.coef * sympy.Sum(inner, (s.var, s.low, s.high)).doit()
    if sympy.count_ops(total) > _MAX_SYMBOLIC_OPS or has_activation(total):
        notes.append(
            "consistency not determined: the coefficient sum is too large (or too opaque) to simplify"
        )
        return None
    diff = sympy.simplify(total - 1)
    if diff == 0:
        return True
    if diff.is_number:
        return False
    if diff.free_symbols == {n}:
        return False  # the sum differs from 1 at some step (a non-zero rational function of n)
    notes.append(f"consistent only where the state coefficients {_txt(total)} add up to 1 at every step")
    return None


def _symbolic_roots(poly: sympy.Expr, notes: list) -> list | None:
    P = sympy.Poly(poly, LAMBDA)
    deg = P.degree()
    if deg <= 2:
        pieces = [(P, 1)]
    elif len(poly.free_symbols - {LAMBDA}) > _MAX_FACTOR_SYMBOLS:
        notes.append(
            f"roots of a degree-{deg} polynomial in {len(poly.free_symbols - {LAMBDA})} symbols are not "
            "computed symbolically"
        )
        return None
    elif deg <= 6 and sympy.count_ops(poly) < _MAX_SYMBOLIC_OPS:
        _, pieces = sympy.factor_list(poly, LAMBDA)
        pieces = [(sympy.Poly(f, LAMBDA), e) for f, e in pieces]
    else:
        notes.append(f"roots of a degree-{deg} polynomial with symbolic coefficients are not computed")
        return None
    result = []
    for f, e in pieces:
        if f.degree() > 2:
            notes.append(
                f"roots of the factor {_txt(f.as_expr())} (degree {f.degree()}, symbolic coefficients) are not computed"
            )
            return None
        rs = sympy.roots(f, LAMBDA)
        if sum(rs.values()) != f.degree():
            notes.append(f"roots of {_txt(f.as_expr())} not found")
            return None
        for r, m in rs.items():
            mod = sympy.Abs(r)
            result.append(Root(r, m * e, mod if sympy.count_ops(mod) < 60 else None, True))
    return result


def _self_reciprocal(f: sympy.Poly) -> bool:
    c = f.all_coeffs()
    return c == c[::-1] or c == [-x for x in c[::-1]]


def _numeric(poly: sympy.Expr, A: sympy.Matrix, companion: bool):
    """Roots, stability class, spectral radius and its Jordan size for numeric coefficients."""
    notes: list = []
    poly = written_out(poly)
    A = A.applyfunc(written_out)
    if not all(c.is_number for c in sympy.Poly(poly, LAMBDA).all_coeffs()):
        notes.append(f"the coefficients of {_txt(poly)} are not numbers: roots and stability not computed")
        return None, None, None, None, notes
    P = sympy.Poly(poly, LAMBDA)
    roots: list = []
    unit_flags: list = []  # (root, on the unit circle, sign(|r|-1), factor, exponent)
    if (P.domain.is_ZZ or P.domain.is_QQ) and P.degree() <= _MAX_FACTOR_DEGREE:
        _, pieces = P.factor_list()
    elif P.domain.is_ZZ or P.domain.is_QQ:
        # factoring can be slow in the worst case: square-free parts only, roots numerically
        _, pieces = P.sqf_list()
        notes.append(
            f"degree {P.degree()} > {_MAX_FACTOR_DEGREE}: the polynomial was not factored; roots are numeric"
        )
        return _numeric_sqf(pieces, A, companion, notes)
    else:
        pieces = [(P, 1)] if P.degree() <= 2 else None
        if pieces is None:
            return _numeric_only(P, notes)
    for f, e in pieces:
        rational = f.domain.is_ZZ or f.domain.is_QQ
        if f.degree() <= 2 and not rational:
            found = _real_low_degree_roots(f)
            if found is None:
                notes.append(f"the roots of {_txt(f.as_expr())} could not be told real or complex")
                return None, None, None, None, notes
            for value, multiplicity, modulus, sign in found:
                roots.append(Root(value, multiplicity * e, modulus, True))
                unit_flags.append((sign, f, e))
            continue
        rs = _low_degree_roots(f) if f.degree() <= 2 else None
        if rs is None and f.degree() == 2 and rational and f.discriminant() != 0:
            for root, flag in _rational_quadratic(f):
                root = Root(root.value, root.multiplicity * e, root.modulus, False)
                roots.append(root)
                unit_flags.append((flag[0], f, e))
        elif rs is not None:
            for r, m in rs.items():
                mod = sympy.Abs(r) if r.is_real else sympy.sqrt(sympy.expand(r * sympy.conjugate(r)))
                mod = _simplified(mod) if sympy.count_ops(mod) < 60 and not has_activation(mod) else mod
                sign = _sign(mod - 1)
                roots.append(Root(r, m * e, mod, True))
                unit_flags.append((sign, f, e))
        else:
            try:
                values = f.nroots(n=_DIGITS, maxsteps=200)
            except Exception:
                notes.append(f"the roots of {_txt(f.as_expr())} did not converge numerically")
                return None, None, None, None, notes
            recip = _self_reciprocal(f)
            for r in values:
                mod = sympy.Abs(r).evalf(_DIGITS)
                delta = mod - 1
                if abs(delta) < _UNIT_TOL and recip:
                    sign = 0
                    mod = sympy.Integer(1)
                else:
                    sign = 1 if delta > 0 else -1
                roots.append(Root(_float(r), e, mod, False))
                unit_flags.append((sign, f, e))
    stability, rate, mult = _classify(roots, unit_flags, A, companion, notes)
    return roots, stability, rate, mult, notes


def _low_degree_roots(f: sympy.Poly) -> dict | None:
    """Exact roots of a polynomial of degree 1 or 2 -> multiplicity; None when SymPy fails.

    SymPy's ``roots`` (and ``sqrt`` of a rational) factor the discriminant, which fails for some
    large integers (``sqrt(1 + 4e-100)``: "... is not a prime factor of ...");
    :func:`_rational_quadratic` then decides without roots written exactly."""
    try:
        return sympy.roots(f, LAMBDA)
    except ValueError:
        return None


def _real_low_degree_roots(f: sympy.Poly) -> list | None:
    """``[(root, multiplicity, modulus, sign of modulus - 1)]`` of a polynomial of degree 1 or 2
    with real irrational coefficients (``λ^2 - λ + sqrt(2)/4``), written exactly; None when a
    sign cannot be decided.

    SymPy's ``roots`` writes a complex pair as ``1/2 ± sqrt(1 - sqrt(2))/2`` and cannot tell that
    the square root is imaginary (its modulus came out complex); here the discriminant's sign is
    decided first (certain digits), so a complex pair is ``re ± I*im`` with ``|r|^2 = c/a``."""
    coeffs = [written_out(c) for c in f.all_coeffs()]
    if any(c.is_real is False for c in coeffs):
        return None

    def real_root(value, multiplicity):
        value = _simplified(value)
        side = _sign(value)
        if side is None:
            return None
        modulus = value if side >= 0 else -value
        return value, multiplicity, modulus, _sign(modulus - 1)

    if f.degree() == 1:
        found = [real_root(-coeffs[1] / coeffs[0], 1)]
    else:
        a, b, c = coeffs
        discriminant = sympy.expand(b * b - 4 * a * c)
        kind = _sign(discriminant)
        if kind is None:
            return None
        if kind >= 0:  # real roots: SymPy's are often simpler ((λ - 1)(λ - g) gives 1 and g)
            exact = _low_degree_roots(f) or {}
            if sum(exact.values()) != 2:
                exact = (
                    {-b / (2 * a): 2}
                    if kind == 0
                    else {(-b + s * sympy.sqrt(discriminant)) / (2 * a): 1 for s in (1, -1)}
                )
            found = [real_root(value, multiplicity) for value, multiplicity in exact.items()]
        else:
            middle = -b / (2 * a)
            offset = sympy.sqrt(-discriminant) / (2 * a)
            modulus = sympy.sqrt(c / a)
            modulus = _simplified(modulus)
            sign = _sign(c / a - 1)
            found = [(middle + s * offset * sympy.I, 1, modulus, sign) for s in (1, -1)]
    if any(r is None or r[3] is None for r in found):
        return None
    return found


def _rational_quadratic(f: sympy.Poly) -> list[tuple[Root, tuple]]:
    """Roots of ``a λ^2 + b λ + c`` (rational, ``D = b^2 - 4ac`` not 0) as 60-digit numbers, and
    whether each modulus is above, on or below 1, decided in rational arithmetic: the sign of
    ``r - t`` for ``r = (-b ± sqrt(D)) / 2a`` is that of ``(u ± sqrt(D)) / a`` with
    ``u = -b - 2at``, which comparing ``u^2`` with ``D`` decides."""
    a, b, c = (sympy.Rational(x) for x in f.all_coeffs())
    D = b * b - 4 * a * c
    if D < 0:  # a complex pair: |r|^2 = c/a
        modulus2 = c / a
        sign = _compare(modulus2, sympy.Integer(1))
        with mpmath.workdps(60):
            pair = mpmath.polyroots([mpmath.mpf(a.p) / a.q, mpmath.mpf(b.p) / b.q, mpmath.mpf(c.p) / c.q])
            return [
                (
                    Root(
                        sympy.Float(r.real, 15) + sympy.Float(r.imag, 15) * sympy.I,
                        1,
                        sympy.Float(mpmath.sqrt(mpmath.mpf(modulus2.p) / modulus2.q), 30),
                        False,
                    ),
                    (sign, f, 1),
                )
                for r in pair
            ]

    def side(root_sign: int, t: sympy.Rational) -> int:  # sign of r - t
        u = -b - 2 * a * t
        if root_sign > 0:
            s = 1 if u >= 0 else _compare(D, u * u)
        else:
            s = -1 if u <= 0 else _compare(u * u, D)
        return s if a > 0 else -s

    result = []
    with mpmath.workdps(60):
        sq = mpmath.sqrt(mpmath.mpf(D.p) / D.q)
        A, B, C = (mpmath.mpf(x.p) / x.q for x in (a, b, c))
        big = (-B - (sq if B >= 0 else -sq)) / (2 * A)  # no cancellation; the other is C / (A big)
        values = {(1 if B < 0 else -1): big, (-1 if B < 0 else 1): C / (A * big)}
        for root_sign in (1, -1):
            value = values[root_sign]
            if side(root_sign, sympy.Integer(0)) >= 0:
                above = side(root_sign, sympy.Integer(1))
            else:
                above = -side(root_sign, sympy.Integer(-1))
            root = Root(sympy.Float(value, 30), 1, sympy.Float(abs(value), 30), False)
            result.append((root, (above, f, 1)))
    return result


def _compare(x: sympy.Rational, y: sympy.Rational) -> int:
    """1, 0 or -1 as ``x`` is above, equal to or below ``y`` (exact)."""
    difference = x - y
    return 0 if difference == 0 else (1 if difference > 0 else -1)


def _simplified(value: sympy.Expr) -> sympy.Expr:
    """``value`` simplified when it is small and algebraic: simplify of nested functions of
    numbers (``tanh(tanh(...))``) can run for many minutes."""
    if sympy.count_ops(value) >= 60 or value.atoms(sympy.Function):
        return value
    try:
        return sympy.simplify(value)
    except ValueError:  # SymPy's factoring of some large integers fails; keep the value as it is
        return value


def _numeric_sqf(pieces, A, companion, notes):
    roots, flags = [], []
    for f, e in pieces:
        try:
            values = f.nroots(n=_DIGITS, maxsteps=200)
        except Exception:
            notes.append("the roots did not converge numerically")
            return None, None, None, None, notes
        for r in values:
            root, flag = _numeric_root(r, e)
            roots.append(root)
            flags.append(flag)
    stability, rate, mult = _classify(roots, flags, A, companion, notes)
    return roots, stability, rate, mult, notes


def _numeric_only(P: sympy.Poly, notes: list):
    """Non-rational numeric coefficients of degree > 2: numeric roots, clustered."""
    try:
        values = P.nroots(n=_DIGITS, maxsteps=200)
    except Exception:
        notes.append("the roots did not converge numerically")
        return None, None, None, None, notes
    clusters: list = []
    for r in values:
        for c in clusters:
            if abs(complex(c[0]) - complex(r)) < 1e-8:
                c[1] += 1
                break
        else:
            clusters.append([r, 1])
    notes.append("roots and multiplicities computed numerically (coefficients are not rational)")
    roots, flags = [], []
    for r, m in clusters:
        root, flag = _numeric_root(r, m)
        roots.append(root)
        flags.append(flag)
    stability, rate, mult = _classify(roots, flags, None, True, notes)
    return roots, stability, rate, mult, notes


def _numeric_root(r: sympy.Expr, multiplicity: int) -> tuple[Root, tuple]:
    """A root found by ``nroots`` and its unit-circle flag (sign of |r| - 1, 0 within 1e-12)."""
    mod = sympy.Abs(r).evalf(_DIGITS)
    sign = 0 if abs(mod - 1) < 1e-12 else (1 if mod > 1 else -1)
    return Root(_float(r), multiplicity, mod, False), (sign, None, multiplicity)


def _float(r: sympy.Expr) -> sympy.Expr:
    """A numeric root at double precision (the decisions use the 30-digit value)."""
    re, im = r.as_real_imag()
    re, im = sympy.Float(float(re), 15), sympy.Float(float(im), 15)
    return re if im == 0 else re + im * sympy.I


def _sign(e: sympy.Expr) -> int | None:
    """Sign of a real number given exactly; None when it cannot be decided.

    Never by a tolerance: |root| - 1 = 1e-120 is positive (``--set a=1e-120`` on the two-step
    formula is expanding). A non-zero value is evaluated with ``evalf(strict=True)``, whose digits
    are certain; one that no precision separates from 0 must be shown to be 0 exactly."""
    try:
        if e == 0 or e.is_zero:
            return 0
        if e.is_Rational:
            return 1 if e > 0 else -1
        if e.is_positive:
            return 1
        if e.is_negative:
            return -1
        try:
            v = e.evalf(15, strict=True, maxn=MAX_EVALF_DIGITS)
        except PrecisionExhausted:
            return 0 if _is_zero(e) else None
        if not v.is_Number:
            return None
        return 0 if v == 0 else (1 if v > 0 else -1)
    except (TypeError, ValueError):
        return None


def _classify(roots, flags, A, companion, notes):
    if not roots:
        return None, None, None
    if any(sign is None for sign, _, _ in flags):
        notes.append("the moduli of the roots could not be compared with 1: stability not determined")
        return None, None, None
    mods = [sympy.Float(certain_value(r.modulus, _DIGITS), _DIGITS) for r in roots]
    top = max(mods)
    dominant = [i for i, m in enumerate(mods) if abs(m - top) <= sympy.Float("1e-25") * max(1, top)]
    rate = roots[dominant[0]].modulus
    if not roots[dominant[0]].exact:
        rate = sympy.Float(top, 15)
    sizes = {}
    for i in set(dominant) | {i for i, (s, _, _) in enumerate(flags) if s == 0}:
        sizes[i] = _jordan_size(roots[i], flags[i], A, companion, notes)
    mult = max(sizes[i] for i in dominant)
    unit = [i for i, (s, _, _) in enumerate(flags) if s == 0]
    if any(s > 0 for s, _, _ in flags):
        stability = "expanding"
    elif unit:
        stability = "neutral" if all(sizes[i] == 1 for i in unit) else "expanding"
    else:
        stability = "contracting"
    return stability, rate, mult


def _jordan_size(root: Root, flag, A, companion, notes) -> int:
    """Size of the largest Jordan block of ``root`` (= multiplicity for a companion matrix)."""
    _, f, e = flag
    if companion or e == 1 or f is None:
        return root.multiplicity
    try:
        M = DomainMatrix.from_Matrix(A)
        if not (M.domain.is_ZZ or M.domain.is_QQ):
            raise ValueError
        M = M.convert_to(sympy.QQ)
        coeffs = [sympy.QQ.from_sympy(c) for c in f.all_coeffs()]
        d = M.shape[0]
        eye = DomainMatrix.eye(d, sympy.QQ)
        fA = DomainMatrix.zeros((d, d), sympy.QQ)
        for c in coeffs:  # Horner
            fA = fA * M + eye.mul(c)
        power, prev_rank = fA, fA.rank()
        for k in range(1, e + 1):
            power = power * fA
            rank = power.rank()
            if rank == prev_rank:
                return k
            prev_rank = rank
        return e
    except Exception:
        notes.append("Jordan block sizes assumed equal to root multiplicities")
        return root.multiplicity


def _jury(poly: sympy.Expr, symbols) -> str | None:
    """Contraction conditions (Schur-Cohn/Jury) for degree 1 and 2, solved for one symbol."""
    try:
        P = sympy.Poly(poly, LAMBDA)
        c = P.all_coeffs()
        if c[0] != 1:
            return None
        if P.degree() == 1:
            conds = [sympy.Abs(c[1]) < 1]
        elif P.degree() == 2:
            b, c0 = c[1], c[2]
            conds = [sympy.Abs(c0) < 1, sympy.Abs(b) < 1 + c0]
        else:
            return None
        if any(cd in (sympy.true, sympy.false) for cd in conds):
            if sympy.false in conds:
                return "never"
            conds = [cd for cd in conds if cd is not sympy.true]
        syms = sorted(symbols, key=str)
        if len(syms) == 1 and all(sympy.Poly(x, syms[0]).degree() <= 2 for x in (c[1:]) if x.free_symbols):
            from sympy.solvers.inequalities import solve_univariate_inequality

            s = syms[0]
            real = sympy.Symbol(s.name, real=True)
            region = sympy.S.Reals
            for cd in conds:
                region = region.intersect(
                    solve_univariate_inequality(cd.xreplace({s: real}), real, relational=False)
                )
            if region is sympy.S.EmptySet:
                return "never"
            return _txt(region.as_relational(real)).replace("&", "and")
        return " and ".join(_txt(cd) for cd in conds)
    except Exception:
        return None
