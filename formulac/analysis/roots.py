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

from dataclasses import dataclass, field

import sympy
from sympy.polys.matrices import DomainMatrix

from ..ir import ELEMENTWISE, StateRef, lags_of, n, rec_expr
from ..limits import MAX_DIMENSION
from .formatting import LAMBDA
from .linear import Structure, same_step_substituted

__all__ = ["LAMBDA", "Root", "Spectrum", "spectrum", "MAX_DIMENSION"]

_MAX_SYMBOLIC_OPS = 400
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
            c = complex(v.evalf(_DIGITS)) if self.exact else complex(v)
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
    """Characteristic polynomial, roots, stability, rate and consistency of a linear formula."""
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
    forms = same_step_substituted(st)
    frozen = _freeze_per_step(st)
    coefs = {}
    for s, f in forms.items():
        for ref, c in f.refs.items():
            coefs[(s, ref)] = c.xreplace(frozen) if frozen else c
    if any(c.has(n) for c in coefs.values()):
        where = next(c for c in coefs.values() if c.has(n))
        out.notes.append(
            f"coefficients depend on the step n (e.g. {rec_expr(where)}): no characteristic polynomial, "
            "roots, stability class or rate"
        )
        out.consistent = _consistent_scalar(st, out.notes)
        return out

    # state vector
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
        return out
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

    param_syms = {sympy.Symbol(p) for p in st.rec.params}
    free = poly.free_symbols - {LAMBDA}
    inits = {sympy.Symbol(p.name): p.init for p in st.rec.params.values()}

    # consistency: lambda = 1 is a root
    p1 = sympy.expand(poly.xreplace({LAMBDA: sympy.Integer(1)}))
    if p1 == 0:
        out.consistent = True
    elif p1.is_number:
        out.consistent = False
    else:
        cond = sympy.factor(p1) if sympy.count_ops(p1) < _MAX_SYMBOLIC_OPS else p1
        text = f"consistent only where {_txt(cond)} = 0 (the characteristic polynomial at λ = 1)"
        if free <= param_syms and free:
            at_init = cond.xreplace(inits)
            text += f"; at the parameters' initial values: {'yes' if at_init == 0 else 'no'}"
        out.notes.append(text)

    if not free:
        roots, stability, rate, mult, notes = _numeric(poly, A, scalar_companion)
        out.roots, out.stability, out.rate, out.rate_multiplicity = roots, stability, rate, mult
        out.notes.extend(notes)
        return out

    # symbolic coefficients
    out.roots = _symbolic_roots(poly, out.notes)
    unbound = free - param_syms
    if not unbound:
        p_init = poly.xreplace(inits)
        roots, stability, rate, mult, notes = _numeric(
            sympy.expand(p_init), A.xreplace(inits), scalar_companion
        )
        shown = ", ".join(f"{k} = {_txt(v)}" for k, v in inits.items() if k in free)
        out.stability, out.rate, out.rate_multiplicity = stability, rate, mult
        out.notes.append(
            f"stability and rate evaluated at the parameters' initial values ({shown}); training changes them"
        )
        if out.roots is None:
            out.roots = roots
            out.notes.append(f"roots given at the parameters' initial values ({shown})")
        out.notes.extend(notes)
        return out
    names = ", ".join(sorted(str(s) for s in unbound))
    p_cond = sympy.expand(poly.xreplace({k: v for k, v in inits.items() if k in free}))
    msg = f"stability and rate depend on {names}, which {'is' if len(unbound) == 1 else 'are'} not bound"
    if sympy.expand(p_cond.xreplace({LAMBDA: 1})) == 0:
        rest, remainder = sympy.div(p_cond, LAMBDA - 1, LAMBDA)
        cond = _jury(sympy.expand(rest), unbound) if remainder == 0 else None
        if cond:
            msg += f"; never contracting (λ = 1 is a root), neutral iff {cond}"
    else:
        cond = _jury(p_cond, unbound)
        if cond:
            msg += f"; contracting iff {cond}"
    msg += f" (bind with --set {sorted(str(s) for s in unbound)[0]}=VALUE)"
    out.notes.append(msg)
    return out


