"""The compiled confirming pass of infer_price_grid gives what the numpy chunk loop gave.

The oracle below is the numpy version it replaced (engine.instrument._off_grid chunk by chunk,
failures re-checked at each finer dp), run on data built to hit its corners: prices at several
precisions, float tails, failures at chunk starts and ends, a grid that must get finer midway,
prices that stay off the finest grid (rounded), and non-finite values among them.
"""

from __future__ import annotations

import numpy as np
import pytest

from engine import instrument as ins


def numpy_grid(prices: np.ndarray, max_dp: int | None = None) -> tuple[int, int]:
    finite = prices[np.isfinite(prices)]
    limit = ins.price_dp_limit(finite) if max_dp is None else max_dp
    sample = finite[:: max(1, len(finite) // 20_000)]
    dp = next((d for d in range(limit + 1) if ins._off_grid(sample, d).size == 0), limit)
    rounded = 0
    for start in range(0, len(finite), ins._CHUNK):
        off = ins._off_grid(finite[start:start + ins._CHUNK], dp)
        while off.size and dp < limit:
            dp += 1
            off = ins._off_grid(off, dp)
        rounded += int(off.size)
    return dp, rounded


def case(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 4 * ins._CHUNK))
    dp = int(rng.integers(0, 10))
    prices = np.round(rng.uniform(0.5, 5000.0, n), dp)
    for _ in range(int(rng.integers(0, 6))):  # a few finer prices, anywhere (chunk edges included)
        at = int(rng.choice([0, n - 1, min(n - 1, ins._CHUNK - 1), min(n - 1, ins._CHUNK), int(rng.integers(0, n))]))
        prices[at] = np.round(prices[at] + rng.uniform(0, 1), int(rng.integers(dp, 14)))
    if rng.random() < 0.3:  # float tails: computed prices with no precision of their own
        prices[rng.integers(0, n, int(rng.integers(1, 50)))] *= 1.0 + 1e-12 * rng.random()
    if rng.random() < 0.2:
        prices[rng.integers(0, n, 3)] = [np.nan, np.inf, -np.inf]
    return prices


@pytest.mark.parametrize("seed", range(40))
def test_the_compiled_pass_matches_the_numpy_loop(seed):
    prices = case(seed)
    expected_dp, expected_rounded = numpy_grid(prices)
    grid = ins.infer_price_grid(prices, max_dp=ins.price_dp_limit(prices[np.isfinite(prices)]))
    assert (grid.increment, grid.rounded) == (ins.Decimal(1).scaleb(-expected_dp), expected_rounded)


def test_a_grid_that_gets_finer_in_a_later_chunk_is_confirmed_once_and_counts_nothing_rounded():
    prices = np.full(3 * ins._CHUNK, 1.25)
    prices[2 * ins._CHUNK + 7] = 1.2345  # the sample misses it: the third chunk moves dp 2 -> 4
    assert numpy_grid(prices) == (4, 0)
    grid = ins.infer_price_grid(prices)
    assert grid.increment == ins.Decimal("0.0001") and grid.rounded == 0
