"""Paired significance tests for per-query metric values: t-test, sign-flip permutation test, bootstrap CI.

Every function takes two equally long sequences ``baseline`` and ``system`` (one value per query, same order)
and looks at the per-query differences ``system - baseline``. Random procedures use a fixed seed, so a report
is reproducible. The tests are scipy's (``ttest_rel``, ``permutation_test``, ``bootstrap``); scipy is in the
``eval`` extra and imported when a test runs.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_RESAMPLES",
    "DEFAULT_SEED",
    "bootstrap_ci",
    "compare_paired",
    "paired_differences",
    "paired_t_test",
    "permutation_test",
    "wins_losses_ties",
]

DEFAULT_RESAMPLES = 10_000
DEFAULT_SEED = 0


def paired_differences(baseline: Sequence[float], system: Sequence[float]) -> np.ndarray:
    """``system - baseline`` as float64; both must be 1-d and equally long."""
    a = np.asarray(baseline, dtype=np.float64)
    b = np.asarray(system, dtype=np.float64)
    if a.ndim != 1 or b.ndim != 1:
        raise ValueError("paired values must be 1-d sequences (one value per query)")
    if a.shape != b.shape:
        raise ValueError(f"paired values need the same number of queries, got {len(a)} and {len(b)}")
    if not np.all(np.isfinite(a)) or not np.all(np.isfinite(b)):
        raise ValueError("paired values must be finite numbers")
    return b - a


def paired_t_test(baseline: Sequence[float], system: Sequence[float]) -> float:
    """Two-sided p-value of the paired t-test (``scipy.stats.ttest_rel``).

    Identical inputs (every difference zero) give 1.0, a constant non-zero difference 0.0, fewer than
    two queries NaN.
    """
    diffs = paired_differences(baseline, system)
    if len(diffs) < 2:
        return math.nan
    if np.all(diffs == 0):
        return 1.0
    if np.ptp(diffs) <= 1e-12 * max(1.0, float(np.abs(diffs).max())):
        return 0.0  # the same non-zero difference on every query (up to rounding): no variance
    from scipy import stats

    return float(stats.ttest_rel(np.asarray(system, float), np.asarray(baseline, float)).pvalue)


def permutation_test(
    baseline: Sequence[float],
    system: Sequence[float],
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> float:
    """Two-sided paired randomisation test (``scipy.stats.permutation_test``, paired samples): each query's
    two values are swapped at random, i.e. its difference flips sign.

    The p-value is the share of sign assignments whose mean difference is at least as far from zero as the
    observed one. When ``2**n <= n_resamples`` every assignment is enumerated (exact test); otherwise
    ``n_resamples`` random ones are drawn with ``seed`` and the observed assignment is counted once
    (``(1 + hits) / (1 + n_resamples)``), so the p-value is never zero.
    """
    if n_resamples <= 0:
        raise ValueError(f"n_resamples must be positive, got {n_resamples}")
    diffs = paired_differences(baseline, system)
    if len(diffs) == 0:
        return math.nan
    from scipy import stats

    result = stats.permutation_test(
        (diffs, np.zeros_like(diffs)),
        _abs_mean_difference,
        permutation_type="samples",
        vectorized=True,
        n_resamples=n_resamples,
        alternative="greater",
        rng=np.random.default_rng(seed),
    )
    return float(result.pvalue)


def _abs_mean_difference(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.abs(np.mean(x - y, axis=axis))


def bootstrap_ci(
    baseline: Sequence[float],
    system: Sequence[float],
    *,
    confidence: float = 0.95,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean difference, queries resampled with replacement
    (``scipy.stats.bootstrap`` with ``paired=True``)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    if n_resamples <= 0:
        raise ValueError(f"n_resamples must be positive, got {n_resamples}")
    diffs = paired_differences(baseline, system)
    if len(diffs) == 0:
        return (math.nan, math.nan)
    if np.ptp(diffs) == 0:  # every resample has the same mean (scipy calls this degenerate)
        return (float(diffs[0]), float(diffs[0]))
    from scipy import stats

    result = stats.bootstrap(
        (np.zeros_like(diffs), diffs),
        _mean_difference,
        paired=True,
        vectorized=True,
        n_resamples=n_resamples,
        confidence_level=confidence,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return (float(result.confidence_interval.low), float(result.confidence_interval.high))


def _mean_difference(baseline: np.ndarray, system: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(system - baseline, axis=axis)


def wins_losses_ties(
    baseline: Sequence[float], system: Sequence[float], *, tolerance: float = 1e-9
) -> dict[str, int]:
    """Queries where ``system`` beats ``baseline`` by more than ``tolerance`` (wins), trails it (losses),
    or neither (ties)."""
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    diffs = paired_differences(baseline, system)
    wins = int(np.count_nonzero(diffs > tolerance))
    losses = int(np.count_nonzero(diffs < -tolerance))
    return {"wins": wins, "losses": losses, "ties": len(diffs) - wins - losses}


def compare_paired(
    baseline: Sequence[float],
    system: Sequence[float],
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """All three tests in the report's shape:
    ``{"test": "paired t", "p_value", "permutation_p_value", "ci95": [lo, hi], "mean_difference", "n"}``."""
    diffs = paired_differences(baseline, system)
    lo, hi = bootstrap_ci(baseline, system, confidence=confidence, n_resamples=n_resamples, seed=seed)
    return {
        "test": "paired t",
        "p_value": _clean(paired_t_test(baseline, system)),
        "permutation_p_value": _clean(permutation_test(baseline, system, n_resamples=n_resamples, seed=seed)),
        "ci95": [_clean(lo), _clean(hi)],
        "mean_difference": _clean(float(diffs.mean())) if len(diffs) else None,
        "n": int(len(diffs)),
        "permutation_resamples": n_resamples,
        "seed": seed,
    }


def _clean(value: float) -> float | None:
    """JSON-safe: NaN becomes None."""
    return None if value is None or math.isnan(value) else float(value)
