"""Statistics (computed by SciPy) against R's published values and values worked out by hand."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from formulac.train import stats

# Student's sleep data (Cushny and Peebles), as in R's example:
# t.test(extra ~ group, data = sleep, paired = TRUE): t = -4.0621, df = 9, p-value = 0.002833
SLEEP_1 = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0]
SLEEP_2 = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4]

# R's friedman.test example (Hollander and Wolfe, rounding first base):
# Friedman chi-squared = 11.143, df = 2, p-value = 0.003805
ROUNDING_TIMES = [
    [5.40, 5.50, 5.55],
    [5.85, 5.70, 5.75],
    [5.20, 5.60, 5.50],
    [5.55, 5.50, 5.40],
    [5.90, 5.85, 5.70],
    [5.45, 5.55, 5.60],
    [5.40, 5.40, 5.35],
    [5.45, 5.50, 5.35],
    [5.25, 5.15, 5.00],
    [5.85, 5.80, 5.70],
    [5.25, 5.20, 5.10],
    [5.65, 5.55, 5.45],
    [5.60, 5.35, 5.45],
    [5.05, 5.00, 4.95],
    [5.50, 5.50, 5.40],
    [5.45, 5.55, 5.50],
    [5.55, 5.55, 5.35],
    [5.45, 5.50, 5.55],
    [5.50, 5.45, 5.25],
    [5.65, 5.60, 5.40],
    [5.70, 5.65, 5.55],
    [6.30, 6.30, 6.25],
]

# R's wilcox.test example (Hollander and Wolfe, depression scale):
# wilcox.test(x, y, paired = TRUE, alternative = "greater"): V = 40, p-value = 0.01953
DEPRESSION_X = [1.83, 0.50, 1.62, 2.48, 1.68, 1.88, 1.55, 3.06, 1.30]
DEPRESSION_Y = [0.878, 0.647, 0.598, 2.05, 1.06, 1.29, 1.06, 3.14, 1.29]


def test_paired_t_test_sleep_data():
    r = stats.paired_t_test(SLEEP_1, SLEEP_2)
    assert r.statistic == pytest.approx(-4.0621, abs=5e-5)
    assert r.df == 9
    assert r.p_value == pytest.approx(0.002833, abs=5e-7)
    assert r.extra["mean_difference"] == pytest.approx(-1.58)
    swapped = stats.paired_t_test(SLEEP_2, SLEEP_1)
    assert swapped.statistic == pytest.approx(-r.statistic)
    assert swapped.p_value == pytest.approx(r.p_value)
    assert "p = 0.0028" in r.describe()


def test_paired_t_test_by_hand():
    # differences 1, 2, 3: mean 2, sd 1, t = 2 / (1 / sqrt 3) = 2 sqrt 3, df 2;
    # for df = 2 the two-sided p is exactly 1 - |t| / sqrt(t^2 + 2) = 1 - sqrt(12/14)
    r = stats.paired_t_test([2, 4, 6], [1, 2, 3])
    assert r.statistic == pytest.approx(2 * math.sqrt(3))
    assert r.p_value == pytest.approx(1 - math.sqrt(12 / 14), rel=1e-12)


def test_paired_t_test_degenerate():
    assert stats.paired_t_test([1.0], [2.0]).p_value is None
    same = stats.paired_t_test([1, 2, 3], [1, 2, 3])
    assert same.p_value is None and "identical" in same.note
    shifted = stats.paired_t_test([2, 3, 4], [1, 2, 3])
    assert shifted.p_value == 0.0 and shifted.statistic == math.inf
    assert shifted.to_dict()["statistic"] == "inf"
    with pytest.raises(ValueError):
        stats.paired_t_test([1, 2], [1])


def test_paired_confidence_interval_and_effect_size_sleep_data():
    # R: t.test(extra ~ group, data = sleep, paired = TRUE)
    # 95 percent confidence interval: -2.4598858 -0.7001142; mean difference -1.58
    r = stats.paired_t_test(SLEEP_1, SLEEP_2)
    assert r.extra["ci_low"] == pytest.approx(-2.4598858, abs=5e-8)
    assert r.extra["ci_high"] == pytest.approx(-0.7001142, abs=5e-8)
    # d_z = mean / sd of the differences; sd(sleep differences) = 1.229995 (R: sd(diff))
    assert r.extra["sd_difference"] == pytest.approx(1.229995, abs=5e-7)
    assert r.extra["effect_size_dz"] == pytest.approx(-1.58 / 1.229995, abs=1e-6)
    # by hand: differences 1, 2, 3: CI = 2 -+ t_{0.975, 2} / sqrt 3, t_{0.975, 2} = 4.302653
    h = stats.paired_t_test([2, 4, 6], [1, 2, 3])
    assert h.extra["ci_low"] == pytest.approx(2 - 4.302653 / math.sqrt(3), abs=1e-6)
    assert h.extra["ci_high"] == pytest.approx(2 + 4.302653 / math.sqrt(3), abs=1e-6)
    assert h.extra["effect_size_dz"] == pytest.approx(2.0)


def test_friedman_rounding_times():
    r = stats.friedman_test(ROUNDING_TIMES)
    assert r.statistic == pytest.approx(11.143, abs=5e-4)
    assert r.df == 2 and r.n == 22
    assert r.p_value == pytest.approx(0.003805, abs=5e-7)
    assert r.extra["mean_ranks"][2] == pytest.approx(32 / 22)


def test_friedman_by_hand():
    # 3 blocks, 3 treatments, the same order everywhere: R = (3, 6, 9),
    # Q = 12 / (3*3*4) * (9 + 36 + 81) - 3*3*4 = 42 - 36 = 6, p = exp(-3)
    r = stats.friedman_test([[1, 2, 3], [10, 20, 30], [0.1, 0.2, 0.3]])
    assert r.statistic == pytest.approx(6.0)
    assert r.p_value == pytest.approx(math.exp(-3))
    assert "iman_davenport_f" not in r.extra  # perfect agreement: F is infinite
    tied = stats.friedman_test([[1, 1, 1], [2, 2, 2]])
    assert tied.p_value is None
    assert stats.friedman_test([[1, 2, 3]]).p_value is None
    with pytest.raises(ValueError):
        stats.friedman_test([[1, 2], [1, 2, 3]])
    # two treatments, by hand: ranks (1,2) (1,2) (1,2) (2,1), rank sums 5 and 7,
    # Q = 12 / (4*2*3) * (25 + 49) - 3*4*3 = 1, df 1
    two = stats.friedman_test([[1, 2], [3, 4], [5, 7], [8, 6]])
    assert two.statistic == pytest.approx(1.0) and two.df == 1
    assert two.p_value == pytest.approx(0.3173105, abs=1e-7)  # chi2(1).sf(1)
    # for k = 3 the formula and SciPy's friedmanchisquare agree
    import numpy as np
    from scipy.stats import rankdata as rk

    from formulac.train.stats import _friedman_statistic

    rows = [list(map(float, r)) for r in ROUNDING_TIMES]
    q, p = _friedman_statistic(rows, np.array([rk(r) for r in rows]))
    assert q == pytest.approx(11.143, abs=5e-4) and p == pytest.approx(0.003805, abs=5e-7)


def test_wilcoxon_exact():
    g = stats.wilcoxon_signed_rank(DEPRESSION_X, DEPRESSION_Y, alternative="greater")
    assert g.statistic == 40
    assert g.p_value == pytest.approx(10 / 512)  # 0.01953
    two = stats.wilcoxon_signed_rank(DEPRESSION_X, DEPRESSION_Y)
    assert two.p_value == pytest.approx(20 / 512)
    less = stats.wilcoxon_signed_rank(DEPRESSION_X, DEPRESSION_Y, alternative="less")
    # P(V <= 40) = 1 - P(V >= 41); V >= 41 iff the negative ranks sum to at most 4: 7 subsets
    assert less.p_value == pytest.approx(1 - 7 / 512)
    # all positive, n = 5: p = 2 / 32 two-sided
    assert stats.wilcoxon_signed_rank([2, 3, 4, 5, 6], [1] * 5).p_value == pytest.approx(1 / 16)
    assert stats.wilcoxon_signed_rank([1, 2], [1, 2]).p_value is None


def test_wilcoxon_with_tied_differences_is_an_exact_permutation_test():
    # differences 1, 1, 2, -3: |d| ranks 1.5, 1.5, 3, 4; V = 6. Of the 16 sign patterns,
    # V >= 6 for 6 of them: {3, 4}, {1.5, 1.5, 3}, {1.5, 1.5, 4}, {1.5, 3, 4} twice, all four
    r = stats.wilcoxon_signed_rank([2, 2, 3, 0], [1, 1, 1, 3], alternative="greater")
    assert r.statistic == 6.0 and r.p_value == pytest.approx(6 / 16) and "exact permutation" in r.note
    subsets = [sum(x for x, bit in zip([1.5, 1.5, 3, 4], f"{m:04b}") if bit == "1") for m in range(16)]
    assert r.p_value == pytest.approx(sum(v >= 6 for v in subsets) / 16)


def test_rankdata_and_holm():
    assert stats.rankdata([3.0, 1.0, 3.0, 2.0]) == [3.5, 1.0, 3.5, 2.0]
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert stats.holm([0.5, None, 0.01]) == [0.5, None, 0.02]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(-100, 100), st.floats(-100, 100)), min_size=2, max_size=12))
def test_tests_give_probabilities(pairs):
    a = [p[0] for p in pairs]
    b = [p[1] for p in pairs]
    for r in (
        stats.paired_t_test(a, b),
        stats.wilcoxon_signed_rank(a, b),
        stats.friedman_test([[x, y, x - y] for x, y in pairs]),
    ):
        assert r.p_value is None or 0.0 <= r.p_value <= 1.0
    t1, t2 = stats.paired_t_test(a, b), stats.paired_t_test(b, a)
    assert (t1.p_value is None) == (t2.p_value is None)
    if t1.p_value is not None:
        assert t1.p_value == pytest.approx(t2.p_value, abs=1e-12)
