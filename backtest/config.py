"""Backtest settings, validated: a bad value is refused with its field named."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from engine.amounts import Amount
from engine.errors import ConfigError


FRACTION_SIZING_HELP = ("an equity fraction on margin: margin puts fraction x equity up as margin (backtesting.py; "
                        "leverage-fold exposure), notional buys fraction x equity of exposure (as MT5 and ccxt "
                        "USD-M bots size live)")


class InstrumentSpec(BaseModel):
    """One symbol's contract as a broker states it (an instruments YAML entry): grid, contract
    size in units per lot, margin (leverage, a margin rate, or a fixed margin per lot, as futures),
    commission per lot and swap per lot per night (account currency). Futures are the same model:
    contract_size is the multiplier, margin_per_lot the exchange's margin per contract."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tick: Amount | None = Field(None, gt=0, description="price increment")
    lot_step: Amount | None = Field(None, gt=0, description="quantity increment, in lots")
    min_qty: Amount | None = Field(None, ge=0)
    contract_size: Amount = Field(Decimal(1), gt=0, description="units per lot (100,000 for FX majors)")
    quote_currency: str | None = Field(None, min_length=1, max_length=16)
    base_currency: str | None = Field(None, min_length=1, max_length=16)
    currency_increment: Amount | None = Field(None, gt=0)
    leverage: Amount | None = Field(None, gt=0)
    margin_rate: Amount | None = Field(None, gt=0, le=1, description="initial margin as a fraction of notional")
    margin_per_lot: Amount | None = Field(None, ge=0, description="fixed margin per lot (futures)")
    commission_per_lot: Amount = Field(Decimal(0), ge=0)
    swap_long: Amount = Decimal(0)
    swap_short: Amount = Decimal(0)
    fraction_sizing: Literal["margin", "notional"] | None = Field(None, description=FRACTION_SIZING_HELP)

    @field_validator("contract_size")
    @classmethod
    def _whole_units(cls, value: Decimal) -> Decimal:
        if value != value.to_integral_value():
            raise ValueError(f"must be a whole number of units per lot, got {value}")
        return value


def load_instrument_specs(path: Path) -> dict[str, InstrumentSpec]:
    """An instruments YAML: `SYMBOL: {contract_size: 100000, tick: 0.00001, leverage: 30, ...}`.
    A bad entry is a ConfigError naming `instruments.SYMBOL.field` (never the file's contents)."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        raise ConfigError("instruments", "cannot read the instruments file as YAML") from None
    if not isinstance(data, dict):
        raise ConfigError("instruments", "must map each symbol to its spec")
    specs: dict[str, InstrumentSpec] = {}
    for symbol, values in data.items():
        if not isinstance(values, dict):
            raise ConfigError(f"instruments.{symbol}", "must be a mapping of spec fields")
        try:
            specs[str(symbol)] = InstrumentSpec(**{k: (str(v) if isinstance(v, float) else v)
                                                   for k, v in values.items()})
        except ValidationError as exc:
            err = exc.errors()[0]
            raise ConfigError(".".join(["instruments", str(symbol), *(str(p) for p in err["loc"])]),
                              err["msg"]) from None
    return specs


class BacktestConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    cash: Amount = Field(Decimal(10_000), gt=0, description="starting cash in the quote currency")
    commission: Amount = Field(Decimal(0), ge=0, lt=1, description="fraction of notional per fill (0.002 = 0.2%)")
    commission_per_order: Amount = Field(Decimal(0), ge=0, description="fixed fee per order")
    min_fee: Amount = Field(Decimal(0), ge=0, description="minimum fee per order (0: none)")
    slippage_bps: Amount = Field(Decimal(0), ge=0, lt=10_000, description="slippage against the trader, bps")
    symbol: str = Field("ASSET", min_length=1)
    price_increment: Amount | None = Field(None, gt=0, description="tick size; inferred from the data if unset")
    size_increment: Amount | None = Field(None, gt=0, description="lot step; 1 for whole units, 1e-6 fractional")
    min_qty: Amount = Field(Decimal(0), ge=0)
    # the account currency's smallest amount (fees are booked on it): when not given, it follows
    # the account currency (instrument spec, else CURRENCY_INCREMENTS: 0.01 USD, 1 JPY, 1e-8 USDT)
    currency_increment: Amount = Field(Decimal("0.01"), gt=0)
    path: Literal["auto", "fast", "event"] = "auto"
    bot_id: str = Field("backtest", min_length=1)
    # margin (issue 14): the instrument spec of the symbol traded, and what the command line overrides
    instrument: InstrumentSpec | None = None
    leverage: Amount | None = Field(None, gt=0, description="trade on margin: margin = notional / leverage")
    margin: Amount | None = Field(None, gt=0, le=1, description="trade on margin: margin = notional * this")
    stop_out_level: Amount = Field(Decimal("0.5"), ge=0,
                                    description="margin level (equity / margin) that closes positions")
    account_currency: str | None = Field(None, min_length=1, max_length=16, description="default: the quote currency")
    fraction_sizing: Literal["margin", "notional"] | None = Field(None, description=FRACTION_SIZING_HELP + " "
                                                                  "(default: the instrument spec's, else margin)")


def make_config(**values: Any) -> BacktestConfig:
    """BacktestConfig from user values, or ConfigError naming the first bad field."""
    try:
        return BacktestConfig(**{k: v for k, v in values.items() if v is not None})
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ConfigError(".".join(str(p) for p in err["loc"]) or "config", err["msg"]) from None
