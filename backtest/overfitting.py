"""How much of a sweep's best result may be luck.

The best of many backtests is biased upwards: try enough parameters on noise and one of them
looks good. Two published corrections, both reported for every sweep:

- Deflated Sharpe ratio (Bailey & Lopez de Prado, "The Deflated Sharpe Ratio", 2014). The
  Sharpe ratio the best of N unskilled trials would reach by chance is

      SR0 = sqrt(V[SR_n]) * ((1 - g) * Z(1 - 1/N) + g * Z(1 - 1/(N e)))     (g: Euler-Mascheroni)

  and the DSR is the probability that the true Sharpe ratio exceeds SR0, given the track record
  of T observations with skewness s and (non-excess) kurtosis k:

      DSR = Phi((SR - SR0) * sqrt(T - 1) / sqrt(1 - s * SR + (k - 1) / 4 * SR^2))

  All Sharpe ratios here are per period (not annualised), as in the paper. N counts every trial
  evaluated; correlated trials make the effective N smaller, so SR0 is conservative.
- Probability of backtest overfitting by combinatorially symmetric cross-validation (Bailey,
  Borwein, Lopez de Prado & Zhu, "The Probability of Backtest Overfitting", 2015). Cut the
  T x N matrix of per-period returns into S blocks; for every way of choosing S/2 blocks as
  in-sample, pick the in-sample best and see where it ranks out of sample. PBO is the share of
  splits where it ranks in the bottom half (logit of its relative rank <= 0).
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
from scipy import stats as sstats

EULER_GAMMA = 0.5772156649015329


def expected_max_sharpe(n_trials: int, sharpe_variance: float) -> float:
    """SR0: the expected maximum per-period Sharpe ratio of `n_trials` trials with true Sharpe 0."""
    if n_trials < 2 or sharpe_variance <= 0:
        return 0.0
    z = sstats.norm.ppf
    return math.sqrt(sharpe_variance) * ((1 - EULER_GAMMA) * z(1 - 1 / n_trials)
                                         + EULER_GAMMA * z(1 - 1 / (n_trials * math.e)))


def probabilistic_sharpe_ratio(sharpe: float, benchmark: float, n_obs: int, skew: float, kurtosis: float) -> float:
    """P(true per-period Sharpe > benchmark) for an observed `sharpe` over `n_obs` returns."""
    if n_obs < 2:
        return math.nan
    variance = 1 - skew * sharpe + (kurtosis - 1) / 4 * sharpe**2
    if variance <= 0:
        return math.nan
    return float(sstats.norm.cdf((sharpe - benchmark) * math.sqrt(n_obs - 1) / math.sqrt(variance)))


def deflated_sharpe_ratio(sharpe: float, n_trials: int, sharpe_variance: float, n_obs: int, skew: float,
                          kurtosis: float) -> float:
    """The DSR: the probabilistic Sharpe ratio against SR0 instead of against zero."""
    return probabilistic_sharpe_ratio(sharpe, expected_max_sharpe(n_trials, sharpe_variance), n_obs, skew, kurtosis)


def per_period_sharpe(returns: np.ndarray) -> float:
    """mean / std (ddof=1); NaN when undefined (fewer than two returns, or no variation)."""
    if len(returns) < 2:
        return math.nan
    std = float(np.std(returns, ddof=1))
    return float(np.mean(returns)) / std if std > 0 else math.nan


def dsr_report(best_returns: np.ndarray, trial_sharpes: np.ndarray, annual: float) -> dict[str, Any]:
    """The DSR of the selected trial, with the figures that went into it (Sharpe ratios both per
    period and annualised with `annual` periods per year)."""
    n_trials = int(len(trial_sharpes))
    finite = trial_sharpes[np.isfinite(trial_sharpes)]
    variance = float(np.var(finite, ddof=1)) if len(finite) > 1 else 0.0
    sharpe = per_period_sharpe(best_returns)
    n_obs = int(len(best_returns))
    skew = float(sstats.skew(best_returns)) if n_obs > 2 and np.std(best_returns) > 0 else 0.0
    kurt = float(sstats.kurtosis(best_returns, fisher=False)) if n_obs > 3 and np.std(best_returns) > 0 else 3.0
    sr0 = expected_max_sharpe(n_trials, variance)
    dsr = deflated_sharpe_ratio(sharpe, n_trials, variance, n_obs, skew, kurt) if math.isfinite(sharpe) else math.nan
    root = math.sqrt(annual)
    return {
        "deflated_sharpe_ratio": _finite(dsr), "sharpe_per_period": _finite(sharpe),
        "sharpe_annualised": _finite(sharpe * root), "expected_max_sharpe_per_period": sr0,
        "expected_max_sharpe_annualised": sr0 * root, "trials": n_trials, "trial_sharpe_variance": variance,
        "observations": n_obs, "skew": skew, "kurtosis": kurt,
    }


def pbo_cscv(returns: np.ndarray, blocks: int = 16, chunk: int = 256) -> dict[str, Any]:
    """Probability of backtest overfitting of a T x N matrix of per-period returns (rows: periods,
    columns: trials). `blocks` is reduced to the largest even number giving each block 2 rows."""
    t, n = returns.shape
    s = min(blocks, t // 2)
    s -= s % 2
    if n < 2 or s < 2:
        return {"pbo": None, "blocks": s, "splits": 0,
                "note": "needs at least 2 trials and 4 periods"}
    parts = np.array_split(np.arange(t), s)
    block_sum = np.stack([returns[p].sum(axis=0) for p in parts])          # S x N
    block_sq = np.stack([(returns[p] ** 2).sum(axis=0) for p in parts])    # S x N
    block_len = np.array([len(p) for p in parts], dtype=np.float64)        # S
    choices = np.array(list(itertools.combinations(range(s), s // 2)))
    mask = np.zeros((len(choices), s))
    mask[np.arange(len(choices))[:, None], choices] = 1.0
    logits = []
    for lo in range(0, len(mask), chunk):
        is_mask = mask[lo:lo + chunk]
        is_sr = _sharpe_from_sums(is_mask @ block_sum, is_mask @ block_sq, is_mask @ block_len)
        oos_mask = 1.0 - is_mask
        oos_sr = _sharpe_from_sums(oos_mask @ block_sum, oos_mask @ block_sq, oos_mask @ block_len)
        best = np.argmax(is_sr, axis=1)
        chosen = oos_sr[np.arange(len(best)), best]
        rank = (oos_sr < chosen[:, None]).sum(axis=1) + 1   # 1 = worst out of sample
        omega = rank / (n + 1)
        logits.append(np.log(omega / (1 - omega)))
    lam = np.concatenate(logits)
    return {"pbo": float(np.mean(lam <= 0)), "blocks": s, "splits": int(len(lam)),
            "logit_median": float(np.median(lam))}


def _sharpe_from_sums(total: np.ndarray, squares: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Per-period Sharpe (ddof=1) of each column from sums; undefined (flat) counts as 0."""
    count = count[:, None]
    mean = total / count
    variance = (squares - count * mean**2) / np.maximum(count - 1, 1)
    std = np.sqrt(np.maximum(variance, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        sr = np.where(std > 1e-15, mean / std, 0.0)
    return sr


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
