"""Built-in strategies, looked up by name from the CLI and bot configs."""

from __future__ import annotations

from engine.errors import UnknownStrategyError
from strategies.base import Strategy, StrategyParams
from strategies.ml_signal import MlSignal
from strategies.rsi_reversion import RsiReversion
from strategies.sma_cross import SmaCross

STRATEGIES: dict[str, type[Strategy]] = {cls.name: cls for cls in (SmaCross, RsiReversion, MlSignal)}


def get_strategy(name: str) -> type[Strategy]:
    try:
        return STRATEGIES[name]
    except KeyError:
        raise UnknownStrategyError(name, list(STRATEGIES)) from None


__all__ = ["STRATEGIES", "Strategy", "StrategyParams", "get_strategy"]
