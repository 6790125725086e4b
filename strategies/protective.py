"""Protective orders for the Strategy API (issue 17): a stop-loss, a take-profit and a trailing
stop attached to an entry, checked and put on the price grid before anything is sent.

Spelling, in `buy/sell/go/order`:
- `sl=`, `tp=`: prices. `sl_distance=`, `tp_distance=`: distances in price units from the entry's
  reference price (its limit price, else its stop price, else the last close the strategy saw),
  turned into prices when the order is made: a market entry that fills elsewhere keeps the prices.
- `trail=`: a trailing stop instead of a fixed one: a distance in price units (`trail=2.5`) or a
  percent of the price as a string (`trail="1.5%"`). It starts at `sl` when given, else at the
  reference price less the trail, and the venue ratchets it from the entry's fill on.

The children are one bracket: each a child of the entry (they work once it fills, sized to what
it filled) and, when there are two, one OCO group named after the entry (one filling cancels the
other). They are good-till-canceled whatever the entry's time in force is: a protection that
expired at the end of a day would leave the position bare. They are not flagged reduce-only: they
are sent while the position is still flat (the entry has not filled), and a pre-trade check that
reads the flag would refuse them then; the venue only lets them work once the entry has filled.

Refused with ConfigError naming the field, nothing sent: a price and a distance for one leg, a
long's stop at or above its reference price (a short's at or below), a take-profit on the wrong
side, a distance or trail of zero or less (or one that rounds to zero ticks), a percent trail of
100 or more, a distance without a reference price, a price that rounds to zero or below.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from engine.errors import ConfigError
from engine.money import Scales, div_round_half_even
from engine.orders import Order, OrderSide, OrderType

PROTECTIVE_TAGS = frozenset({"sl", "tp", "trail"})  # the tags of a bracket's children

Number = Decimal | float | int


@dataclass(frozen=True, slots=True)
class Protection:
    """The checked legs of a bracket, on the price grid."""

    stop: Decimal | None = None             # the stop-loss price (a trailing stop's first level)
    take_profit: Decimal | None = None
    trail_distance: Decimal | None = None
    trail_percent: Decimal | None = None

    @property
    def trailing(self) -> bool:
        return self.trail_distance is not None or self.trail_percent is not None


def _decimal(field: str, value: Number | str) -> Decimal:
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise ConfigError(field, f"must be a number, got {value!r}") from None
    if not number.is_finite():
        raise ConfigError(field, f"must be a finite number, got {value!r}")
    return number


def _on_grid(field: str, value: Decimal, scales: Scales) -> Decimal:
    """Nearest tick, half to even (as order prices are)."""
    raw = div_round_half_even(int(value.scaleb(scales.price_dp).to_integral_value(rounding="ROUND_HALF_EVEN")),
                              scales.price_step) * scales.price_step
    return scales.price(raw)


def _price(field: str, value: Number, scales: Scales) -> Decimal:
    price = _on_grid(field, _decimal(field, value), scales)
    if price <= 0:
        raise ConfigError(field, f"must be a positive price, got {value!r} ({price} on the grid)")
    return price


def _distance(field: str, value: Number, scales: Scales) -> Decimal:
    distance = _decimal(field, value)
    if distance <= 0:
        raise ConfigError(field, f"must be greater than 0, got {value!r}")
    on_grid = _on_grid(field, distance, scales)
    if on_grid <= 0:
        raise ConfigError(field, f"{value!r} is less than one tick ({scales.price(scales.price_step)})")
    return on_grid


def resolve(side: OrderSide, reference: Decimal | None, scales: Scales, *, sl: Number | None = None,
            tp: Number | None = None, sl_distance: Number | None = None, tp_distance: Number | None = None,
            trail: Number | str | None = None) -> Protection | None:
    """The bracket an entry on `side` asks for, checked against `reference` (see the module
    docstring); None when it asks for none."""
    if sl is None and tp is None and sl_distance is None and tp_distance is None and trail is None:
        return None
    if sl is not None and sl_distance is not None:
        raise ConfigError("sl", "give sl (a price) or sl_distance, not both")
    if tp is not None and tp_distance is not None:
        raise ConfigError("tp", "give tp (a price) or tp_distance, not both")
    long = side is OrderSide.BUY
    sign = 1 if long else -1
    word = "long" if long else "short"

    def from_reference(field: str, distance: Decimal, direction: int) -> Decimal:
        if reference is None:
            raise ConfigError(field, "a distance needs a reference price (an entry limit or stop price, or a bar "
                                     "seen): give the price instead")
        price = reference + direction * distance
        if price <= 0:
            raise ConfigError(field, f"{distance} from the reference price {reference} is not a positive price")
        return price

    stop = None if sl is None else _price("sl", sl, scales)
    if sl_distance is not None:
        stop = from_reference("sl_distance", _distance("sl_distance", sl_distance, scales), -sign)
    take = None if tp is None else _price("tp", tp, scales)
    if tp_distance is not None:
        take = from_reference("tp_distance", _distance("tp_distance", tp_distance, scales), sign)
    trail_distance = trail_percent = None
    if trail is not None:
        if isinstance(trail, str) and trail.strip().endswith("%"):
            trail_percent = _decimal("trail", trail.strip()[:-1])
            if not 0 < trail_percent < 100:
                raise ConfigError("trail", f"a percent trail must be above 0% and below 100%, got {trail!r}")
        else:
            trail_distance = _distance("trail", trail, scales)  # type: ignore[arg-type]
        if stop is None:
            if reference is None:
                raise ConfigError("trail", "a trailing stop needs a first level: give sl, or trade after a bar "
                                           "(the last close is the reference price)")
            if trail_distance is not None:
                stop = from_reference("trail", trail_distance, -sign)
            else:
                raw = reference * (100 - sign * trail_percent) / 100  # type: ignore[operator]
                stop = _on_grid("trail", raw, scales)
                if stop <= 0:
                    raise ConfigError("trail", f"{trail!r} from {reference} is not a positive price")
    if reference is not None:
        field = "sl_distance" if sl_distance is not None else "sl" if sl is not None else "trail"
        if stop is not None and (stop >= reference if long else stop <= reference):
            raise ConfigError(field, f"a {word}'s stop-loss must be {'below' if long else 'above'} its entry/reference "
                                     f"price {reference}, got {stop}")
        field = "tp_distance" if tp_distance is not None else "tp"
        if take is not None and (take <= reference if long else take >= reference):
            raise ConfigError(field, f"a {word}'s take-profit must be {'above' if long else 'below'} its "
                                     f"entry/reference price {reference}, got {take}")
    elif stop is not None and take is not None and (stop >= take if long else stop <= take):
        raise ConfigError("sl", f"a {word}'s stop-loss must be {'below' if long else 'above'} its take-profit {take}, "
                                f"got {stop}")
    return Protection(stop, take, trail_distance, trail_percent)


def children(entry: Order, protection: Protection, next_id: object) -> list[Order]:
    """The bracket's orders for `entry` (stop first): children of the entry, one OCO group when
    there are two. `next_id()` gives each its client order id."""
    side = OrderSide.SELL if entry.side is OrderSide.BUY else OrderSide.BUY
    both = protection.stop is not None and protection.take_profit is not None
    group = entry.client_order_id if both else None
    out = []
    if protection.stop is not None:
        out.append(Order(next_id(), entry.bot_id, entry.symbol, side, OrderType.STOP, entry.qty,  # type: ignore[operator]
                         entry.ts_init, stop_price=protection.stop,
                         tag="trail" if protection.trailing else "sl", parent_id=entry.client_order_id,
                         oco_group=group, trail_distance=protection.trail_distance,
                         trail_percent=protection.trail_percent))
    if protection.take_profit is not None:
        out.append(Order(next_id(), entry.bot_id, entry.symbol, side, OrderType.LIMIT, entry.qty,  # type: ignore[operator]
                         entry.ts_init, limit_price=protection.take_profit, tag="tp",
                         parent_id=entry.client_order_id, oco_group=group))
    return out
