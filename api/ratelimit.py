"""A sliding-window rate limit per client and bucket, in process memory (one API process; several
replicas would move it to the shared store). Refusals are 429 with Retry-After."""

from __future__ import annotations

import math
import threading
import time
from collections import deque

from fastapi import Request

from api.errors import ApiError


class RateLimiter:
    def __init__(self, limit: int, window_s: float = 60.0) -> None:
        self.limit, self.window_s = limit, window_s
        self._hits: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, bucket: str, client: str) -> None:
        now = time.monotonic()
        with self._lock:
            hits = self._hits.setdefault((bucket, client), deque())
            while hits and hits[0] <= now - self.window_s:
                hits.popleft()
            if len(hits) >= self.limit:
                retry = max(1, math.ceil(hits[0] + self.window_s - now))
                raise ApiError(429, f"too many {bucket} requests; retry in {retry} s",
                               headers={"Retry-After": str(retry)})
            hits.append(now)


def limited(bucket: str):  # type: ignore[no-untyped-def]
    """A dependency that counts one request of `bucket` for the calling client."""

    def dependency(request: Request) -> None:
        client = request.client.host if request.client else "unknown"
        request.app.state.ctx.auth_limiter.hit(bucket, client)

    return dependency
