"""Uncertainty of a benchmark score: percentile bootstrap intervals over cases.

A benchmark's score is a statistic of per-case values (a mean, a ratio of sums such as "objects
in the right direction / objects", or a weighted mix of such parts). Its 95% interval comes from
resampling the CASES with replacement (Efron's percentile bootstrap): every array of `data` is
indexed by the same resampled case indices, so per-case sums and counts stay together. The
resampling is seeded, so the same data give the same interval on every rerun and machine.

Two models scored on the same cases with the same noise form a PAIRED comparison: the difference
of their statistics is resampled over the same indices for both, which cancels the case-to-case
variation they share (a much narrower interval than two separate ones would suggest). "A beats B
at the 95% level" = the paired interval of stat(A) - stat(B) lies above 0.

    iv = bootstrap_interval(mean_of("x"), {"x": values})            # Interval(estimate, low, high)
    d = paired_difference(stat, data_a, data_b)                      # same cases, same order
    d.excludes(0.0)                                                  # True: a significant difference

`statistic(data)` receives each array with a leading resample axis, (R, N), and returns (R,).

A statistic that resampling biases (a Frechet distance of a few tens of cases: a resample repeats
cases, which moves the fitted means and covariances, so the percentile interval can lie wholly to one
side of the estimate) takes the CENTRED interval instead, `method="centred"`: the percentile interval
moved by the bootstrap's estimate of that bias, [q_lo - b, q_hi - b] with b = mean(resamples) - t
(t the estimate; Efron & Tibshirani 1993, eq. 10.2 for b): the resamples' spread, placed around t.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

from fastlight.errors import InputError

LEVEL = 0.95
NUM_RESAMPLES = 2000
SEED = 0

Statistic = Callable[[Mapping[str, np.ndarray]], np.ndarray]


class StatsError(InputError):
    """Data that cannot be bootstrapped (the message names the fix)."""


@dataclass(frozen=True)
class Interval:
    """A point estimate with its bootstrap interval at `level` over `num_cases` cases."""

    estimate: float
    low: float
    high: float
    level: float = LEVEL
    num_cases: int = 0

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def excludes(self, value: float) -> bool:
        """True when `value` lies outside [low, high] (a two-sided test at 1 - level)."""
        return not self.low <= value <= self.high

    def to_json(self) -> dict:
        return {"estimate": self.estimate, "low": self.low, "high": self.high, "level": self.level,
                "num_cases": self.num_cases}

    @classmethod
    def from_json(cls, d: Mapping) -> "Interval":
        return cls(float(d["estimate"]), float(d["low"]), float(d["high"]), float(d.get("level", LEVEL)),
                   int(d.get("num_cases", 0)))

    def fmt(self, spec: str = ".3f") -> str:
        """'0.905 [0.893, 0.917]'."""
        return f"{self.estimate:{spec}} [{self.low:{spec}}, {self.high:{spec}}]"


def _as_arrays(data: Mapping[str, object]) -> tuple[dict[str, np.ndarray], int]:
    arrays = {k: np.asarray(v, dtype=np.float64) for k, v in data.items()}
    sizes = {a.shape[0] if a.ndim else -1 for a in arrays.values()}
    if len(sizes) != 1 or -1 in sizes:
        raise StatsError(f"every per-case array needs one value per case; got lengths {sorted(sizes)}")
    (n,) = sizes
    if n < 2:
        raise StatsError(f"a bootstrap interval needs at least 2 cases, got {n}; evaluate more cases")
    return arrays, n


def resample_indices(num_cases: int, num_resamples: int = NUM_RESAMPLES, seed: int = SEED) -> np.ndarray:
    """(num_resamples, num_cases) case indices drawn with replacement from a seeded generator."""
    return np.random.default_rng(seed).integers(0, num_cases, size=(num_resamples, num_cases))


def _interval(point: float, boot: np.ndarray, level: float, n: int) -> Interval:
    boot = boot[np.isfinite(boot)]
    if boot.size == 0:
        raise StatsError("the statistic is undefined on every resample (e.g. no case has anything to measure)")
    lo, hi = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
    return Interval(float(point), float(lo), float(hi), level, n)


def _point(statistic: Statistic, arrays: dict[str, np.ndarray]) -> float:
    return float(np.asarray(statistic({k: v[None] for k, v in arrays.items()})).reshape(-1)[0])


METHODS = ("percentile", "centred")


def bootstrap_interval(statistic: Statistic, data: Mapping[str, object], level: float = LEVEL,
                       num_resamples: int = NUM_RESAMPLES, seed: int = SEED, method: str = "percentile") -> Interval:
    """Bootstrap interval of `statistic` over the cases of `data` ({name: (N,) values}): percentile, or
    centred for a statistic the resampling biases (module docstring)."""
    if not 0 < level < 1:
        raise StatsError(f"level must be in (0, 1), got {level}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    arrays, n = _as_arrays(data)
    idx = resample_indices(n, num_resamples, seed)
    boot = np.asarray(statistic({k: v[idx] for k, v in arrays.items()}), dtype=np.float64)
    iv = _interval(_point(statistic, arrays), boot, level, n)
    if method == "centred":
        bias = float(np.mean(boot[np.isfinite(boot)])) - iv.estimate
        iv = Interval(iv.estimate, iv.low - bias, iv.high - bias, level, n)
    return iv


def paired_difference(statistic: Statistic, data_a: Mapping[str, object], data_b: Mapping[str, object],
                      level: float = LEVEL, num_resamples: int = NUM_RESAMPLES, seed: int = SEED) -> Interval:
    """Interval of statistic(A) - statistic(B) where case i of A and case i of B are the same case
    (same prompt, first frame and noise): both are resampled with the same indices."""
    a, n_a = _as_arrays(data_a)
    b, n_b = _as_arrays(data_b)
    if n_a != n_b:
        raise StatsError(f"a paired comparison needs the same cases: {n_a} vs {n_b} cases")
    idx = resample_indices(n_a, num_resamples, seed)
    boot = (np.asarray(statistic({k: v[idx] for k, v in a.items()}), dtype=np.float64)
            - np.asarray(statistic({k: v[idx] for k, v in b.items()}), dtype=np.float64))
    return _interval(_point(statistic, a) - _point(statistic, b), boot, level, n_a)


def mean_of(key: str) -> Statistic:
    """The mean of one per-case array."""
    return lambda d: d[key].mean(axis=-1)


def ratio_of_sums(numerator: str, denominator: str) -> Statistic:
    """sum(numerator) / sum(denominator) over cases (e.g. correct objects / objects); NaN when 0."""
    def stat(d):
        den = d[denominator].sum(axis=-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, d[numerator].sum(axis=-1) / np.where(den > 0, den, 1), np.nan)
    return stat
