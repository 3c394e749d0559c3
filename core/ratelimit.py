"""A small in-process sliding-window rate limiter for anonymous endpoints."""

from __future__ import annotations

import threading
import time
from collections import deque

from core.errors import TooManyRequests


class RateLimiter:
    """Allow at most `limit` calls per `window` seconds per key (e.g. client address)."""

    def __init__(self, limit: int, window: float = 60.0) -> None:
        self.limit = limit
        self.window = window
        self._calls: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, key: str) -> None:
        """Record a call for key, or raise TooManyRequests with the wait in Retry-After."""
        now = time.monotonic()
        with self._lock:
            calls = self._calls.setdefault(key, deque())
            while calls and calls[0] <= now - self.window:
                calls.popleft()
            if len(calls) >= self.limit:
                wait = max(1, int(calls[0] + self.window - now) + 1)
                raise TooManyRequests(f"请求过于频繁，请 {wait} 秒后再试", headers={"Retry-After": str(wait)})
            calls.append(now)
            if len(self._calls) > 10_000:  # forget idle clients so memory stays bounded
                for k in [k for k, v in self._calls.items() if not v or v[-1] <= now - self.window]:
                    del self._calls[k]
