"""The paper venue's input log writes a tick's line without json.dumps (one per tick of a live
paper bot): the line must be the one json.dumps wrote, byte for byte, since a restart replays it,
and anything not five plain ints still goes through json.dumps."""

from __future__ import annotations

import json
from decimal import Decimal

from brokers.paper.durable import DurablePaperVenue
from engine.instrument import Instrument


def venue(tmp_path):
    return DurablePaperVenue(tmp_path / "v.log", Instrument("TEST", price_increment=Decimal("0.01")), Decimal(1000))


def test_a_tick_line_is_json_dumps_line_and_replays(tmp_path):
    durable = venue(tmp_path)
    ticks = [(0, 100, 101, 5, 1_700_000_000_000_000_000), (1, 99, 102, 0, 1_700_000_000_000_000_001),
             (7, 10**15, 10**15 + 1, 2**40, 2**62)]
    for tick in ticks:
        durable.on_tick(*tick)
    lines = (tmp_path / "v.log").read_bytes().splitlines(keepends=True)
    expected = [(json.dumps({"op": "tick", "seq": s, "bid": b, "ask": a, "size": z, "ts": t}, separators=(",", ":"))
                 + "\n").encode() for s, b, a, z, t in ticks]
    assert lines[-len(ticks):] == expected
    replayed = venue(tmp_path)  # a restart reads the log back: the last tick is known
    assert replayed.last_tick_seq == 7


def test_a_tick_of_other_types_takes_json_dumps(tmp_path):
    durable = venue(tmp_path)
    durable.on_tick(True, 100, 101, 5, 10)  # a bool is no plain int: json writes true, not 1
    assert (tmp_path / "v.log").read_bytes().splitlines()[-1] == \
        b'{"op":"tick","seq":true,"bid":100,"ask":101,"size":5,"ts":10}'
