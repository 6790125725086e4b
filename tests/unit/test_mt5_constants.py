"""The MetaTrader5 fake's constants equal the real module's, offline.

The table was extracted from the real wheel (tests/fixtures/mt5/README.md says how); the
networked twin of this check is tests/contract/test_mt5_fake_constants.py.
"""

from __future__ import annotations

import json
from pathlib import Path

from brokers.mt5 import mapping
from tests.fakes.mt5_fake import FakeMT5

TABLE = json.loads((Path(__file__).parents[1] / "fixtures" / "mt5" / "constants_5.0.6231.json").read_text())
REAL: dict[str, int] = TABLE["constants"]


def test_the_table_is_the_wheels_whole_constant_set():
    assert TABLE["origin"]["wheel"] == "metatrader5-5.0.6231-cp312-cp312-win_amd64.whl"
    assert len(REAL) > 200 and REAL["TRADE_ACTION_SLTP"] == 6 and REAL["TIMEFRAME_H4"] == 16388


def test_every_real_constant_is_in_the_fake_with_the_same_value():
    missing = sorted(name for name in REAL if not hasattr(FakeMT5, name))
    different = {name: (getattr(FakeMT5, name), value) for name, value in REAL.items()
                 if hasattr(FakeMT5, name) and getattr(FakeMT5, name) != value}
    assert not missing and not different


def test_the_fake_invents_no_constant():
    assert sorted(n for n in vars(FakeMT5) if n.isupper() and n not in REAL) == []


def test_the_adapters_own_numbers_are_the_modules():
    """The adapter hard-codes a few values (it cannot import the module on Linux)."""
    assert (mapping.RETCODE_PLACED, mapping.RETCODE_DONE, mapping.RETCODE_DONE_PARTIAL, mapping.RETCODE_TIMEOUT) == \
        (REAL["TRADE_RETCODE_PLACED"], REAL["TRADE_RETCODE_DONE"], REAL["TRADE_RETCODE_DONE_PARTIAL"],
         REAL["TRADE_RETCODE_TIMEOUT"])
    assert (mapping.FILLING_FOK, mapping.FILLING_IOC, mapping.FILLING_RETURN) == \
        (REAL["ORDER_FILLING_FOK"], REAL["ORDER_FILLING_IOC"], REAL["ORDER_FILLING_RETURN"])
    assert (mapping.EXECUTION_MARKET, mapping.EXECUTION_EXCHANGE) == \
        (REAL["SYMBOL_TRADE_EXECUTION_MARKET"], REAL["SYMBOL_TRADE_EXECUTION_EXCHANGE"])
    assert (mapping.ORDER_STATE_CANCELED, mapping.ORDER_STATE_REJECTED, mapping.ORDER_STATE_EXPIRED) == \
        (REAL["ORDER_STATE_CANCELED"], REAL["ORDER_STATE_REJECTED"], REAL["ORDER_STATE_EXPIRED"])
    real_retcodes = {v for k, v in REAL.items() if k.startswith("TRADE_RETCODE_")}
    assert set(mapping.RETRY_POLICY) <= real_retcodes
    assert real_retcodes - mapping.SUCCESS_RETCODES <= set(mapping.RETCODE_REASONS)
    from brokers.mt5 import adapter
    assert (adapter.ACTION_DEAL, adapter.ACTION_PENDING, adapter.ACTION_SLTP, adapter.ACTION_REMOVE) == \
        (REAL["TRADE_ACTION_DEAL"], REAL["TRADE_ACTION_PENDING"], REAL["TRADE_ACTION_SLTP"],
         REAL["TRADE_ACTION_REMOVE"])
