"""A bot's write-ahead record: the order's rows, durable in one append before the venue call.

The write-ahead rule (engine/oms.py) is that an order is durable, with everything its bot recorded
before it, before any venue can have seen it. Writing those rows into their tables in a commit of
their own put eight pages into SQLite's WAL (the order, two indexes, its event and index, the
signal and its index, the bots row) between a tick and the venue; one row in a table was still a
SQLite transaction (its locks, two writes per page, ~25 us in the bot's loop). The rule needs the
rows durable, not in their tables: so the write-ahead appends them, as one framed record, to the
bot's record log, a file beside the SQLite store (`log_path`), with one write(2); the commit right
after the venue call (the journal's `settle`) runs them into their tables and moves the bot's
`write_ahead.settled` mark to the record's sequence number, in one transaction.

Durability is SQLite's own with synchronous=NORMAL: a write(2) that returned survives a killed
process (the page cache is the kernel's), a power loss may take the last records, as it may take
the last WAL commits. A log deleted under the running bot is noticed after each append (its link
count): the bot stops before the venue call, as it does for a replaced store file.

What readers see: another process reads the order, its events and the bot's signal from their
tables once the settle is committed, a venue call after the write-ahead. So a subscriber sees a
bot's signal once the bot's own order is on its way (for a paper bot at once; for a live venue,
later by the venue's answer), never before it. The account's share of a bot with account limits
is committed to the store before the venue call, as before (after the record is appended).

A crash between the append and the settle leaves records past the settled mark, and nothing is
lost: the next reader of the bot's books (its restart's load, a reset, the API, the manager) runs
them into the tables first (engine/store/journal.py's settle_write_ahead). A record is applied by
the transaction that moves the mark past it (UPDATE ... WHERE settled < seq): once, even when two
processes race for it. Only the bot's own runtime writes or truncates its log (truncated once it
holds only settled records and passed LOG_LIMIT bytes); readers only read it.

A record is [magic, length, crc32, sequence] + payload. A write cut short by a crash leaves a torn
last record, which was never followed by a venue call: it is ignored. A bad record with good ones
after it, or sequence numbers that do not rise (two runtimes appending), is corruption: refused
(WriteAheadUnreadable), kept, never run. The payload holds each statement's name (its column keys
where they vary) and the driver's parameter tuples (what engine/store/prepared.py binds), as
MessagePack, read back only by the names and keys the journal writes.
"""

from __future__ import annotations

import hashlib
import os
import struct
import threading
import zlib
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
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


MAGIC = b"TBWA"
_HEADER = struct.Struct("<4sIIQ")  # magic, payload length, crc32 of sequence + payload, sequence
LOG_LIMIT = 1 << 20  # bytes of settled records after which the runtime truncates its log


def _crc(seq: int, payload: bytes) -> int:
    return zlib.crc32(payload, zlib.crc32(seq.to_bytes(8, "little")))


def log_path(database: Path, bot_id: str) -> Path:
    """The record log of `bot_id` beside the SQLite store `database`: named by a hash of the id,
    so no bot name reaches the file system as a path."""
    digest = hashlib.sha256(bot_id.encode()).hexdigest()[:32]
    return database.parent / f"{database.name}-write-ahead" / f"{digest}.log"


class RecordLog:
    """One bot's record log: appended by its runtime, read by anyone (module docstring)."""

    __slots__ = ("path", "bot_id", "_fd", "size")

    def __init__(self, database: Path, bot_id: str) -> None:
        self.path = log_path(database, bot_id)
        self.bot_id = bot_id
        self._fd: int | None = None
        self.size = 0  # bytes this writer knows the log to hold (appends since open or truncate)

    def append(self, seq: int, payload: bytes) -> None:
        """Write one record with one write(2); raise StoreUnavailable if it did not all reach the
        log or the log is no longer linked where readers look."""
        fd = self._fd
        if fd is None:
            fd = self._open()
        frame = _HEADER.pack(MAGIC, len(payload), _crc(seq, payload), seq) + payload
        try:
            written = os.write(fd, frame)
            linked = os.fstat(fd).st_nlink > 0
        except OSError:  # the disk, the file system: the record is not where a restart looks
            written, linked = -1, False
        if written != len(frame) or not linked:
            self.close()  # a torn or lost record: nothing more goes after it (the bot stops here)
            raise StoreUnavailable(f"bot {self.bot_id}'s write-ahead record did not reach its log (disk full, "
                                   "or the log was deleted): trading stopped before the venue call")
        self.size += written

    def _open(self) -> int:
        try:
            return self._open_at_end()
        except OSError:  # no directory or file we may create: trading stops before the venue call
            raise StoreUnavailable(f"bot {self.bot_id}'s write-ahead log cannot be opened beside the store: "
                                   "trading stopped before the venue call") from None

    def _open_at_end(self) -> int:
        self.path.parent.mkdir(mode=0o700, exist_ok=True)
        fd = self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0),
                                0o600)
        whole = self._scan()[1]
        if os.fstat(fd).st_size > whole:
            os.ftruncate(fd, whole)  # a torn last record (a crash in its write, no venue call after it): cut off
        self.size = whole
        return fd

    def truncate_settled(self) -> None:
        """Drop every record, all of them this writer's and settled (the caller's word), unless the
        log holds more than this writer appended: then another runtime appends too (a lease lost
        and taken over), and its records stay (the next reader refuses the log, its numbers no
        longer rising, which is the point)."""
        fd = self._fd
        if fd is not None and os.fstat(fd).st_size == self.size:
            os.ftruncate(fd, 0)
            self.size = 0

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def __del__(self) -> None:  # a journal dropped without close() (tests, tools) gives its descriptor back
        try:
            self.close()
        except OSError:
            pass

    def read(self) -> list[tuple[int, bytes]]:
        """Every whole record, in order, as (sequence, payload); a torn last record is left out.
        Raises WriteAheadUnreadable on corruption (module docstring)."""
        return self._scan()[0]

    def read_seen(self) -> tuple[list[tuple[int, bytes]], int]:
        """`read`, and how many bytes the file held when read, a torn last record's included: what a
        reader records as settled (`settled_size`), so the next reader's stat finds the file
        unchanged and reads nothing (a crash's torn bytes stay until the bot's restart cuts them)."""
        records, _, seen = self._scan()
        return records, seen

    def _scan(self) -> tuple[list[tuple[int, bytes]], int, int]:
        """`read`, where the whole records end, and the file's size as read."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return [], 0, 0
        records: list[tuple[int, bytes]] = []
        at, size, last = 0, len(data), 0
        while at < size:
            if size - at < _HEADER.size:
                break  # a torn header: the last write, cut short
            magic, length, crc, seq = _HEADER.unpack_from(data, at)
            end = at + _HEADER.size + length
            if magic != MAGIC:
                raise self._unreadable("a record without its mark")
            if end > size:
                break  # a torn payload: the last write, cut short
            payload = data[at + _HEADER.size:end]
            if _crc(seq, payload) != crc:
                if end == size:
                    break  # the last write, its bytes not all there
                raise self._unreadable("a record whose checksum fails")
            if seq <= last:
                raise self._unreadable("sequence numbers that do not rise (two runtimes appended)")
            records.append((seq, payload))
            last, at = seq, end
        return records, at, size

    def _unreadable(self, what: str) -> WriteAheadUnreadable:
        return WriteAheadUnreadable(f"bot {self.bot_id}'s write-ahead log holds {what}: its last orders may be at "
                                    "the venue but not in the books; the log stays as it is for inspection, and "
                                    "the bot does not start")
