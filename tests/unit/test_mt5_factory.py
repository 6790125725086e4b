"""brokers.factory gives each MT5 bot its own magic number (issue 16: it set none, so every bot
on an account shared TICKBRIDGE_MAGIC and saw the others' orders as its own)."""

from __future__ import annotations

from brokers.factory import EnvCredentials, make_adapter
from brokers.mt5.mapping import TICKBRIDGE_MAGIC, magic_for
from tests.fakes.mt5_fake import FakeMT5

CREDENTIALS = EnvCredentials({"TICKBRIDGE_ACCOUNT_FX_LOGIN": "5001", "TICKBRIDGE_ACCOUNT_FX_PASSWORD": "secret",
                              "TICKBRIDGE_ACCOUNT_FX_SERVER": "FakeBroker-Demo"})


def test_two_bots_on_one_account_get_two_stable_magic_numbers():
    fake = FakeMT5()
    a = make_adapter("mt5", "fx", ["EURUSD"], [CREDENTIALS], mt5_api=fake, bot_id="alpha")
    b = make_adapter("mt5", "fx", ["EURUSD"], [CREDENTIALS], mt5_api=fake, bot_id="beta")
    again = make_adapter("mt5", "fx", ["EURUSD"], [CREDENTIALS], mt5_api=fake, bot_id="alpha")
    assert a.magic == again.magic == magic_for("alpha") != b.magic == magic_for("beta")
    assert TICKBRIDGE_MAGIC not in (a.magic, b.magic) and a.bot_id == "alpha"
