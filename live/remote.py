"""ProcessBots: the BotControl protocol over a BotManager that runs in a child process.

Why: bots and the control API in one process share one GIL. Measured (docs/benchmarks.md, "API
under load"): with a bot replaying as fast as it can, 10 API clients cut the bot to 7 % of its
idle tick rate, and the bot cut the API to ~20 requests/s. In a process of its own, a bot's tick
rate does not depend on how many requests the API is serving, and the API's workers and database
pool serve requests only.

The child builds its manager with `factory` (default BotManager.from_env: the environment of the
server) and serves calls over a pipe. Calls may come from any thread of the parent; each carries
an id, and one reader thread hands answers back, so a status() is never stuck behind a start()
that is reconciling: in the child, status and running are answered at once, the others on a
thread of their own. An exception raised in the child is raised again in the parent as the same
class with the same attributes (ConfigError keeps its field, UnknownBot its bot id).

Stopping: close() asks the child to close its manager (every bot stopped cleanly, the session
recorded) and waits for it to exit. The child ignores SIGINT and SIGTERM: a Ctrl-C in a terminal
reaches the whole process group, and the parent, not the signal, decides when bots stop. If the
parent dies without closing, the pipe ends and the child closes its manager by itself.
"""

from __future__ import annotations

import gc
import importlib
import itertools
import multiprocessing
import pickle
import signal
import threading
from concurrent.futures import Future
from typing import Any, Callable

from engine.errors import TickbridgeError
from live.config import BotConfig

CALLS = frozenset({"start", "stop", "kill", "resume", "reset", "status", "running", "configure", "bots", "summary",
                   "bars", "finish_kills"})
IMMEDIATE = frozenset({"status", "running", "bots", "summary", "bars"})  # answered on the child's reader thread
CLOSE_TIMEOUT_S = 300.0  # stopping every bot may wait on each one's venue


class RuntimeGone(TickbridgeError):
    """The runtime's process ended (crashed, or was closed): no bot can be reached through it."""


class RemoteError(TickbridgeError):
    """An exception of the child's that could not be rebuilt here; its message is kept."""


def default_factory() -> Any:
    from live.manager import BotManager

    return BotManager.from_env()


