"""Raw integer books -> the float tables reports read. One builder for both paths, so parity
tests compare like with like."""

from __future__ import annotations

import numpy as np
import pandas as pd

from backtest.result import TRADE_COLUMNS
from engine.money import Scales

ORDER_STATES = ("FILLED", "REJECTED", "CANCELED", "DENIED")


def _scaled(raw: np.ndarray, dp: int) -> np.ndarray:
    return raw.astype(np.float64) / 10.0**dp


def trade_returns(t: dict[str, np.ndarray], scales: Scales) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each trade's size, entry price, pnl and return in % of its entry notional, as floats from the
    raw arrays: the one formula behind the trades table and the sweeps' statistics (which skip the
    table), so their numbers cannot drift apart."""
    size = _scaled(t["qty"], scales.qty_dp)
    entry_price = _scaled(t["entry_price"], scales.price_dp)
    pnl = _scaled(t["pnl"], scales.cash_dp)
    notional = entry_price * size * scales.multiplier
    with np.errstate(divide="ignore", invalid="ignore"):
        return_pct = np.where(notional > 0, pnl / notional * 100.0, 0.0)
    return size, entry_price, pnl, return_pct


def trades_frame(t: dict[str, np.ndarray], times: pd.DatetimeIndex, scales: Scales) -> pd.DataFrame:
    """Trades from raw arrays: direction, qty, entry_price, exit_price, entry_bar, exit_bar, fees, pnl."""
    size, entry_price, pnl, return_pct = trade_returns(t, scales)
    frame = pd.DataFrame({
        "entry_time": times[t["entry_bar"]],
        "exit_time": times[t["exit_bar"]],
        "entry_bar": t["entry_bar"].astype(np.int64),
        "exit_bar": t["exit_bar"].astype(np.int64),
        "side": np.where(t["direction"] > 0, "long", "short"),
        "size": size,
        "entry_price": entry_price,
        "exit_price": _scaled(t["exit_price"], scales.price_dp),
        "fees": _scaled(t["fees"], scales.cash_dp),
        "pnl": pnl,
        "return_pct": return_pct,
    })
    return frame[TRADE_COLUMNS]


def orders_frame(o: dict[str, np.ndarray], times: pd.DatetimeIndex, scales: Scales, bot_id: str,
                 fractions: list[str | None], reasons: list[str | None]) -> pd.DataFrame:
    """Orders from raw arrays: bar, side, tag, state, qty (-1 = sized at fill), price, fee, fill_bar;
    client order ids are the bot's sequence from 1, as the OMS numbers them."""
    n = len(o["bar"])
    filled = o["state"] == 0
    qty = np.where(o["qty"] >= 0, _scaled(o["qty"], scales.qty_dp), np.nan)
    return pd.DataFrame({
        "client_order_id": [f"{bot_id}-{seq:08d}" for seq in range(1, n + 1)],
        "time": times[o["bar"]],
        "side": np.where(o["side"] > 0, "BUY", "SELL"),
        "type": "MARKET",
        "tag": np.where(o["tag"] == 1, "close", "open"),
        "state": np.asarray(ORDER_STATES, dtype=object)[o["state"]],
        "qty": qty,
        "equity_fraction": fractions,
        "filled_qty": np.where(filled, qty, 0.0),
        "avg_fill_price": np.where(filled, _scaled(o["price"], scales.price_dp), np.nan),
        "fee": np.where(filled, _scaled(o["fee"], scales.cash_dp), 0.0),
        "fill_time": times[np.where(filled, o["fill_bar"], o["bar"])].where(filled),
        "reason": reasons,
    })
