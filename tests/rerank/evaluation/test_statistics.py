from __future__ import annotations

import math

import numpy as np
import pytest

from winnow.rerank.evaluation.statistics import (
    bootstrap_ci,
    compare_paired,
    paired_t_test,
    permutation_test,
    wins_losses_ties,
)


def test_paired_t_matches_the_closed_form_for_three_degrees_of_freedom():
    # differences 1, 2, 3, 4: mean 2.5, sd sqrt(5/3), t = 2.5 / (sd / 2) = 3.87298, df = 3
    t = 2.5 / (math.sqrt(5 / 3) / 2)
    x = t / math.sqrt(3)
    # Student t with 3 df: two-sided p = 1 - (2/pi) * (x / (1 + x^2) + arctan x)
    expected = 1 - (2 / math.pi) * (x / (1 + x * x) + math.atan(x))
    assert paired_t_test([0, 0, 0, 0], [1, 2, 3, 4]) == pytest.approx(expected, rel=1e-9)
    assert expected == pytest.approx(0.0305, abs=1e-4)
    assert paired_t_test([1, 2, 3, 4], [0, 0, 0, 0]) == pytest.approx(expected, rel=1e-9)  # two-sided


def test_paired_t_degenerate_cases():
    assert paired_t_test([0.3, 0.5], [0.3, 0.5]) == 1.0  # no difference at all
    assert paired_t_test([0.0, 0.1, 0.2], [0.5, 0.6, 0.7]) == 0.0  # a constant shift: no variance
    assert math.isnan(paired_t_test([0.1], [0.2]))


def test_exact_permutation_p_values_by_hand():
    # all five differences +1: only the all-plus and all-minus flips reach |mean| 1 -> 2 / 32
    assert permutation_test([0] * 5, [1] * 5) == pytest.approx(2 / 32)
    # differences 3 and 1: flip means 2, 1, -1, -2 -> two of four reach |2|
    assert permutation_test([0, 0], [3, 1]) == pytest.approx(0.5)
    # differences +1, -1: observed mean 0, every flip reaches it
    assert permutation_test([0, 1], [1, 0]) == 1.0


def test_sampled_permutation_counts_the_observed_assignment_and_is_seeded():
    # 2**20 assignments > 10000 -> sampled; a flip as extreme as all +1 is (almost) never drawn
    assert permutation_test([0] * 20, [1] * 20) == pytest.approx(1 / 10_001)
    rng = np.random.default_rng(7)
    a, b = rng.random(50), rng.random(50)
    p1 = permutation_test(a, b, seed=3)
    assert p1 == permutation_test(a, b, seed=3)
    assert 0 < p1 <= 1
    assert abs(p1 - permutation_test(a, b, seed=4)) < 0.03  # Monte Carlo error at n=10000


def test_bootstrap_ci_by_hand():
    assert bootstrap_ci([0, 0, 0], [0.2, 0.2, 0.2]) == pytest.approx((0.2, 0.2))
    # differences 0 and 1: resampled means are 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4
    lo, hi = bootstrap_ci([0, 0], [0, 1])
    assert (lo, hi) == (0.0, 1.0)
    assert bootstrap_ci([0, 0], [0, 1], confidence=0.4) == (0.5, 0.5)
    assert bootstrap_ci([0, 0, 1], [1, 0, 0.5], seed=1) == bootstrap_ci([0, 0, 1], [1, 0, 0.5], seed=1)


def test_wins_losses_ties_with_tolerance():
    base = [0.5, 0.5, 0.5, 0.5]
    system = [0.6, 0.4, 0.5 + 1e-12, 0.5]
    assert wins_losses_ties(base, system) == {"wins": 1, "losses": 1, "ties": 2}
    assert wins_losses_ties(base, system, tolerance=0.2) == {"wins": 0, "losses": 0, "ties": 4}


def test_compare_paired_shape_and_input_checks():
    out = compare_paired([0, 0, 0, 0], [1, 2, 3, 4])
    assert out["test"] == "paired t" and out["n"] == 4 and out["mean_difference"] == 2.5
    assert set(out) >= {"p_value", "permutation_p_value", "ci95"}
    assert out["permutation_p_value"] == pytest.approx(2 / 16)  # exact: only all-plus/all-minus reach 2.5
    lo, hi = out["ci95"]
    assert 1 <= lo <= 2.5 <= hi <= 4
    with pytest.raises(ValueError, match="same number of queries"):
        compare_paired([0, 1], [1])
    with pytest.raises(ValueError, match="finite"):
        paired_t_test([0, float("nan")], [1, 1])
    with pytest.raises(ValueError, match="tolerance"):
        wins_losses_ties([0], [1], tolerance=-1)
