"""Statistics against published values and against mpmath's numerical integration."""

import math

import mpmath
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


def test_t_distribution_against_numerical_integration():
    for df in (1, 2, 3.5, 9, 30):

        def density(x, df=df):
            return (
                mpmath.gamma((df + 1) / 2)
                / (mpmath.sqrt(df * mpmath.pi) * mpmath.gamma(df / 2))
                * (1 + x * x / df) ** (-(df + 1) / 2)
            )

        for t in (-6.0, -2.0, -0.3, 0.0, 0.7, 2.262157, 5.0):
            want = float(mpmath.quad(density, [-mpmath.inf, 0, t]))
            assert stats.t_cdf(t, df) == pytest.approx(want, rel=1e-9, abs=1e-12)
    # the tabulated critical values: t_{0.975, 9} = 2.262157, t_{0.995, 30} = 2.749996
    assert 2 * stats.t_sf(2.262157163, 9) == pytest.approx(0.05, abs=1e-9)
    assert 2 * stats.t_sf(2.749996, 30) == pytest.approx(0.01, abs=1e-7)
    # df = 1 is the Cauchy distribution
    assert stats.t_cdf(1.0, 1) == pytest.approx(0.75)


def test_chi2_and_f():
    # tabulated: chi2_{0.95}(1) = 3.841459, chi2_{0.95}(2) = 5.991465, chi2_{0.99}(5) = 15.08627
    assert stats.chi2_sf(3.841458821, 1) == pytest.approx(0.05, abs=1e-9)
    assert stats.chi2_sf(5.991464547, 2) == pytest.approx(0.05, abs=1e-9)
    assert stats.chi2_sf(15.08627247, 5) == pytest.approx(0.01, abs=1e-9)
    assert stats.chi2_sf(4.0, 2) == pytest.approx(math.exp(-2))  # df 2: exp(-x/2)
    assert stats.chi2_sf(0.0, 3) == 1.0
    want = float(
        mpmath.quad(lambda x: x**1.5 * mpmath.exp(-x / 2), [7.3, mpmath.inf]) / (2**2.5 * mpmath.gamma(2.5))
    )
    assert stats.chi2_sf(7.3, 5) == pytest.approx(want, rel=1e-10)
    # F_{0.95}(2, 42) = 3.219942
    assert stats.f_sf(3.219942, 2, 42) == pytest.approx(0.05, abs=1e-6)


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
        stats.friedman_test([[x, y] for x, y in pairs]),
    ):
        assert r.p_value is None or 0.0 <= r.p_value <= 1.0
    t1, t2 = stats.paired_t_test(a, b), stats.paired_t_test(b, a)
    assert (t1.p_value is None) == (t2.p_value is None)
    if t1.p_value is not None:
        assert t1.p_value == pytest.approx(t2.p_value, abs=1e-12)
