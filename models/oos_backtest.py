"""The trading result of a model's out-of-sample signal, through the backtester.

Accuracy and AUC say whether a model ranks bars; a trader needs to know whether its signal makes
money after costs. The walk-forward predictions (each made by a model that never saw its bar's
label) go through the same SignalRule the ml_signal strategy uses, and the resulting directions
and sizes run on the backtester's fast path over the out-of-sample bars: the figures are those
a trader would have had running the retrained-every-fold model, not the final model's in-sample
flattery.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from backtest.config import BacktestConfig
from backtest.metrics import compute_stats
from backtest.result import BacktestResult
from backtest.runner import run_backtest
from models.signals import MICRO, SignalRule
from strategies.base import DirectionalParams, Strategy


def probability_columns(proba: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """P(up) and P(down) columns, zero for a class the model does not have."""
    zero = np.zeros(len(proba))
    p_up = proba[1.0].to_numpy(dtype=np.float64) if 1.0 in proba.columns else zero
    p_down = proba[-1.0].to_numpy(dtype=np.float64) if -1.0 in proba.columns else zero
    return p_up, p_down


def signal_backtest(bars: pd.DataFrame, oos_proba: pd.DataFrame, rule: SignalRule,
                    config: BacktestConfig) -> tuple[BacktestResult, dict[str, Any]]:
    """Backtest the rule over the out-of-sample bars; returns the result and its statistics."""
    frame = bars.loc[oos_proba.index[0]:oos_proba.index[-1]]
    proba = oos_proba.reindex(frame.index)  # walk-forward test windows are contiguous: no gaps
    p_up, p_down = probability_columns(proba)
    target = rule.directions(p_up, p_down)
    confidence = np.where(target == 1.0, p_up, np.where(target == -1.0, p_down, np.maximum(p_up, p_down)))
    micro = rule.micro_fractions(confidence)
    sizes = micro / MICRO

    class _OutOfSample(Strategy):
        name: ClassVar[str] = "oos_signal"
        Params = DirectionalParams

        def signals(self) -> np.ndarray:
            return target

        def sizes(self) -> np.ndarray:
            return sizes

        def next(self) -> None:  # the event path, should the fast path decline the run
            wanted = target[self.i]
            if wanted == wanted:
                self.go(int(wanted), Decimal(int(micro[self.i])).scaleb(-6))

    mode = "long_short" if rule.allow_short else "long_only"
    result = run_backtest(frame, _OutOfSample, {"mode": mode, "units": "fractional"}, config)
    return result, compute_stats(result)
