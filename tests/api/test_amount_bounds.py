"""Numbers a caller puts into the books are bounded (engine.amounts.Amount): cash of 1e100000000 or
a tick of 1e-1000000 would become raw integers of millions of digits (seconds of CPU per operation:
a denial of service through one request). Refused with 422 naming the field, as any bad value is;
an ordinary small tick and a large account still pass."""

from __future__ import annotations

from decimal import Decimal

import pytest

from backtest.config import make_config
from engine.amounts import bounded
from engine.errors import ConfigError
from tests.api.conftest import SMA

HOSTILE = ["1e100000000", "1e16", "1e-19", "1e-1000000"]


@pytest.mark.parametrize("value", HOSTILE)
def test_a_bot_with_an_absurd_cash_or_increment_is_422_naming_it(api, value):
    ann = api.user("ann", "trader")
    for field in ("cash", "price_increment", "size_increment"):
        response = api.client.post("/api/v1/bots", json={"id": "b1", **SMA, field: value}, headers=ann)
        assert response.status_code == 422, (field, response.text)
        assert response.json()["error"]["field"] == field
    assert api.client.get("/api/v1/bots", headers=ann).json() == []


def test_a_backtest_config_refuses_them_too_and_keeps_ordinary_values():
    for field in ("cash", "price_increment", "min_fee", "commission_per_order"):
        for value in HOSTILE:
            with pytest.raises(ConfigError) as refused:
                make_config(**{field: value})
            assert refused.value.field == field
    assert make_config(cash="999999999999999").cash == Decimal("999999999999999")
    assert make_config(price_increment="0.000000000000000001").price_increment == Decimal("1e-18")
    assert bounded(Decimal(0)) == 0

