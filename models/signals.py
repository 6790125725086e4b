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

import time
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any, Protocol

import numpy as np
from sqlalchemy import Engine, insert, select

from engine.store.models import BotRow, SignalRow

SIGNALS = SignalRow.__table__
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


@dataclass(frozen=True, slots=True)
class Signal:
    bot_id: str
    symbol: str
    ts: int                      # ns, the close of the bar it was decided on
    direction: int               # +1 long, -1 short, 0 flat
    confidence: Decimal          # probability of the direction taken (of the larger side for flat)
    target_weight: Decimal       # equity fraction of an entry, 0 for flat
    p_up: float
    p_down: float
    price: float                 # the bar's close
    model_id: int
    model_version: int

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["confidence"], d["target_weight"] = str(self.confidence), str(self.target_weight)
        return d


def emitted(directions: np.ndarray) -> np.ndarray:
    """Row positions where the wanted direction changes from the last one (NaN rows ignored)."""
    rows = np.flatnonzero(~np.isnan(directions))
    if len(rows) == 0:
        return rows
    values = directions[rows]
    keep = np.ones(len(rows), dtype=bool)
    keep[1:] = values[1:] != values[:-1]
    return rows[keep]


def to_confidence(p: float) -> Decimal:
    """Probabilities are kept to six decimals: enough to compare, and exact in the store."""
    return Decimal(int(p * MICRO)).scaleb(-6) if p == p else Decimal(0)


class SignalSink(Protocol):
    def publish(self, signal: Signal) -> None: ...


class MemorySignals:
    """Signals kept in a list: backtests, tests."""

    def __init__(self) -> None:
        self.signals: list[Signal] = []

    def publish(self, signal: Signal) -> None:
        self.signals.append(signal)


class SqlSignals:
    """Signals written to the store's `signals` table, one committed row each: a subscriber may
    act on a signal as soon as it is published, so it must survive a crash from then on."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def ensure_bot(self, bot_id: str, strategy: str) -> None:
        with self.engine.begin() as connection:
            if connection.execute(select(BotRow.id).where(BotRow.id == bot_id)).first() is None:
                connection.execute(insert(BotRow.__table__).values(id=bot_id, name=bot_id, strategy=strategy))

    def publish(self, signal: Signal) -> None:
        with self.engine.begin() as connection:
            connection.execute(insert(SIGNALS).values(
                bot_id=signal.bot_id, symbol=signal.symbol, ts=signal.ts, direction=signal.direction,
                target_weight=signal.target_weight, confidence=signal.confidence,
                model_id=str(signal.model_id), model_version=str(signal.model_version),
                payload={"p_up": signal.p_up, "p_down": signal.p_down, "price": signal.price},
                published_ns=time.time_ns()))  # the wall clock: plan delays count from here

    def load(self, bot_id: str) -> list[Signal]:
        with self.engine.connect() as connection:
            rows = connection.execute(select(SIGNALS).where(SIGNALS.c.bot_id == bot_id)
                                      .order_by(SIGNALS.c.ts, SIGNALS.c.id)).all()
        return [Signal(r.bot_id, r.symbol, r.ts, r.direction, r.confidence, r.target_weight, r.payload["p_up"],
                       r.payload["p_down"], r.payload["price"], int(r.model_id), int(r.model_version))
                for r in rows]
