"""The verification API's rate limit: a token bucket per service and worker process; a batch costs
one token per item."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from idp.verification_api.inputs import MAX_BATCH


class RateLimiter:
    """A token bucket per service (per worker process): ``rate()`` per second (the value in force:
    the system administrator may change it at run time, idp.runtime_settings ``api.rate_per_second``),
    ``burst`` at most (default twice the rate, at least one full batch)."""

    def __init__(self, rate: Callable[[], float], burst: float | None = None) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, service: str, cost: int) -> float:
        """0 when allowed; otherwise the seconds to wait."""
        rate = float(self.rate())
        burst = self.burst if self.burst is not None else max(rate * 2, MAX_BATCH)
        now = time.monotonic()
        with self._lock:
            tokens, at = self._buckets.get(service, (burst, now))
            tokens = min(burst, tokens + (now - at) * rate)
            if tokens >= cost:
                self._buckets[service] = (tokens - cost, now)
                return 0.0
            self._buckets[service] = (tokens, now)
            return (cost - tokens) / rate if rate > 0 else 3600.0

