"""Significance tests for comparing models over seeds, with exact p-values from mpmath.

* :func:`paired_t_test` - two models, paired by seed (Student's t, two-sided);
* :func:`wilcoxon_signed_rank` - two models, exact distribution of the signed-rank statistic;
* :func:`friedman_test` - three or more models, seeds as blocks (chi-square approximation with
  the tie correction, as R's ``friedman.test``; the Iman-Davenport F as an extra);
* :func:`holm` - Holm's step-down adjustment of several p-values.

The distribution functions (:func:`t_cdf`, :func:`t_sf`, :func:`chi2_sf`, :func:`f_sf`) are
regularized incomplete beta and gamma functions evaluated by mpmath at 30 digits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import mpmath

__all__ = [
    "TestResult",
    "chi2_sf",
    "f_sf",
    "friedman_test",
    "holm",
    "paired_t_test",
    "rankdata",
    "t_cdf",
    "t_sf",
    "wilcoxon_signed_rank",
]

_DPS = 30


def _betainc(a: float, b: float, x: float) -> float:
    with mpmath.workdps(_DPS):
        return float(mpmath.betainc(a, b, 0, x, regularized=True))


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom."""
    if df <= 0:
        raise ValueError("degrees of freedom must be positive")
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    x = df / (df + t * t)
    tail = 0.5 * _betainc(df / 2, 0.5, x)  # P(T > |t|)
    return 1.0 - tail if t >= 0 else tail


def t_sf(t: float, df: float) -> float:
    """P(T > t)."""
    return t_cdf(-t, df)


def chi2_sf(x: float, df: float) -> float:
    """P(X > x) for the chi-square distribution with ``df`` degrees of freedom."""
    if df <= 0:
        raise ValueError("degrees of freedom must be positive")
    if x <= 0:
        return 1.0
    if math.isinf(x):
        return 0.0
    with mpmath.workdps(_DPS):
        return float(mpmath.gammainc(df / 2, x / 2, mpmath.inf, regularized=True))


def f_sf(f: float, d1: float, d2: float) -> float:
    """P(F > f) for the F distribution with (d1, d2) degrees of freedom."""
    if f <= 0:
        return 1.0
    if math.isinf(f):
        return 0.0
    return _betainc(d2 / 2, d1 / 2, d2 / (d2 + d1 * f))


@dataclass
class TestResult:
    """The outcome of a test.  ``p_value`` is None where the test is undefined (``note`` says
    why: too few seeds, identical results, ...)."""

    name: str
    statistic: float | None
    p_value: float | None
    df: float | None = None
    n: int = 0
    note: str = ""
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("statistic", "p_value", "df"):
            v = d[k]
            if isinstance(v, float) and not math.isfinite(v):
                d[k] = str(v)
        return d

    def describe(self) -> str:
        if self.p_value is None:
            return f"{self.name}: not computed ({self.note})"
        parts = []
        if self.statistic is not None:
            sym = {"paired t-test": "t", "Friedman test": "chi2", "Wilcoxon signed-rank test": "V"}.get(
                self.name, "stat"
            )
            parts.append(f"{sym} = {_fmt(self.statistic)}")
        if self.df is not None:
            parts.append(f"df = {_fmt(self.df)}")
        parts.append(f"p = {format_p(self.p_value)}")
        s = f"{self.name} (n = {self.n}): " + ", ".join(parts)
        return s + (f" ({self.note})" if self.note else "")


def _fmt(x: float) -> str:
    if isinstance(x, float) and x.is_integer() and abs(x) < 1e9:
        return str(int(x))
    return f"{x:.4g}"


def format_p(p: float | None) -> str:
    if p is None:
        return "n/a"
    if p < 1e-4:
        return f"{p:.2e}"
    return f"{p:.4f}"


def _mean(xs: Sequence[float]) -> float:
    return math.fsum(xs) / len(xs)


