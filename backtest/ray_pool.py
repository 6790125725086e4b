"""Ray plumbing for research runs: reach the cluster, ship the bars once, keep the workers busy.

Why a pool of actors rather than a task per combination: one backtest of 100k bars takes
milliseconds, while a Ray task costs about a millisecond to schedule and the bars would travel
with every task. So each worker is an actor that receives the bars once (put in the object store
as plain numpy arrays, which workers on the same node read without copying) and keeps its
indicator cache between batches; the driver sends batches of combinations and collects them as
they finish, which is also what drives the progress bar.

Ray is imported inside the functions: `tickbridge backtest` and the input checks never pay for it.
"""

from __future__ import annotations

import hashlib
import math
import os
import socket
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from backtest.config import BacktestConfig
from backtest.data import BAR_COLUMNS
from backtest.evaluate import Evaluation, Evaluator
from engine.errors import ConfigError
from strategies.base import Strategy

Batch = tuple[list[dict[str, Any]], int, int | None]  # (combinations, first bar, end bar)
CONNECT_TIMEOUT_S = 2.0


def check_ray_address(address: str | None) -> None:
    """Refuse an address nothing listens on, in about two seconds instead of ray.init's minute.

    Accepts "host:port" (the GCS port of a running cluster, 6379 by default), "ray://host:port"
    (Ray Client, 10001 by default) and "auto" (a cluster already started on this machine).
    """
    if address is None or address == "auto":
        return
    target = address.removeprefix("ray://")
    host, sep, port_text = target.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ConfigError("ray-address", f"expected host:port or ray://host:port, got {address!r}")
    try:
        with socket.create_connection((host.strip("[]"), int(port_text)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise ConfigError("ray-address", f"cannot reach a Ray cluster at {address}: "
                                         f"{exc.strerror or exc.__class__.__name__}") from None


def numba_cache_dir() -> str:
    """A numba cache for the workers, keyed by the kernel's source and the money functions it
    compiles. numba loads the cached money functions by module name, which their compiled clones
    lack: a kernel compiled while its clones are already cached (after an edit, or by a second
    process racing the first) fails to load them. A cache per source version and per worker slot
    is written by one process from scratch, so each slot compiles once per version, then loads."""
    from backtest import fast_path
    from engine import money

    digest = hashlib.sha256()
    for module in (fast_path, money):
        digest.update(Path(module.__file__ or "").read_bytes())
    return str(Path(tempfile.gettempdir()) / "tickbridge-numba" / digest.hexdigest()[:16])


def default_workers() -> int:
    return max(1, os.cpu_count() or 1)


def pool_size(workers: int | None) -> int:
    """The workers asked for, or every CPU Ray has (the local machine's, or the cluster's)."""
    import ray

    return workers or max(1, int(ray.cluster_resources().get("CPU", 1)))


def batch_size(combinations: int, workers: int) -> int:
    """About eight batches per worker (a smooth progress bar, balanced ends), at most 64 each."""
    return max(1, min(64, math.ceil(combinations / (workers * 8))))


def batches(combos: Sequence[dict[str, Any]], size: int, start: int = 0, stop: int | None = None) -> list[Batch]:
    return [(list(combos[i:i + size]), start, stop) for i in range(0, len(combos), size)]


def frame_arrays(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """The bars as plain arrays: Ray shares numpy buffers between processes without copying."""
    arrays = {c: np.ascontiguousarray(frame[c].to_numpy(dtype=np.float64)) for c in BAR_COLUMNS}
    arrays["time"] = frame.index.as_unit("ns").asi8.copy()
    return arrays


def frame_from_arrays(arrays: dict[str, np.ndarray]) -> pd.DataFrame:
    index = pd.DatetimeIndex(pd.to_datetime(arrays["time"], unit="ns", utc=True), name="time")
    return pd.DataFrame({c: np.array(arrays[c]) for c in BAR_COLUMNS}, index=index)


class SweepWorker:
    """Lives in a Ray worker process: the bars and the evaluator are built once, then batches."""

    def __init__(self, arrays: dict[str, np.ndarray], strategy_cls: type[Strategy], config: BacktestConfig,
                 objective: str) -> None:
        self.evaluator = Evaluator(frame_from_arrays(arrays), strategy_cls, config, objective)

    def evaluate(self, combos: list[dict[str, Any]], start: int, stop: int | None) -> list[Evaluation]:
        return self.evaluator.evaluate_many(combos, start, stop)


@contextmanager
def ray_session(address: str | None, workers: int) -> Iterator[None]:
    """Connect to `address` (or start a local Ray with `workers` CPUs); shut down only what we
    started. A Ray that is already initialised (a notebook, the tests) is used as it is."""
    import ray

    if ray.is_initialized():
        yield
        return
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR"}
    if address is None:
        kwargs["num_cpus"] = workers
    else:
        import backtest
        import brokers
        import engine
        import strategies
        # the cluster's workers need this code; its dependencies must be installed there
        kwargs.update(address=address, runtime_env={"py_modules": [backtest, engine, strategies, brokers]})
    try:
        ray.init(**kwargs)
    except Exception as exc:  # ray raises ConnectionError, RuntimeError, ValueError... all mean "no cluster"
        raise ConfigError("ray-address", f"cannot start or join Ray ({address or 'local'}): {exc}") from None
    try:
        yield
    finally:
        ray.shutdown()


class WorkerPool:
    """`workers` SweepWorker actors sharing one copy of the bars in the object store.

    Each actor holds up to two batches at once, so it never waits for the driver between two.
    """

    IN_FLIGHT_PER_ACTOR = 2

    def __init__(self, frame: pd.DataFrame, strategy_cls: type[Strategy], config: BacktestConfig, objective: str,
                 workers: int) -> None:
        import ray

        arrays_ref = ray.put(frame_arrays(frame))
        remote_worker = ray.remote(num_cpus=1)(SweepWorker)
        cache = numba_cache_dir()
        self.actors = [remote_worker.options(runtime_env={"env_vars": {"NUMBA_CACHE_DIR": f"{cache}/{i}"}})
                       .remote(arrays_ref, strategy_cls, config, objective) for i in range(workers)]
        self.workers = workers
        # round robin (a0, a1, ..., a0, a1, ...): the first `workers` batches go to distinct actors. In
        # actor order (a0, a0, a1, a1) a warm-up batch per worker all went to a0, and a sweep of fewer
        # batches than 2 x workers ran on half the workers while the rest waited (and compiled later)
        self._idle = [a for _ in range(self.IN_FLIGHT_PER_ACTOR) for a in self.actors]
        self._in_flight: dict[Any, tuple[Any, Any]] = {}  # object ref -> (tag, actor)

    @property
    def free(self) -> bool:
        """True while another batch can start at once."""
        return bool(self._idle)

    @property
    def busy(self) -> int:
        return len(self._in_flight)

    def submit(self, batch: Batch, tag: Any) -> None:
        actor = self._idle.pop(0)
        combos, start, stop = batch
        self._in_flight[actor.evaluate.remote(combos, start, stop)] = (tag, actor)

    def next_done(self) -> tuple[Any, list[Evaluation]]:
        """The next batch to finish, with the tag it was submitted with."""
        import ray

        ready, _ = ray.wait(list(self._in_flight), num_returns=1)
        tag, actor = self._in_flight.pop(ready[0])
        self._idle.append(actor)
        return tag, ray.get(ready[0])

    def map(self, work: Sequence[Batch], on_done: Callable[[int], None] | None = None) -> list[Evaluation]:
        """Every batch's evaluations, in the order of `work`; `on_done(n)` after each batch."""
        results: list[list[Evaluation]] = [[] for _ in work]
        queue = list(enumerate(work))
        while queue or self._in_flight:
            while queue and self.free:
                position, batch = queue.pop(0)
                self.submit(batch, position)
            position, done = self.next_done()
            results[position] = done
            if on_done is not None:
                on_done(len(done))
        return [evaluation for batch in results for evaluation in batch]

    def close(self) -> None:
        import ray

        for actor in self.actors:
            ray.kill(actor)
