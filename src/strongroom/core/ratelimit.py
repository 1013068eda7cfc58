"""Token-bucket rate limits per key (pure: the caller passes the time)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RateLimiter"]


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    """``rate`` requests per second per key with bursts up to ``burst``; ``rate=0`` is off.

    ``take`` answers 0.0 when the request may go ahead, else the seconds until it may.
    """

    def __init__(self, rate: float, burst: int, max_keys: int = 100_000) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._buckets: dict[str, _Bucket] = {}
        self._max_keys = max_keys

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def take(self, key: str, now: float, cost: float = 1.0) -> float:
        if self.rate <= 0:
            return 0.0
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._max_keys:
                self._evict(now)
            bucket = self._buckets[key] = _Bucket(self.burst, now)
        else:
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.rate)
            bucket.at = now
        if bucket.tokens >= cost:
            bucket.tokens -= cost
            return 0.0
        return (cost - bucket.tokens) / self.rate

    def peek(self, key: str, now: float) -> float:
        """Seconds until ``key`` may send again (0.0 if it may now), without spending."""
        bucket = self._buckets.get(key)
        if self.rate <= 0 or bucket is None:
            return 0.0
        tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.rate)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def _evict(self, now: float) -> None:
        """Drop buckets that have refilled (they hold no state worth keeping)."""
        full = [
            k for k, b in self._buckets.items() if b.tokens + (now - b.at) * self.rate >= self.burst
        ]
        for key in full:
            del self._buckets[key]
        if len(self._buckets) >= self._max_keys:
            self._buckets.clear()
