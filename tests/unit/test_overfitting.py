"""Deflated Sharpe ratio and PBO (CSCV) against hand computation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from backtest.overfitting import (EULER_GAMMA, deflated_sharpe_ratio, dsr_report, expected_max_sharpe, pbo_cscv,
                                  per_period_sharpe, probabilistic_sharpe_ratio)


def test_dsr_matches_the_papers_worked_example_computed_by_hand():
    # Bailey & Lopez de Prado (2014), section 6: 100 trials, variance of the annualised Sharpe
    # ratios 0.5, best annualised SR 2.5, five years of daily returns (T = 1250), skew -3, kurtosis 10.
    n, var_annual, sr_annual, t, skew, kurt = 100, 0.5, 2.5, 1250, -3.0, 10.0
    var = var_annual / 250                      # per-day variance of the SR estimates: 0.002
    sr = sr_annual / math.sqrt(250)             # 0.158114
    # SR0 = sqrt(0.002) * ((1 - g) * Z(0.99) + g * Z(1 - 1/(100 e)))
    #     = 0.0447214 * (0.4227844 * 2.3263479 + 0.5772157 * 2.6812...) = 0.1132 (the paper's value)
    z1, z2 = norm.ppf(1 - 1 / n), norm.ppf(1 - 1 / (n * math.e))
    assert z1 == pytest.approx(2.3263479, abs=1e-6)
    hand_sr0 = math.sqrt(var) * ((1 - EULER_GAMMA) * z1 + EULER_GAMMA * z2)
    assert expected_max_sharpe(n, var) == pytest.approx(hand_sr0, rel=1e-12)
    assert hand_sr0 == pytest.approx(0.1132, abs=5e-5)
    # DSR = Phi((0.158114 - 0.1132) * sqrt(1249) / sqrt(1 + 3 * 0.158114 + 9/4 * 0.158114^2)) = 0.9004
    z = (sr - hand_sr0) * math.sqrt(t - 1) / math.sqrt(1 - skew * sr + (kurt - 1) / 4 * sr**2)
    assert deflated_sharpe_ratio(sr, n, var, t, skew, kurt) == pytest.approx(norm.cdf(z), rel=1e-12)
    assert deflated_sharpe_ratio(sr, n, var, t, skew, kurt) == pytest.approx(0.9004, abs=5e-4)


def test_one_trial_is_not_deflated_and_psr_of_normal_returns_is_plain():
    assert expected_max_sharpe(1, 0.3) == 0.0
    # normal returns (skew 0, kurtosis 3): PSR = Phi(SR * sqrt(T - 1) / sqrt(1 + SR^2 / 2))
    assert probabilistic_sharpe_ratio(0.1, 0.0, 101, 0.0, 3.0) == pytest.approx(
        norm.cdf(0.1 * 10 / math.sqrt(1 + 0.01 / 2)), rel=1e-12)


def test_more_trials_deflate_more():
    values = [deflated_sharpe_ratio(0.1, n, 0.001, 500, 0.0, 3.0) for n in (2, 10, 100, 1000)]
    assert values == sorted(values, reverse=True) and values[0] > values[-1]


def test_dsr_report_uses_the_trials_and_the_selected_returns():
    rng = np.random.default_rng(1)
    best = rng.normal(0.001, 0.01, 400)
    trials = np.array([0.05, 0.02, -0.01, 0.03, np.nan])   # the NaN trial (no variation) counts as a trial
    report = dsr_report(best, trials, annual=252.0)
    assert report["trials"] == 5 and report["observations"] == 400
    assert report["trial_sharpe_variance"] == pytest.approx(np.var([0.05, 0.02, -0.01, 0.03], ddof=1))
    assert report["sharpe_per_period"] == pytest.approx(per_period_sharpe(best))
    assert report["sharpe_annualised"] == pytest.approx(per_period_sharpe(best) * math.sqrt(252))
    assert 0.0 <= report["deflated_sharpe_ratio"] <= 1.0


def test_pbo_is_one_when_the_in_sample_winner_always_loses_out_of_sample():
    # two blocks of two periods; A wins the first half and loses the second, B the opposite:
    # both CSCV splits pick the loser -> PBO = 1 (by hand: rank 1 of 2, logit(1/3) < 0)
    a = [0.02, 0.01, -0.01, -0.02]
    b = [-0.01, -0.02, 0.02, 0.01]
    result = pbo_cscv(np.column_stack([a, b]), blocks=2)
    assert result["splits"] == 2 and result["pbo"] == 1.0


def test_pbo_is_zero_when_one_strategy_dominates_everywhere():
    rng = np.random.default_rng(2)
    noise = rng.normal(0, 0.01, (64, 5))
    good = rng.normal(0.05, 0.01, 64)       # far better in every block
    result = pbo_cscv(np.column_stack([noise, good]), blocks=8)
    assert result["splits"] == 70 and result["pbo"] == 0.0


def test_pbo_of_pure_noise_is_one_half_on_average():
    # one noise sample can land anywhere (its splits share the data); the mean over samples is 1/2
    values = [pbo_cscv(np.random.default_rng(seed).normal(0, 0.01, (160, 20)), blocks=10)["pbo"]
              for seed in range(30)]
    assert 0.4 < float(np.mean(values)) < 0.6


def test_pbo_needs_two_trials_and_enough_periods():
    assert pbo_cscv(np.zeros((100, 1)))["pbo"] is None
    assert pbo_cscv(np.zeros((3, 4)))["pbo"] is None
