"""A token bucket for open endpoints (anonymous wake)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class TokenBucket:
    """``rate_per_min`` requests a minute on average, bursts of up to ``burst``."""

    rate_per_min: float
    burst: int
    tokens: float = -1.0
    updated: float = 0.0

    def allow(self, now: float) -> bool:
        if self.tokens < 0:
            self.tokens, self.updated = float(self.burst), now
        self.tokens = min(float(self.burst),
                          self.tokens + (now - self.updated) * self.rate_per_min / 60)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False

    def retry_after(self) -> float:
        """Seconds until the next token."""
        return max(0.0, (1 - self.tokens) * 60 / self.rate_per_min)
