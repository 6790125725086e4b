"""USD-M futures (linear perpetuals, e.g. binanceusdm's BTC/USDT:USDT) on the ccxt adapter: the
account settings (leverage, margin mode), the venue's positions and the funding it charges.

Why a module of its own: a futures position is the venue's (positionRisk), not a sum of the bot's
fills as on spot; the account is a margin wallet (wallet balance + unrealized P&L), not coins; and
funding moves cash without being a trade. The adapter branches here when its markets are contracts.

Every function here takes ccxt's parsed structures (dicts); amounts come from the venue's own
decimal strings in `info` where ccxt would hand over a float, so they stay exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from brokers.base import VenuePosition
from engine.charges import AccountCharge, ChargeKind
from engine.errors import ConfigError

NS_PER_MS = 1_000_000
MARGIN_MODES = ("isolated", "cross")
MAX_LEVERAGE = 125   # binance's ceiling for any USD-M symbol (ccxt refuses beyond it too)


@dataclass(frozen=True)
class FuturesSettings:
    """What the account config asks of every futures market the adapter trades: None leaves the
    venue's current setting as it is (and the instruments carry the venue's)."""

    leverage: int | None = None
    margin_mode: str | None = None      # "isolated" or "cross"

    @property
    def given(self) -> bool:
        return self.leverage is not None or self.margin_mode is not None


def parse_settings(leverage: Any = None, margin_mode: Any = None, prefix: str = "") -> FuturesSettings:
    """The account's `leverage` (a whole number, 1 to 125) and `margin_mode` ("isolated" or
    "cross"; binance's ISOLATED / CROSSED are taken too), checked before anything is sent. A bad
    value is a ConfigError naming the field (`<prefix>leverage`, `<prefix>margin_mode`); the
    message does not repeat the value (an account's fields may hold a secret typed in the wrong
    one)."""
    lev: int | None = None
    if leverage is not None and leverage != "":
        if isinstance(leverage, bool):
            raise ConfigError(f"{prefix}leverage", f"must be a whole number from 1 to {MAX_LEVERAGE}")
        try:
            value = Decimal(str(leverage).strip())
        except InvalidOperation:
            raise ConfigError(f"{prefix}leverage", f"must be a whole number from 1 to {MAX_LEVERAGE}") from None
        if not value.is_finite() or value != value.to_integral_value() or not 1 <= value <= MAX_LEVERAGE:
            raise ConfigError(f"{prefix}leverage", f"must be a whole number from 1 to {MAX_LEVERAGE}")
        lev = int(value)
    mode: str | None = None
    if margin_mode is not None and margin_mode != "":
        text = str(margin_mode).strip().lower()
        text = {"crossed": "cross"}.get(text, text)
        if text not in MARGIN_MODES:
            raise ConfigError(f"{prefix}margin_mode", "must be 'isolated' or 'cross'")
        mode = text
    return FuturesSettings(lev, mode)


def is_futures_market(market: dict[str, Any]) -> bool:
    """A linear contract (USD-M perpetual or delivery future): the markets this module covers."""
    return bool(market.get("contract")) and bool(market.get("linear"))


def _dec(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value))


# -- positions ------------------------------------------------------------------------------------
def positions_from_venue(raws: list[dict[str, Any]], symbols: set[str]) -> list[VenuePosition]:
    """The venue's positions (ccxt's fetch_positions over binance's positionRisk) as signed
    VenuePositions, one per symbol of `symbols`, flat ones left out. The amount is the venue's
    `positionAmt` string (negative: short); in hedge mode the LONG and SHORT legs net to one
    number (the engine books one position per symbol). The average price is the venue's entry
    price of the net position (of the larger leg in hedge mode)."""
    net: dict[str, Decimal] = {}
    entry: dict[str, tuple[Decimal, Decimal | None]] = {}
    for raw in raws:
        symbol = raw.get("symbol")
        if symbol not in symbols:
            continue
        info = raw.get("info") or {}
        amount = _dec(info.get("positionAmt"))
        if amount is None:  # not binance's shape: ccxt's unified contracts and side
            contracts = _dec(raw.get("contracts")) or Decimal(0)
            size = _dec(raw.get("contractSize")) or Decimal(1)
            amount = contracts * size * (-1 if raw.get("side") == "short" else 1)
        if not amount:
            continue
        net[symbol] = net.get(symbol, Decimal(0)) + amount
        price = _dec(info.get("entryPrice")) or _dec(raw.get("entryPrice"))
        if abs(amount) > entry.get(symbol, (Decimal(0), None))[0]:
            entry[symbol] = (abs(amount), price)
    return [VenuePosition(symbol, qty, entry[symbol][1]) for symbol, qty in sorted(net.items()) if qty]


# -- account ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MarginAccount:
    """The futures wallet of one settle asset as the venue reports it (binance v3 account)."""

    asset: str
    wallet: Decimal        # what realized P&L, fees and funding moved: the engine's cash
    margin_balance: Decimal  # wallet + unrealized P&L: the engine's equity
    available: Decimal     # what new positions' margin can come from


def margin_account(balance: dict[str, Any], asset: str) -> MarginAccount:
    """The settle asset's entry of ccxt's fetch_balance on a futures account, from the venue's own
    strings (`info.assets[]`: walletBalance, marginBalance, availableBalance); an asset the venue
    does not list is an empty wallet."""
    for entry in (balance.get("info") or {}).get("assets") or []:
        if entry.get("asset") == asset:
            wallet = _dec(entry.get("walletBalance")) or Decimal(0)
            return MarginAccount(asset, wallet, _dec(entry.get("marginBalance")) or wallet,
                                 _dec(entry.get("availableBalance")) or Decimal(0))
    unified = balance.get(asset) or {}
    total = _dec(unified.get("total")) or Decimal(0)
    return MarginAccount(asset, total, total, _dec(unified.get("free")) or Decimal(0))


# -- funding ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FundingFee:
    """One funding payment on a perpetual position: not a trade (no order, no quantity), a cash
    movement of the account. `amount` is signed as the venue books it: negative paid, positive
    received, in `asset` (the settle currency)."""

    funding_id: str        # the venue's transaction id (binance tranId), unique per account
    symbol: str
    asset: str
    amount: Decimal
    ts: int                # ns UTC


def funding_from_income(raw: dict[str, Any]) -> FundingFee:
    """ccxt's funding history entry (binance income, incomeType FUNDING_FEE) as a FundingFee; the
    amount is the venue's `income` string, exactly (ccxt's `amount` is a float)."""
    info = raw.get("info") or {}
    amount = _dec(info.get("income"))
    if amount is None:
        amount = _dec(raw.get("amount")) or Decimal(0)
    ts = raw.get("timestamp") or int(info.get("time") or 0)
    return FundingFee(str(raw.get("id") or info.get("tranId")), str(raw.get("symbol")),
                      str(raw.get("code") or info.get("asset")), amount, int(ts) * NS_PER_MS)


def funding_charge(fee: FundingFee) -> AccountCharge:
    """A funding payment as the engine's account-level charge (engine.charges), booked once by
    its tranId; the amount keeps the venue's sign (negative: paid) and digits."""
    return AccountCharge(f"funding:{fee.funding_id}", ChargeKind.FUNDING, fee.symbol, fee.asset, fee.amount, fee.ts)
