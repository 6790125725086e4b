"""Backtest settings, validated: a bad value is refused with its field named."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from engine.errors import ConfigError


class BacktestConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    cash: Decimal = Field(Decimal(10_000), gt=0, description="starting cash in the quote currency")
    commission: Decimal = Field(Decimal(0), ge=0, lt=1, description="fraction of notional per fill (0.002 = 0.2%)")
    commission_per_order: Decimal = Field(Decimal(0), ge=0, description="fixed fee per order")
    slippage_bps: Decimal = Field(Decimal(0), ge=0, lt=10_000, description="slippage against the trader, bps")
    symbol: str = Field("ASSET", min_length=1)
    price_increment: Decimal | None = Field(None, gt=0, description="tick size; inferred from the data if unset")
    size_increment: Decimal | None = Field(None, gt=0, description="lot step; 1 for whole units, 1e-6 fractional")
    min_qty: Decimal = Field(Decimal(0), ge=0)
    currency_increment: Decimal = Field(Decimal("0.01"), gt=0)
    path: Literal["auto", "fast", "event"] = "auto"
    bot_id: str = Field("backtest", min_length=1)


def make_config(**values: Any) -> BacktestConfig:
    """BacktestConfig from user values, or ConfigError naming the first bad field."""
    try:
        return BacktestConfig(**{k: v for k, v in values.items() if v is not None})
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ConfigError(".".join(str(p) for p in err["loc"]) or "config", err["msg"]) from None
