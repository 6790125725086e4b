"""From class probabilities to trading signals, and where signals are kept.

The rule is stateless, bar by bar, so batch (backtest) and incremental (live) inference give the
same signals by construction once they give the same probabilities:

  P(up) >= enter            -> long   (confidence P(up))
  P(down) >= enter          -> short  (long_only: flat), confidence P(down)
  max(P(up), P(down)) < exit -> flat  (the model no longer sees an edge either way)
  otherwise                 -> no change

Sizing from confidence: the entry's equity fraction is `size * (confidence - enter) / (1 - enter)`
clipped to [min_fraction, 1] x size, computed in integer millionths in one place so both paths
send the same quantity. A signal is *emitted* (stored, sent to subscribers) when the wanted
direction differs from the last emitted one; bars that merely confirm it are not signals.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import numpy as np

from engine.signals import MemorySignals, Signal, SignalSink, emitted
from engine.store.signals import SIGNALS, SqlSignals

__all__ = ["MICRO", "SIGNALS", "MemorySignals", "Signal", "SignalRule", "SignalSink", "SqlSignals", "emitted",
           "to_confidence"]

MICRO = 1_000_000


@dataclass(frozen=True, slots=True)
class SignalRule:
    enter: float = 0.55
    exit: float = 0.45
    allow_short: bool = False
    sizing: str = "confidence"      # or "fixed"
    size: float = 1.0
    min_fraction: float = 0.1

    def directions(self, p_up: np.ndarray, p_down: np.ndarray) -> np.ndarray:
        """Per row: +1, -1, 0, or NaN for no change (see the module docstring)."""
        out = np.full(len(p_up), np.nan)
        out[np.maximum(p_up, p_down) < self.exit] = 0.0
        short = p_down >= self.enter
        out[short] = -1.0 if self.allow_short else 0.0
        out[(p_up >= self.enter) & (p_up >= p_down)] = 1.0
        out[np.isnan(p_up) | np.isnan(p_down)] = np.nan  # no prediction yet: nothing to say
        return out

    def micro_fractions(self, confidence: np.ndarray) -> np.ndarray:
        """Equity fraction per row in millionths (int64), floor-rounded."""
        if self.sizing == "fixed":
            scaled = np.full(len(confidence), self.size)
        else:
            edge = (np.nan_to_num(confidence) - self.enter) / (1.0 - self.enter)
            scaled = self.size * np.clip(edge, self.min_fraction, 1.0)
        return np.floor(scaled * MICRO).astype(np.int64)


def to_confidence(p: float) -> Decimal:
    """Probabilities are kept to six decimals: enough to compare, and exact in the store."""
    return Decimal(int(p * MICRO)).scaleb(-6) if p == p else Decimal(0)
