"""MetaTrader 5 ids and retry policy (brokers/mt5/mapping.py): pure functions, no terminal."""

from __future__ import annotations

import pytest

from brokers.mt5 import mapping as m


def test_a_bots_magic_is_stable_distinct_and_never_a_persons():
    magics = {m.magic_for(f"bot-{i}") for i in range(2000)}
    assert len(magics) == 2000
    assert m.magic_for("mt5-sma") == m.magic_for("mt5-sma")  # derived, not drawn: a restart keeps it
    assert all(0 < magic < 2**31 for magic in magics) and m.MANUAL_MAGIC not in magics


def test_an_oms_id_travels_sequence_first_so_a_truncated_comment_still_names_it():
    comment = m.comment_for("mt5-sma-00000012", "mt5-sma")
    assert comment == "12@mt5-sma"
    for kept in (3, 5, len(comment)):  # whatever the broker keeps of it, as long as "<seq>@" survives
        assert m.client_id_of(77, comment[:kept], 9001, 77, {}, "mt5-sma") == "mt5-sma-00000012"


def test_a_comment_cut_inside_the_sequence_names_nothing():
    assert m.client_id_of(77, "12", 9001, 77, {}, "mt5-sma") == "mt5-sma-venue-9001"  # ours, known by ticket


def test_long_bot_ids_still_fit_the_31_character_comment():
    comment = m.comment_for("a-very-long-bot-name-for-the-eurusd-book-00000001",
                            "a-very-long-bot-name-for-the-eurusd-book")
    assert len(comment) <= m.COMMENT_MAX and comment.startswith("1@")


def test_ids_of_other_shapes_travel_as_themselves_or_hashed():
    assert m.comment_for("c-1", "bot") == "c-1"
    hashed = m.comment_for("x" * 40)
    assert hashed.startswith("#") and len(hashed) == m.COMMENT_MAX
    assert m.comment_for("12@looks-like-a-sequence").startswith("#")  # cannot be mistaken for one


def test_who_an_order_belongs_to():
    assert m.client_id_of(0, "phone", 5, 77, {}, "bot") == "MT5-5"          # a person: external
    assert m.client_id_of(12345, "3@other", 5, 77, {}, "bot") is None        # another EA: not ours
    assert m.client_id_of(77, "bridge#881", 5, 77, {}, "bot") == "bot-venue-5"  # ours, rewritten beyond recognition
    assert m.client_id_of(77, "[sl 1.07120]", 6, 77, {}, "bot") == "bot-venue-6"  # the server's own, on our magic
    assert m.unnamed("bot-venue-6", "bot") and m.unnamed("MT5-5", "bot") and not m.unnamed("bot-00000003", "bot")
    assert m.client_id_of(77, "bridge#881", 5, 77, {}, "bot", {5: "bot-00000003"}) == "bot-00000003"
    assert m.client_id_of(77, "[sl 1.07120]", 6, 77, {}, None) == "MT5-6"   # the server's own order


@pytest.mark.parametrize("retcode,action", [(10004, m.Retry.RESEND), (10020, m.Retry.RESEND),
                                            (10021, m.Retry.RESEND), (10024, m.Retry.RESEND),
                                            (10012, m.Retry.LOOKUP), (10031, m.Retry.LOOKUP)])
def test_retcodes_that_are_not_final_map_to_a_retry(retcode, action):
    assert m.RETRY_POLICY[retcode] is action


@pytest.mark.parametrize("retcode", [10006, 10014, 10016, 10017, 10018, 10019, 10030])
def test_refusals_are_never_retried(retcode):
    assert retcode not in m.RETRY_POLICY


@pytest.mark.parametrize("tif,mask,expected", [("FOK", 1, 0), ("IOC", 2, 1), ("FOK", 2, None), ("IOC", 1, None)])
def test_ioc_and_fok_are_filling_policies_the_symbol_must_allow(tif, mask, expected):
    assert m.filling_for_tif(tif, mask) == expected
