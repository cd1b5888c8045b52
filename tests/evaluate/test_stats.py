"""Bootstrap intervals over cases: coverage of a known mean, seeded reruns, the paired difference."""
import numpy as np
import pytest

from fastlight.evaluate.stats import (Interval, StatsError, bootstrap_interval, mean_of, paired_difference,
                                      ratio_of_sums)


def test_interval_of_a_mean_has_the_textbook_width():
    x = np.random.default_rng(1).normal(0.5, 0.1, 400)
    iv = bootstrap_interval(mean_of("x"), {"x": x})
    assert iv.estimate == pytest.approx(x.mean()) and iv.low < x.mean() < iv.high
    assert iv.half_width == pytest.approx(1.96 * x.std() / 20, rel=0.15)  # normal theory, n = 400
    assert bootstrap_interval(mean_of("x"), {"x": x}) == iv  # seeded
    assert bootstrap_interval(mean_of("x"), {"x": x}, seed=7) != iv


def test_ratio_of_sums_resamples_cases_not_objects():
    num = np.array([2, 0, 1, 2, 1, 0, 2, 2])
    den = np.array([2, 1, 1, 2, 2, 1, 2, 2])
    iv = bootstrap_interval(ratio_of_sums("k", "n"), {"k": num, "n": den})
    assert iv.estimate == pytest.approx(num.sum() / den.sum())
    assert 0 <= iv.low < iv.estimate < iv.high <= 1
    const = bootstrap_interval(mean_of("x"), {"x": np.ones(10)})
    assert (const.low, const.high) == (1.0, 1.0) and not const.excludes(1.0)


def test_paired_difference_sees_a_small_shift_two_intervals_cannot():
    rng = np.random.default_rng(0)
    case = rng.normal(0.8, 0.1, 64)  # case difficulty, shared by both models
    a, b = case + 0.01, case + rng.normal(0, 0.005, 64)
    ia, ib = bootstrap_interval(mean_of("x"), {"x": a}), bootstrap_interval(mean_of("x"), {"x": b})
    assert ia.low < ib.high  # separately they overlap
    d = paired_difference(mean_of("x"), {"x": a}, {"x": b})
    assert d.estimate == pytest.approx(a.mean() - b.mean()) and d.low > 0 and d.excludes(0.0)
    assert not paired_difference(mean_of("x"), {"x": b}, {"x": b}).excludes(0.0)


def test_bad_data_names_the_problem():
    with pytest.raises(StatsError, match="at least 2 cases"):
        bootstrap_interval(mean_of("x"), {"x": [1.0]})
    with pytest.raises(StatsError, match="one value per case"):
        bootstrap_interval(ratio_of_sums("k", "n"), {"k": [1, 2, 3], "n": [1, 2]})
    with pytest.raises(StatsError, match="same cases"):
        paired_difference(mean_of("x"), {"x": [1.0, 2.0]}, {"x": [1.0, 2.0, 3.0]})


def test_interval_json_round_trip_and_format():
    iv = Interval(0.9, 0.88, 0.93, 0.95, 64)
    assert Interval.from_json(iv.to_json()) == iv
    assert iv.fmt() == "0.900 [0.880, 0.930]" and iv.half_width == pytest.approx(0.025)


def test_the_centred_interval_takes_a_resampling_bias_back_out():
    # the variance of a small sample: resampling with replacement repeats values and lowers it on average
    # (by var / n), so the percentile interval sits low of the estimate; the centred one is moved back
    x = np.random.default_rng(3).standard_normal(12)
    stat = lambda d: d["x"].var(axis=-1)  # noqa: E731
    pct = bootstrap_interval(stat, {"x": x})
    centred = bootstrap_interval(stat, {"x": x}, method="centred")
    assert pct.estimate == centred.estimate
    shift = centred.low - pct.low
    assert shift == pytest.approx(centred.high - pct.high) and shift == pytest.approx(x.var() / 12, rel=0.15)
    with pytest.raises(ValueError, match="method"):
        bootstrap_interval(stat, {"x": x}, method="bca")
