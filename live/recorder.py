"""What a session consumed, kept for parity: var/sessions/<session_id>/ticks.log (+ ticks.parquet
at a clean stop) and meta.json.

Durable while it runs: every tick a bot reads is appended to ticks.log (one line, written with a
single os.write on an O_APPEND descriptor, before the bot acts on it), and meta.json is replaced
atomically at each start and control action. A session killed with SIGKILL can therefore be
replayed up to its last journaled input (the bot's checkpoint in the store); a line cut by the
kill has no newline and is dropped, as the paper venue's log does. A clean stop also writes the
ticks as parquet (zstd), which a replay prefers.

A session is one life of a BotManager (one `tickbridge run`). ticks.parquet holds every tick its
bots read, warm-up included (a resumed bot rebuilds its bars from the ticks before its checkpoint,
and a replay needs them too), one row per (symbol, sequence), zstd-compressed. meta.json says
which bots ran with which config and instrument, when the session started and stopped, the
control actions (cancel on stop, kill) each bot took and after which tick, so a replay can take
them at the same point, and, at each bot's stop, what its tick guard dropped per reason
(`ticks_dropped`) and how many new price levels it accepted (`tick_level_shifts`): the ticks file
keeps the dropped ticks too, so a replay can drop them again and a person can look at them. No
database table is needed: a session is an artifact, like a backtest.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from engine.market import Tick

TICKS_FILE = "ticks.parquet"
TICK_LOG = "ticks.log"
META_FILE = "meta.json"
COLUMNS = ("symbol", "seq", "ts", "bid", "ask", "last", "size")


def new_session_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def utc_now() -> str:
    """Microseconds: sessions are ordered by their start (parity gathers earlier sessions' actions)."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


class SessionRecorder:
    """Collects ticks (once per symbol and sequence, whichever bot reads them first) and bot meta."""

    def __init__(self, root: Path, session_id: str | None = None, meta: dict[str, Any] | None = None) -> None:
        self.session_id = session_id or new_session_id()
        self.path = Path(root) / self.session_id
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._seen: dict[str, set[int]] = {}
        self._columns: dict[str, list[Any]] = {k: [] for k in ("symbol", "seq", "ts", "bid", "ask", "last", "size")}
        self.meta: dict[str, Any] = {"session_id": self.session_id, "started": utc_now(), "stopped": None,
                                     "bots": {}, **(meta or {})}
        self._log = os.open(self.path / TICK_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.write_meta()

    def add(self, seq: int, tick: Tick) -> None:
        with self._lock:
            seen = self._seen.setdefault(tick.symbol, set())
            if seq in seen:
                return
            seen.add(seq)
            c = self._columns
            c["symbol"].append(tick.symbol)
            c["seq"].append(seq)
            c["ts"].append(tick.ts)
            c["bid"].append(tick.bid)
            c["ask"].append(tick.ask)
            c["last"].append(tick.last)
            c["size"].append(tick.size)
            # repr: the shortest text that reads back as the same float
            os.write(self._log, f"{tick.symbol}\t{seq}\t{tick.ts}\t{tick.bid!r}\t{tick.ask!r}\t{tick.last!r}\t"
                                f"{tick.size!r}\n".encode())

    def bot(self, bot_id: str, info: dict[str, Any]) -> None:
        with self._lock:
            entry = self.meta["bots"].setdefault(bot_id, {"events": []})
            entry.update(info)
        self.write_meta()

    def event(self, bot_id: str, seq: int, action: str, reason: str = "") -> None:
        with self._lock:
            self.meta["bots"].setdefault(bot_id, {"events": []})["events"].append(
                {"seq": seq, "action": action, "reason": reason})
        self.write_meta()

    def write_meta(self) -> None:
        with self._lock:
            text = json.dumps(self.meta, indent=2, default=str)
        tmp = self.path / (META_FILE + ".tmp")
        tmp.write_text(text)
        tmp.replace(self.path / META_FILE)

    def close(self) -> None:
        """Write the ticks and the stop time."""
        with self._lock:
            table = pa.table({
                "symbol": pa.array(self._columns["symbol"], pa.string()).dictionary_encode(),
                "seq": pa.array(self._columns["seq"], pa.int64()),
                "ts": pa.array(self._columns["ts"], pa.int64()),
                **{k: pa.array(self._columns[k], pa.float64()) for k in ("bid", "ask", "last", "size")},
            })
            self.meta["stopped"] = utc_now()
        pq.write_table(table, self.path / TICKS_FILE, compression="zstd")
        self.write_meta()
        os.close(self._log)


def read_session(root: Path, session_id: str) -> tuple[dict[str, Any], pa.Table]:
    """A session's meta and ticks: the parquet of a clean stop, else the tick log of a session that
    was killed (its complete lines)."""
    from engine.errors import ConfigError

    path = Path(root) / session_id
    if not (path / META_FILE).exists():
        raise ConfigError("session", f"no recorded session {session_id!r} under {root}")
    meta = json.loads((path / META_FILE).read_text())
    if (path / TICKS_FILE).exists():
        return meta, pq.read_table(path / TICKS_FILE)
    if not (path / TICK_LOG).exists():
        raise ConfigError("session", f"session {session_id!r} recorded no ticks")
    data = (path / TICK_LOG).read_bytes()
    lines = data[: data.rfind(b"\n") + 1].decode().splitlines()
    fields = [line.split("\t") for line in lines]
    return meta, pa.table({
        "symbol": pa.array([f[0] for f in fields], pa.string()).dictionary_encode(),
        "seq": pa.array([int(f[1]) for f in fields], pa.int64()),
        "ts": pa.array([int(f[2]) for f in fields], pa.int64()),
        **{k: pa.array([float(f[3 + j]) for f in fields], pa.float64())
           for j, k in enumerate(("bid", "ask", "last", "size"))},
    })
