"""Rate limits and sign-in throttling on the `limits` library (moving windows).

Storage comes from HUIQI_RATE_LIMIT_STORAGE: `memory://` (the default) keeps counts in each process,
so with several web workers a client may get up to workers × the limit; a shared storage such as
`redis://host:6379` (with the `redis` package installed) makes the limits hold across processes and hosts.
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, RateLimitItemPerSecond, parse
from limits.storage import Storage, storage_from_string
from limits.strategies import MovingWindowRateLimiter

from core.errors import TooManyRequests

DEFAULT_MESSAGE = "请求过于频繁，请 {wait} 秒后再试"


def client_key(request: object) -> str:
    """Return the rate-limit key of a request: the peer address (uvicorn rewrites it only for trusted proxies)."""
    client = getattr(request, "client", None)
    return client.host if client else "unknown"


def make_storage(uri: str) -> Storage:
    """Return the counter storage named by a `limits` storage URI (memory://, redis://…)."""
    storage = storage_from_string(uri)
    if not isinstance(storage, Storage):
        raise ValueError(f"rate-limit storage must be synchronous: {uri}")
    return storage


class RateLimiter:
    """Allow at most `limit` calls per `window` seconds per key (e.g. client address).

    `limit` may also be a `limits` string such as "10/15 minutes" (then `window` is ignored).
    """

    def __init__(
        self,
        limit: int | str,
        window: float = 60.0,
        *,
        storage: Storage | None = None,
        namespace: str = "rate",
        message: str = DEFAULT_MESSAGE,
    ) -> None:
        self.item: RateLimitItem = (
            parse(limit) if isinstance(limit, str) else RateLimitItemPerSecond(max(1, limit), max(1, int(window)))
        )
        self.limit = self.item.amount
        self.namespace = namespace
        self.message = message
        self._limiter = MovingWindowRateLimiter(storage or make_storage("memory://"))

    def wait_seconds(self, key: str) -> int:
        """Return how many seconds until key may call again (0 when it may call now)."""
        if self._limiter.test(self.item, self.namespace, key):
            return 0
        stats = self._limiter.get_window_stats(self.item, self.namespace, key)
        return max(1, math.ceil(stats.reset_time - time.time()))

    def refuse(self, wait: int) -> TooManyRequests:
        """Return the 429 error for a wait, with Retry-After."""
        return TooManyRequests(self.message.format(wait=wait), headers={"Retry-After": str(wait)})

    def hit(self, key: str) -> bool:
        """Count a call for key; return False when it was over the limit."""
        return self._limiter.hit(self.item, self.namespace, key)

    def check(self, key: str) -> None:
        """Record a call for key, or raise TooManyRequests with the wait in Retry-After."""
        if not self.hit(key):
            raise self.refuse(self.wait_seconds(key) or 1)

    def ensure_allowed(self, key: str) -> None:
        """Raise TooManyRequests when key is over the limit, without counting a call."""
        wait = self.wait_seconds(key)
        if wait:
            raise self.refuse(wait)

    def clear(self, key: str) -> None:
        """Forget key's calls (e.g. failed sign-ins after a successful one)."""
        self._limiter.clear(self.item, self.namespace, key)