def _sd(xs: Sequence[float]) -> float:
    if len(xs) < 2:
        return 0.0
    m = _mean(xs)
    return math.sqrt(math.fsum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def paired_t_test(a: Sequence[float], b: Sequence[float]) -> TestResult:
    """Two-sided paired t-test of mean(a - b) = 0."""
    if len(a) != len(b):
        raise ValueError("paired samples must have the same length")
    n = len(a)
    d = [float(x) - float(y) for x, y in zip(a, b)]
    name = "paired t-test"
    if n < 2:
        return TestResult(name, None, None, None, n, "needs at least 2 paired seeds")
    md, sd = _mean(d), _sd(d)
    extra = {"mean_difference": md, "sd_difference": sd}
    if sd == 0.0 or sd < 1e-15 * max(1.0, abs(md)):
        if md == 0.0 or abs(md) < 1e-15:
            return TestResult(name, None, None, n - 1, n, "identical results on every seed", extra)
        return TestResult(
            name, math.copysign(math.inf, md), 0.0, n - 1, n, "the same difference on every seed", extra
        )
    t = md / (sd / math.sqrt(n))
    df = n - 1
    p = _betainc(df / 2, 0.5, df / (df + t * t))
    return TestResult(name, t, min(1.0, p), df, n, "", extra)


def rankdata(values: Sequence[float]) -> list[float]:
    """Ranks 1..n, ties sharing their average rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        avg = (i + j) / 2 + 1
        for k in range(i, j + 1):
            ranks[order[k]] = avg
        i = j + 1
    return ranks


def wilcoxon_signed_rank(
    a: Sequence[float], b: Sequence[float], alternative: str = "two-sided"
) -> TestResult:
    """Wilcoxon signed-rank test of the differences a - b, with the exact distribution of
    V (the sum of the ranks of the positive differences; zero differences are dropped, tied
    absolute differences get average ranks and the exact distribution takes them as they are).

    ``alternative``: "two-sided", "greater" (a > b) or "less"."""
    if len(a) != len(b):
        raise ValueError("paired samples must have the same length")
    if alternative not in ("two-sided", "greater", "less"):
        raise ValueError("alternative must be two-sided, greater or less")
    d = [float(x) - float(y) for x, y in zip(a, b)]
    d = [x for x in d if x != 0.0]
    n = len(d)
    name = "Wilcoxon signed-rank test"
    if n == 0:
        return TestResult(name, None, None, None, 0, "identical results on every seed")
    r2 = [round(2 * r) for r in rankdata([abs(x) for x in d])]  # doubled ranks: integers
    v2 = sum(r for r, x in zip(r2, d) if x > 0)
    counts = {0: 1}
    for r in r2:
        nxt: dict[int, int] = dict(counts)
        for s, c in counts.items():
            nxt[s + r] = nxt.get(s + r, 0) + c
        counts = nxt
    total = 2**n
    le = sum(c for s, c in counts.items() if s <= v2) / total
    ge = sum(c for s, c in counts.items() if s >= v2) / total
    if alternative == "greater":
        p = ge
    elif alternative == "less":
        p = le
    else:
        p = min(1.0, 2 * min(le, ge))
    return TestResult(
        name,
        v2 / 2,
        p,
        None,
        n,
        "" if alternative == "two-sided" else f"one-sided, {alternative}",
        {"alternative": alternative},
    )


def friedman_test(table: Sequence[Sequence[float]]) -> TestResult:
    """Friedman test: rows are blocks (seeds), columns are treatments (models).

    The statistic is corrected for ties (as R's ``friedman.test``) and referred to the
    chi-square distribution with k - 1 degrees of freedom; ``extra`` holds the mean ranks and
    the Iman-Davenport F statistic with its p-value."""
    rows = [list(map(float, r)) for r in table]
    name = "Friedman test"
    n = len(rows)
    if n == 0:
        return TestResult(name, None, None, None, 0, "no data")
    k = len(rows[0])
    if any(len(r) != k for r in rows):
        raise ValueError("every block needs one value per treatment")
    if k < 2:
        raise ValueError("the Friedman test needs at least 2 treatments")
    if n < 2:
        return TestResult(name, None, None, k - 1, n, "needs at least 2 seeds")
    ranks = [rankdata(r) for r in rows]
    rsum = [math.fsum(r[j] for r in ranks) for j in range(k)]
    ties = 0.0
    for r in rows:
        seen: dict[float, int] = {}
        for v in r:
            seen[v] = seen.get(v, 0) + 1
        ties += sum(t**3 - t for t in seen.values())
    corr = 1.0 - ties / (n * k * (k * k - 1))
    extra = {"mean_ranks": [s / n for s in rsum], "k": k}
    if corr <= 0:
        return TestResult(name, None, None, k - 1, n, "identical results on every seed", extra)
    q = (12.0 / (n * k * (k + 1)) * math.fsum(s * s for s in rsum) - 3.0 * n * (k + 1)) / corr
    q = max(q, 0.0)
    p = chi2_sf(q, k - 1)
    denom = n * (k - 1) - q
    if denom > 0:
        f = (n - 1) * q / denom
        extra["iman_davenport_f"] = f
        extra["iman_davenport_df"] = [k - 1, (k - 1) * (n - 1)]
        extra["iman_davenport_p"] = f_sf(f, k - 1, (k - 1) * (n - 1))
    return TestResult(name, q, p, k - 1, n, "", extra)


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values (None stays None and is not counted)."""
    idx = [i for i, p in enumerate(pvalues) if p is not None]
    m = len(idx)
    order = sorted(idx, key=lambda i: pvalues[i])  # type: ignore[arg-type,return-value]
    out: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(order):
        adj = min(1.0, (m - rank) * float(pvalues[i]))  # type: ignore[arg-type]
        running = max(running, adj)
        out[i] = running
    return out
