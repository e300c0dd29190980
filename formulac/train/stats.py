"""Significance tests for comparing models over seeds, computed by SciPy.

* :func:`paired_t_test` - two models paired by seed: Student's t (two-sided), the 95 %
  confidence interval of the mean difference and the effect size d_z (``scipy.stats.ttest_rel``);
* :func:`wilcoxon_signed_rank` - two models: the signed-rank test, exact where the differences
  have no ties (``scipy.stats.wilcoxon``), an exact permutation test of the same statistic
  where they do;
* :func:`friedman_test` - several models, seeds as blocks (``friedmanchisquare`` for three or
  more, its formula with ``scipy.stats.chi2`` for two; the tie correction of R's
  ``friedman.test``; the Iman-Davenport F as an extra);
* :func:`holm` - Holm's step-down adjustment of several p-values.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

__all__ = [
    "TestResult",
    "format_p",
    "friedman_test",
    "holm",
    "paired_t_test",
    "rankdata",
    "wilcoxon_signed_rank",
]


def _scipy_stats():
    """scipy.stats, imported when a test runs: importing it costs about a CPU second, which every
    command line process would otherwise pay (formulac.train is imported by the CLI's parser)."""
    from scipy import stats

    return stats


CONFIDENCE = 0.95


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


def _differences(a: Sequence[float], b: Sequence[float]) -> np.ndarray:
    if len(a) != len(b):
        raise ValueError("paired samples must have the same length")
    return np.asarray(a, dtype=float) - np.asarray(b, dtype=float)


def paired_t_test(a: Sequence[float], b: Sequence[float]) -> TestResult:
    """Two-sided paired t-test of mean(a - b) = 0.

    ``extra``: ``mean_difference``, ``sd_difference``, ``ci_low``/``ci_high`` (the 95 %
    confidence interval of the mean difference) and ``effect_size_dz`` (mean / sd of the
    differences, Cohen's d for paired samples)."""
    d = _differences(a, b)
    n = len(d)
    name = "paired t-test"
    if n < 2:
        return TestResult(name, None, None, None, n, "needs at least 2 paired seeds")
    md, sd = float(d.mean()), float(d.std(ddof=1))
    extra = {"mean_difference": md, "sd_difference": sd, "confidence": CONFIDENCE}
    if sd < 1e-15 * max(1.0, abs(md)):
        extra.update(ci_low=md, ci_high=md)
        if abs(md) < 1e-15:
            extra["effect_size_dz"] = 0.0
            return TestResult(name, None, None, n - 1, n, "identical results on every seed", extra)
        extra["effect_size_dz"] = math.copysign(math.inf, md)
        return TestResult(
            name, math.copysign(math.inf, md), 0.0, n - 1, n, "the same difference on every seed", extra
        )
    res = _scipy_stats().ttest_rel(np.asarray(a, dtype=float), np.asarray(b, dtype=float))
    ci = res.confidence_interval(CONFIDENCE)
    extra.update(ci_low=float(ci.low), ci_high=float(ci.high), effect_size_dz=md / sd)
    return TestResult(name, float(res.statistic), float(res.pvalue), float(res.df), n, "", extra)


def rankdata(values: Sequence[float]) -> list[float]:
    """Ranks 1..n, ties sharing their average rank."""
    return [float(r) for r in _scipy_stats().rankdata(values, method="average")]


def wilcoxon_signed_rank(
    a: Sequence[float], b: Sequence[float], alternative: str = "two-sided"
) -> TestResult:
    """Wilcoxon signed-rank test of the differences a - b (zero differences dropped, as R's
    ``wilcox.test``).  The statistic V is the sum of the ranks of the positive differences.
    Without ties among the |differences| the p-value is SciPy's exact one; with ties it comes
    from the exact permutation distribution of V (every sign pattern, up to 2^16 of them).

    ``alternative``: "two-sided", "greater" (a > b) or "less"."""
    if alternative not in ("two-sided", "greater", "less"):
        raise ValueError("alternative must be two-sided, greater or less")
    d = _differences(a, b)
    d = d[d != 0.0]
    n = len(d)
    name = "Wilcoxon signed-rank test"
    if n == 0:
        return TestResult(name, None, None, None, 0, "identical results on every seed")
    ranks = _scipy_stats().rankdata(np.abs(d))
    v = float(ranks[d > 0].sum())
    ties = len(np.unique(np.abs(d))) < n
    note = "" if alternative == "two-sided" else f"one-sided, {alternative}"
    if not ties:
        p = float(_scipy_stats().wilcoxon(d, alternative=alternative, method="exact").pvalue)
    elif n <= 16:
        p = _signed_rank_permutation_p(ranks, v, alternative)
        note = ", ".join(x for x in (note, "tied differences: exact permutation p-value") if x)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p = float(
                _scipy_stats().wilcoxon(d, alternative=alternative, method="approx", correction=True).pvalue
            )
        note = ", ".join(x for x in (note, "tied differences: normal approximation") if x)
    return TestResult(name, v, min(1.0, p), None, n, note, {"alternative": alternative})


def _signed_rank_permutation_p(ranks: np.ndarray, v: float, alternative: str) -> float:
    n = len(ranks)
    signs = (np.arange(2**n)[:, None] >> np.arange(n)[None, :]) & 1  # every sign pattern
    vs = signs @ ranks
    eps = 1e-9 * max(1.0, float(ranks.sum()))
    ge = float(np.mean(vs >= v - eps))
    le = float(np.mean(vs <= v + eps))
    if alternative == "greater":
        return ge
    if alternative == "less":
        return le
    return min(1.0, 2 * min(ge, le))


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
    ranks = np.array([_scipy_stats().rankdata(r) for r in rows])
    extra: dict = {"mean_ranks": [float(x) for x in ranks.mean(axis=0)], "k": k}
    if n < 2:
        return TestResult(name, None, None, k - 1, n, "needs at least 2 seeds", extra)
    if all(len(set(r)) == 1 for r in rows):
        return TestResult(name, None, None, k - 1, n, "identical results on every seed", extra)
    if k >= 3:
        res = _scipy_stats().friedmanchisquare(*np.array(rows).T)
        q, p = max(float(res.statistic), 0.0), float(res.pvalue)
    else:  # SciPy wants 3 treatments; the same statistic (R's, tie-corrected) by its formula
        q, p = _friedman_statistic(rows, ranks)
    denom = n * (k - 1) - q
    if denom > 0:
        f = (n - 1) * q / denom
        d1, d2 = k - 1, (k - 1) * (n - 1)
        extra.update(
            iman_davenport_f=f,
            iman_davenport_df=[d1, d2],
            iman_davenport_p=float(_scipy_stats().f.sf(f, d1, d2)),
        )
    return TestResult(name, q, p, k - 1, n, "", extra)


def _friedman_statistic(rows: list[list[float]], ranks: np.ndarray) -> tuple[float, float]:
    n, k = ranks.shape
    rsum = ranks.sum(axis=0)
    ties = sum(float((c**3 - c).sum()) for c in (np.unique(r, return_counts=True)[1] for r in rows))
    corr = 1.0 - ties / (n * k * (k * k - 1))
    q = (12.0 / (n * k * (k + 1)) * float((rsum**2).sum()) - 3.0 * n * (k + 1)) / corr
    q = max(q, 0.0)
    return q, float(_scipy_stats().chi2.sf(q, k - 1))


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
