"""Hypothesis settings for property tests that draw the same examples on every run, so that a
failure in CI is reproduced by running the test again."""

from hypothesis import HealthCheck, settings


def repeatable(max_examples: int) -> settings:
    """``max_examples`` examples, the same ones every run (derandomized, no example database),
    with no deadline and no complaint about slow data generation."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
