"""A bot's write-ahead record: the order's rows, durable in one row before the venue call.

The write-ahead rule (engine/oms.py) is that an order is durable, with everything its bot recorded
before it, before any venue can have seen it. Writing those rows into their tables inside that
commit put eight pages into SQLite's WAL (the order, two indexes, its event and index, the
checkpoint's bots row, ...), ~40 of the ~120 us between a tick and the venue. The rule needs the
rows durable, not in their tables: so the write-ahead commit stores them as one record, a row of
`write_ahead` keyed by the bot (one page), and the commit right after the venue call (the
journal's `settle`) runs them into their tables and deletes the record, in one transaction.

What readers see: another process reads the order, its events and the bot's signal from their
tables once the second commit is made, a venue call after the write-ahead (before: at the
write-ahead). So a subscriber sees a bot's signal once the bot's own order is on its way (for a
paper bot at once; for a live venue, later by the venue's answer to the REST call), never before it.
The account's share of a bot with account limits is not in the record: it is written by the
write-ahead commit itself, so the account's other bots see it before the venue call, as before.

A crash between the two commits leaves the record in the table, and nothing is lost: the next
reader of the bot's books (its restart's load, a reset, the server finishing a kill) runs the
record into the tables first (`apply`, from engine/store/journal.py's settle_write_ahead). Whoever
deletes the record is the one who applies it, in the same transaction: a record is applied once,
even when two processes race for it.

The record holds each statement's name (its column keys where they vary) and the driver's parameter
tuples (text, integers, floats and NULLs: what engine/store/prepared.py binds), as MessagePack. It
is read back only by the names and keys the journal writes: anything else is refused
(WriteAheadUnreadable), never run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import threading
from functools import partial
from typing import Any

import msgpack

from engine.errors import StoreUnavailable

VERSION = 1
# MessagePack, not JSON: 1.4 us instead of 3.2 for an order's record, 200 bytes instead of 340, and
# exact for every value a parameter tuple holds (64-bit integers, float64, text, bytes); a value it
# cannot write (a Decimal, an integer past 64 bits) raises TypeError or OverflowError. Reading it
# back builds data only (no code, no objects: ext types come back as ExtType and are refused).
_PACKERS = threading.local()  # one Packer per bot thread: packb would allocate a 256 KiB buffer per call
_DECODE = partial(msgpack.unpackb, raw=False, use_list=True, strict_map_key=True)


def _ENCODE(value: Any) -> bytes:  # noqa: N802 - the module's one encoder, swapped by tests as such
    packer = getattr(_PACKERS, "packer", None)
    if packer is None:
        packer = _PACKERS.packer = msgpack.Packer(use_bin_type=True, buf_size=4096)
    try:
        return packer.pack(value)  # type: ignore[no-any-return]
    except BaseException:
        packer.reset()  # a value it could not write: drop the half-written buffer
        raise
# the types a parameter tuple may hold (engine/store/prepared.py's bind processors on SQLite)
_SCALARS = (str, int, float, type(None), bool, bytes)

Record = list[tuple[str, tuple[str, ...], list[tuple[Any, ...]]]]  # (statement name, keys, parameter tuples)


class WriteAheadUnreadable(StoreUnavailable):
    """A stored write-ahead record the journal cannot read back: the bot's books would miss what it
    holds (an order a venue may have), so the bot is not started until someone looks."""


def encode(record: Record, shapes: Mapping[str, Sequence[str] | frozenset[str]]) -> bytes:
    """The record as stored in `write_ahead.payload`: [version, name, keys, rows, name, keys, rows,
    ...], keys nil where `shapes` fixes them (half the bytes of an order's record). Raises
    TypeError, ValueError or OverflowError for a value it cannot hold exactly (the journal then
    writes the tables directly, as before)."""
    flat: list[Any] = [VERSION]
    for name, keys, rows in record:
        flat += (name, None if type(shapes[name]) is tuple else keys, rows)
    return _ENCODE(flat)


def decode(payload: bytes, shapes: Mapping[str, Sequence[str] | frozenset[str]], bot_id: str) -> Record:
    """The record `encode` wrote, checked against `shapes`: statement name -> its exact keys (a
    tuple) or the columns its keys must come from (a frozenset). Raises WriteAheadUnreadable."""
    try:
        data = _DECODE(payload)
        if not isinstance(data, list) or not data or data[0] != VERSION or len(data) % 3 != 1:
            raise ValueError("not a version-1 record")
        record: Record = []
        for at in range(1, len(data), 3):
            name, keys, rows = data[at:at + 3]
            shape = shapes.get(name) if isinstance(name, str) else None
            if shape is None:
                raise ValueError("a statement the journal does not write")
            if isinstance(shape, tuple):
                if keys is not None:
                    raise ValueError(f"{name}: unexpected keys")
                keys = list(shape)
            elif not (isinstance(keys, list) and keys and all(isinstance(k, str) for k in keys) and set(keys) <= shape):
                raise ValueError(f"{name}: unexpected keys")
            if not isinstance(rows, list) or not rows or not all(
                    isinstance(r, list) and all(type(v) in _SCALARS for v in r) for r in rows):
                raise ValueError(f"{name}: malformed rows")
            record.append((name, tuple(keys), [tuple(r) for r in rows]))
        return record
    except (ValueError, TypeError, msgpack.UnpackException) as error:  # msgpack's are mostly ValueErrors
        raise WriteAheadUnreadable(f"bot {bot_id}'s write-ahead record cannot be read back ({error}): its last "
                                   "order may be at the venue but not in the books; the record stays in the "
                                   "write_ahead table for inspection, and the bot does not start") from None
