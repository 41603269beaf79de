"""A sliding-window request limit, switched on per provider to emulate its rate limiting."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field


@dataclass
class RateLimit:
    limit: int = 0  # requests allowed per window; 0 switches limiting off
    window: float = 60.0  # seconds
    refused: int = 0  # requests answered with the rate-limit status so far
    _seen: deque = field(default_factory=deque)

    def hit(self) -> float | None:
        """Count one request; None if allowed, else seconds until the window has room."""
        if self.limit <= 0:
            return None
        now = time.monotonic()
        while self._seen and self._seen[0] <= now - self.window:
            self._seen.popleft()
        if len(self._seen) >= self.limit:
            self.refused += 1
            return max(0.0, self._seen[0] + self.window - now)
        self._seen.append(now)
        return None

    def remaining(self) -> int:
        return max(0, self.limit - len(self._seen))
