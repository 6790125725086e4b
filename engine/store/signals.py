"""The store's `signals` table as a SignalSink (and the signals of a bot read back)."""

from __future__ import annotations

import time

from sqlalchemy import Engine, insert, select

from engine.signals import Signal
from engine.store.models import BotRow, SignalRow

SIGNALS = SignalRow.__table__


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