# -- helpers ------------------------------------------------------------------------------------


def _txt(e) -> str:
    return rec_expr(e).replace("lambda", "λ")


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
    if sympy.count_ops(total) > _MAX_SYMBOLIC_OPS:
        notes.append("consistency not determined: the coefficient sum is too large to simplify")
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


def _defined(expr):
    """The language's element-wise functions that SymPy lacks, by their definitions, so that
    coefficients such as ``sigmoid(k)`` at ``k = 1/2`` evaluate to numbers."""
    defs = {
        "relu": lambda x: sympy.Max(0, x),
        "sigmoid": lambda x: 1 / (1 + sympy.exp(-x)),
        "softplus": lambda x: sympy.log(1 + sympy.exp(x)),
        "gelu": lambda x: x * (1 + sympy.erf(x / sympy.sqrt(2))) / 2,
        "silu": lambda x: x / (1 + sympy.exp(-x)),
        "elu": lambda x: sympy.Piecewise((x, x > 0), (sympy.exp(x) - 1, True)),
    }
    for name, fn in defs.items():
        f = ELEMENTWISE.get(name)
        if f is not None and expr.has(f):
            expr = expr.replace(f, fn)
    return expr


def _numeric(poly: sympy.Expr, A: sympy.Matrix, companion: bool):
    """Roots, stability class, spectral radius and its Jordan size for numeric coefficients."""
    notes: list = []
    poly = _defined(poly)
    A = A.applyfunc(_defined)
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
        if f.degree() <= 2:
            rs = sympy.roots(f, LAMBDA)
            for r, m in rs.items():
                mod = sympy.Abs(r) if r.is_real else sympy.sqrt(sympy.expand(r * sympy.conjugate(r)))
                mod = sympy.simplify(mod) if sympy.count_ops(mod) < 60 else mod
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


def _numeric_sqf(pieces, A, companion, notes):
    roots, flags = [], []
    for f, e in pieces:
        try:
            values = f.nroots(n=_DIGITS, maxsteps=200)
        except Exception:
            notes.append("the roots did not converge numerically")
            return None, None, None, None, notes
        for r in values:
            mod = sympy.Abs(r).evalf(_DIGITS)
            sign = 0 if abs(mod - 1) < 1e-12 else (1 if mod > 1 else -1)
            roots.append(Root(_float(r), e, mod, False))
            flags.append((sign, None, e))
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
        mod = sympy.Abs(r).evalf(_DIGITS)
        sign = 0 if abs(mod - 1) < 1e-12 else (1 if mod > 1 else -1)
        roots.append(Root(_float(r), m, mod, False))
        flags.append((sign, None, m))
    stability, rate, mult = _classify(roots, flags, None, True, notes)
    return roots, stability, rate, mult, notes


def _float(r: sympy.Expr) -> sympy.Expr:
    """A numeric root at double precision (the decisions use the 30-digit value)."""
    re, im = r.as_real_imag()
    re, im = sympy.Float(float(re), 15), sympy.Float(float(im), 15)
    return re if im == 0 else re + im * sympy.I


def _sign(e: sympy.Expr) -> int | None:
    """Sign of a real number given exactly; None when it cannot be decided."""
    try:
        if e == 0 or e.is_zero:
            return 0
        if e.is_positive:
            return 1
        if e.is_negative:
            return -1
        v = e.evalf(60)
        if not v.is_Number:
            return None
        if abs(v) < sympy.Float("1e-50"):
            return 0
        return 1 if v > 0 else -1
    except (TypeError, ValueError):
        return None


def _classify(roots, flags, A, companion, notes):
    if not roots:
        return None, None, None
    if any(sign is None for sign, _, _ in flags):
        notes.append("the moduli of the roots could not be compared with 1: stability not determined")
        return None, None, None
    mods = [sympy.Float(r.modulus.evalf(_DIGITS), _DIGITS) for r in roots]
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
