"""A Frechet distance between two small sets of high-dimensional features, with a paired bootstrap
interval over the cases (prompts).

    iv = frechet_interval(reference_features, student_features)     # (N, D) each, row i = prompt i

Evaluation runs on tens of prompts while a DiT's hidden width is ~1,500-5,000, so the sample
covariance is singular and the plain Frechet distance is dominated by noise. Two regularisations,
both fixed before any data are seen:

* **projection**: the features are projected onto `PROJECTION_DIM` (32) orthonormal directions drawn
  from a seeded Gaussian (`projection(D)`: the same for every model, every run and every set of
  models, so distances of different students to one teacher are comparable; a random projection
  keeps distances between points approximately, Johnson-Lindenstrauss); widths <= 32 are kept whole;
* **shrinkage**: each covariance is the Ledoit-Wolf estimate (the sample covariance pulled towards
  a multiple of the identity by the data-driven amount of Ledoit & Wolf 2004, as
  `sklearn.covariance.ledoit_wolf`), which is well-conditioned for any number of samples.

The distance itself is `fastlight.evaluate.fvd.frechet_distance` (float64, scipy's `sqrtm`),
squared as FID/FVD report it. The interval resamples the prompts with replacement, the same indices
for both sets (a paired bootstrap, `fastlight.evaluate.stats`), and is the CENTRED bootstrap interval,
clipped at 0: a resample repeats prompts, which moves the distance (on the Shapes demo the percentile
interval lay wholly above the estimate), and the centred interval takes that bias back out.
"""
from __future__ import annotations

import numpy as np

from fastlight.errors import DataError
from fastlight.evaluate.fvd import frechet_distance
from fastlight.evaluate.stats import Interval, bootstrap_interval

PROJECTION_DIM = 32
PROJECTION_SEED = 0


def projection(dim: int, k: int = PROJECTION_DIM, seed: int = PROJECTION_SEED) -> np.ndarray:
    """(dim, min(dim, k)) orthonormal columns from a seeded Gaussian; the identity when dim <= k."""
    if dim <= k:
        return np.eye(dim)
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((dim, k)))
    return q


def ledoit_wolf(x: np.ndarray) -> np.ndarray:
    """Ledoit-Wolf shrinkage covariance of x (N, D): (1 - a) S + a (tr S / D) I, S the maximum-
    likelihood covariance, a = min(b^2, d^2) / d^2 with d^2 = |S - mI|_F^2 and b^2 the mean squared
    distance of the single-sample outer products to S over N (0 when S is already m I)."""
    x = np.asarray(x, dtype=np.float64)
    n, d = x.shape
    xc = x - x.mean(axis=0)
    s = xc.T @ xc / n
    m = np.trace(s) / d
    d2 = float(np.sum((s - m * np.eye(d)) ** 2))
    if d2 <= 0:
        return s
    outer = np.einsum("ni,nj->nij", xc, xc)
    b2 = min(float(np.sum((outer - s) ** 2)) / n ** 2, d2)
    a = b2 / d2
    return (1 - a) * s + a * m * np.eye(d)


def regularised_frechet(a: np.ndarray, b: np.ndarray) -> float:
    """Squared Frechet distance of the Gaussians fitted (mean, Ledoit-Wolf covariance) to a and b,
    (N_a, k) and (N_b, k) already projected."""
    return frechet_distance(a.mean(axis=0), ledoit_wolf(a), b.mean(axis=0), ledoit_wolf(b))


def frechet_interval(reference: np.ndarray, other: np.ndarray, **bootstrap) -> Interval:
    """The regularised Frechet distance between two feature sets (N, D) whose row i comes from the same
    prompt and noise, with its paired bootstrap interval over the N prompts."""
    reference, other = np.asarray(reference, dtype=np.float64), np.asarray(other, dtype=np.float64)
    if reference.shape != other.shape or reference.ndim != 2:
        raise DataError(f"paired features must have one shape (N, D), got {reference.shape} and {other.shape}")
    p = projection(reference.shape[1])
    data = {"ref": reference @ p, "other": other @ p}

    def stat(d):  # d[key]: (R, N, k) resampled sets
        return np.array([regularised_frechet(r, o) for r, o in zip(d["ref"], d["other"])])

    iv = bootstrap_interval(stat, data, method="centred", **bootstrap)
    return Interval(iv.estimate, max(iv.low, 0.0), max(iv.high, 0.0), iv.level, iv.num_cases)  # a distance is >= 0