class ProcessBots:
    """A BotControl whose bots run in a child process. Use as a context manager, or close()."""

    def __init__(self, factory: Callable[[], Any] = default_factory, start_method: str = "spawn") -> None:
        context = multiprocessing.get_context(start_method)
        self._conn, child_conn = context.Pipe()
        self.process = context.Process(target=_serve, args=(child_conn, factory), name="tickbridge-runtime",
                                       daemon=False)
        self.process.start()
        child_conn.close()
        self._ids = itertools.count(1)
        self._pending: dict[int, Future[Any]] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._reader = threading.Thread(target=self._read, name="runtime-replies", daemon=True)
        self._reader.start()
        self._call("running")  # the child is up and its manager built (raises what building raised)

    @property
    def pid(self) -> int | None:
        return self.process.pid

    # -- BotControl ---------------------------------------------------------------------------------
    def start(self, config: BotConfig) -> None:
        self._call("start", config)

    def stop(self, bot_id: str) -> None:
        self._call("stop", bot_id)

    def kill(self, bot_id: str, reason: str) -> None:
        self._call("kill", bot_id, reason)

    def resume(self, bot_id: str) -> None:
        self._call("resume", bot_id)

    def reset(self, bot_id: str, actor: str) -> dict[str, Any]:
        return self._call("reset", bot_id, actor)  # type: ignore[no-any-return]

    def status(self, bot_id: str) -> dict[str, Any]:
        return self._call("status", bot_id)  # type: ignore[no-any-return]

    def bars(self, bot_id: str, keep: int, since: int | None = None) -> dict[str, Any]:
        return self._call("bars", bot_id, keep, since)  # type: ignore[no-any-return]

    def running(self) -> list[str]:
        if self._closed:
            return []
        return self._call("running")  # type: ignore[no-any-return]

    # -- the rest -----------------------------------------------------------------------------------
    def configure(self, function: Callable[..., None], *args: Any) -> None:
        """Run `function(manager, *args)` in the child: `function` must be importable by name
        there (a module-level function), and its arguments picklable."""
        self._call("configure", function, args)

    def bots(self) -> list[str]:
        return self._call("bots")  # type: ignore[no-any-return]

    def summary(self, bot_id: str) -> dict[str, Any]:
        return self._call("summary", bot_id)  # type: ignore[no-any-return]

    def finish_kills(self) -> list[str]:
        """BotManager.finish_kills, in the child."""
        return self._call("finish_kills")  # type: ignore[no-any-return]

    def close(self, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
        """Stop every bot cleanly (in the child), then end the child."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            done: Future[Any] = Future()
            self._pending[0] = done
            try:
                self._conn.send((0, "close", ()))
            except (OSError, ValueError):
                done.set_result(None)
        try:
            done.result(timeout_s)
        except Exception:  # the child died first: nothing left to close there
            pass
        self.process.join(timeout_s)
        if self.process.is_alive():  # pragma: no cover - a bot that never stops (it ignores SIGTERM)
            self.process.kill()
            self.process.join(10)
        self._conn.close()

    def __enter__(self) -> "ProcessBots":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- plumbing -----------------------------------------------------------------------------------
    def _call(self, method: str, *args: Any) -> Any:
        future: Future[Any] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeGone("the bot runtime is closed")
            call_id = next(self._ids)
            self._pending[call_id] = future
            try:
                self._conn.send((call_id, method, args))
            except (OSError, ValueError, BrokenPipeError):
                self._pending.pop(call_id, None)
                raise RuntimeGone("the bot runtime's process is gone") from None
        return future.result()

    def _read(self) -> None:
        while True:
            try:
                call_id, ok, payload = self._conn.recv()
            except (EOFError, OSError):
                break
            with self._lock:
                future = self._pending.pop(call_id, None)
            if future is None:
                continue
            if ok:
                future.set_result(payload)
            else:
                future.set_exception(_rebuild(payload))
        with self._lock:  # the child is gone: whoever still waits gets told so
            pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(RuntimeGone("the bot runtime's process ended"))


def _serve(conn: Any, factory: Callable[[], Any]) -> None:
    """The child: build the manager, answer calls until told to close (or the parent is gone)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    send_lock = threading.Lock()

    def reply(call_id: int, ok: bool, payload: Any) -> None:
        with send_lock:
            try:
                conn.send((call_id, ok, payload))
            except (OSError, ValueError):  # the parent is gone
                pass

    try:
        manager = factory()
    except BaseException as exc:
        # answer the first call (the constructor's) with the failure, then end
        try:
            call_id, _method, _args = conn.recv()
            reply(call_id, False, _portable(exc))
        except (EOFError, OSError):
            pass
        return

    def run(call_id: int, method: str, args: tuple[Any, ...]) -> None:
        try:
            if method == "configure":
                function, function_args = args
                result = function(manager, *function_args)
            else:
                result = getattr(manager, method)(*args)
            reply(call_id, True, result)
        except BaseException as exc:
            reply(call_id, False, _portable(exc))

    close_id: int | None = None
    while True:
        try:
            call_id, method, args = conn.recv()
        except (EOFError, OSError):
            break
        if method == "close":
            close_id = call_id
            break
        if method not in CALLS:
            reply(call_id, False, _portable(RemoteError(f"unknown runtime call {method!r}")))
        elif method in IMMEDIATE:
            run(call_id, method, args)
        else:
            threading.Thread(target=run, args=(call_id, method, args), name=f"runtime-{method}", daemon=True).start()
    try:
        manager.close()
    finally:
        if close_id is not None:
            reply(close_id, True, None)
        conn.close()
    # everything is stopped, flushed and recorded: spare the interpreter's last garbage sweep over
    # all that pandas & co. allocated (1-2 s on a busy machine), which only delays the server's exit
    gc.freeze()


def _portable(exc: BaseException) -> tuple[str, str, tuple[Any, ...], dict[str, Any], str]:
    """An exception as plain data: class (module, name), args, attributes, message. Exceptions
    whose __init__ takes other arguments than their args (ConfigError(field, message)) do not
    survive pickle's default route, so they are rebuilt from their attributes instead."""
    attrs: dict[str, Any] = {}
    for key, value in vars(exc).items():
        try:
            pickle.dumps(value)
        except Exception:
            continue
        attrs[key] = value
    args: tuple[Any, ...] = ()
    try:
        pickle.dumps(exc.args)
        args = exc.args
    except Exception:
        pass
    return type(exc).__module__, type(exc).__qualname__, args, attrs, str(exc)


def _rebuild(data: tuple[str, str, tuple[Any, ...], dict[str, Any], str]) -> BaseException:
    module, name, args, attrs, message = data
    try:
        cls: Any = importlib.import_module(module)
        for part in name.split("."):
            cls = getattr(cls, part)
        if not (isinstance(cls, type) and issubclass(cls, Exception)):
            raise TypeError(name)
        exc = cls.__new__(cls)
        exc.args = args
        exc.__dict__.update(attrs)
        return exc  # type: ignore[no-any-return]
    except Exception:
        return RemoteError(f"{name}: {message}")
