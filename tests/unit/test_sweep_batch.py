"""How a sweep hands its batches to the Ray workers: spread over every worker from the first one,
and the same evaluations whatever the batch size (the memory bound is per batch, not per sweep)."""

from __future__ import annotations

from pathlib import Path

import pytest

from backtest.config import make_config
from backtest.data import load_bars
from backtest.ray_pool import WorkerPool, batch_size, batches
from strategies import get_strategy

ray = pytest.importorskip("ray")
SPY = Path(__file__).resolve().parents[2] / "data" / "stocks" / "SPY_daily.csv"
SMA = get_strategy("sma_cross")


@pytest.fixture(scope="module")
def pool():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    pool = WorkerPool(load_bars(SPY).iloc[-1500:], SMA, make_config(path="fast", symbol="SPY"), "sharpe", workers=2)
    yield pool
    pool.close()
    ray.shutdown()


def test_the_first_batches_go_to_distinct_workers(pool):
    """Two batches on two workers run on both: in actor order both went to the first worker, so a
    warm-up batch per worker warmed one of them and a small sweep used half the pool."""
    combos = [{"fast": 5, "slow": 30}, {"fast": 10, "slow": 30}]
    for position, batch in enumerate(batches(combos, 1)):
        pool.submit(batch, position)
    actors = [actor for _, actor in pool._in_flight.values()]
    done = dict(pool.next_done() for _ in range(len(combos)))
    assert len(set(map(id, actors))) == 2
    assert [done[i][0].params for i in range(len(combos))] == combos


def test_batch_size_does_not_change_the_evaluations(pool):
    combos = [{"fast": f, "slow": s} for f in (5, 10, 15) for s in (30, 40, 50)]
    one_by_one = pool.map(batches(combos, 1))
    chunked = pool.map(batches(combos, batch_size(len(combos), pool.workers)))
    everything = pool.map(batches(combos, len(combos)))
    assert [e.stats for e in one_by_one] == [e.stats for e in chunked] == [e.stats for e in everything]
    assert [e.params for e in chunked] == combos
    assert batch_size(10_000, 2) == 64  # at most 64 combinations (their per-period returns) per batch
