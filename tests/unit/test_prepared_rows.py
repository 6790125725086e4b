"""Prepared.row is generated per statement (engine/store/prepared.py: one tuple expression instead
of a loop over the plan). It must give, for every hot statement and any values (None, Decimals of
any exponent, booleans, JSON), the tuple SQLAlchemy itself would bind: the statement's compiled
parameters run through each bind type's own processor. Held here against SQLAlchemy directly,
on random rows; the journal's whole-session differential is tests/unit/test_speed_submit.py."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest
from sqlalchemy import bindparam, insert, update

from engine.store.db import make_engine, upgrade
from engine.store.journal import EVENT_KEYS, FILL_KEYS, ORDER_KEYS, ORDER_UPDATE_KEYS, POINT_KEYS
from engine.store.models import (BotRow, EquityPointRow, FillRow, OrderEventRow, OrderRow,
                                 SignalRow)
from engine.store.prepared import Prepared
from engine.store.signals import SIGNAL_KEYS

ORDERS, EVENTS, FILLS = OrderRow.__table__, OrderEventRow.__table__, FillRow.__table__
POINTS, SIGNALS, BOTS = EquityPointRow.__table__, SignalRow.__table__, BotRow.__table__


def _value(column, rng: random.Random):
    if rng.random() < 0.2 and column.nullable:
        return None
    kind = type(column.type).__name__
    if kind in ("ExactDecimal",):
        return Decimal(rng.randrange(-10**12, 10**12)).scaleb(-rng.randrange(0, 12))
    if kind == "Boolean":
        return rng.random() < 0.5
    if kind in ("Integer", "BigInteger"):
        return rng.randrange(-2**62, 2**62)
    if kind == "JSON":
        return {"p_up": rng.random(), "p_down": None, "price": rng.random() * 2, "n": [1, "x"]}
    return "".join(rng.choice("abcXYZ-_é0") for _ in range(rng.randrange(0, 12)))


def _sqlalchemy_tuple(engine, statement, keys, values) -> tuple:
    """What SQLAlchemy binds for `values`: compiled parameters through each type's bind processor."""
    dialect = engine.dialect
    compiled = statement.compile(dialect=dialect, column_keys=list(keys))
    params = compiled.construct_params(values)
    out = []
    for name in compiled.positiontup:
        processor = compiled.binds[name].type._cached_bind_processor(dialect)
        out.append(processor(params[name]) if processor is not None else params[name])
    return tuple(out)


@pytest.mark.parametrize("case", ["orders", "order_updates", "events", "fills", "points", "signals", "checkpoint"])
def test_a_generated_row_binds_what_sqlalchemy_binds(tmp_path, case):
    url = f"sqlite:///{tmp_path / 's.db'}"
    upgrade(url)
    engine = make_engine(url)
    table, statement, keys = {
        "orders": (ORDERS, insert(ORDERS), ORDER_KEYS),
        "order_updates": (ORDERS, update(ORDERS).where(ORDERS.c.client_order_id == bindparam("cid")).values(
            state=bindparam("state"), filled_qty=bindparam("filled_qty"), qty=bindparam("qty"),
            avg_fill_price=bindparam("avg_fill_price"), reason=bindparam("reason"), ts_last=bindparam("ts_last"),
            limit_price=bindparam("limit_price"), stop_price=bindparam("stop_price")), ORDER_UPDATE_KEYS),
        "events": (EVENTS, insert(EVENTS), EVENT_KEYS),
        "fills": (FILLS, insert(FILLS), FILL_KEYS),
        "points": (POINTS, insert(POINTS), POINT_KEYS),
        "signals": (SIGNALS, insert(SIGNALS), SIGNAL_KEYS),
        "checkpoint": (BOTS, update(BOTS).where(BOTS.c.id == "bot-1").values(checkpoint=bindparam("checkpoint")),
                       ("checkpoint",)),
    }[case]
    prepared = Prepared(engine, statement, keys)
    rng = random.Random(case)
    columns = {c.key: c for c in table.columns}
    for _ in range(300):
        values = {k: _value(columns["client_order_id" if k == "cid" else k], rng) for k in keys}
        assert prepared.row(values) == _sqlalchemy_tuple(engine, statement, keys, values)
    if case == "checkpoint":  # the statement's own literal (the bot's id) sits in its place
        assert prepared.row({"checkpoint": 7}) == (7, "bot-1")
    engine.dispose()


def test_a_missing_key_is_a_key_error_not_a_silent_none(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    upgrade(url)
    engine = make_engine(url)
    prepared = Prepared(engine, insert(EVENTS), EVENT_KEYS)
    with pytest.raises(KeyError):
        prepared.row({"client_order_id": "a", "state": "NEW", "ts": 1})
    engine.dispose()


@pytest.mark.parametrize("payload", [
    {"p_up": None, "p_down": None, "price": 1.38712},
    {"p_up": float("nan"), "p_down": float("inf"), "price": -float("inf")},
    {"p_up": 0.1 + 0.2, "p_down": 1e-320, "price": 12345678901234567890},
    {"ключ": "é\u2028\"\\", "nested": {"a": [1, 2.5, None, True, False, {"b": []}]}, "": {}},
    {},
])
def test_a_json_payload_is_the_text_json_dumps_writes(tmp_path, payload):
    """The signals' payload is encoded by a prebuilt json encoder (prepared._json_text): byte for
    byte json.dumps's text, non-finite floats, non-ASCII and nesting included; SQL NULL stays NULL."""
    import json

    url = f"sqlite:///{tmp_path / 's.db'}"
    upgrade(url)
    engine = make_engine(url)
    prepared = Prepared(engine, insert(SIGNALS), SIGNAL_KEYS)
    values = {k: None for k in SIGNAL_KEYS} | {"payload": payload}
    row = prepared.row(values)
    assert row[SIGNAL_KEYS.index("payload")] == json.dumps(payload)
    assert row == _sqlalchemy_tuple(engine, insert(SIGNALS), SIGNAL_KEYS, values)
    engine.dispose()
