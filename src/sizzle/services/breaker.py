"""Per-provider health as the orchestrator sees it: a circuit breaker and the last error."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

FAILURES_TO_OPEN = 3
OPEN_FOR = timedelta(seconds=30)


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass
class ProviderStatus:
    """Timeouts and 5xx answers open the breaker; bad credentials switch the provider off."""

    name: str
    consecutive_failures: int = 0
    opened_at: datetime | None = None
    disabled_reason: str | None = None
    last_error: str | None = None
    last_latency_ms: float | None = None
    offer_count: int | None = None

    def state(self, now: datetime) -> BreakerState:
        if self.opened_at is None:
            return BreakerState.CLOSED
        if now - self.opened_at >= OPEN_FOR:
            return BreakerState.HALF_OPEN  # one call may go through and decide
        return BreakerState.OPEN

    def usable(self, now: datetime) -> bool:
        return self.disabled_reason is None and self.state(now) is not BreakerState.OPEN

    def record_success(self, *, latency_ms: float | None = None) -> None:
        self.consecutive_failures = 0
        self.opened_at = None
        if latency_ms is not None:
            self.last_latency_ms = latency_ms

    def record_failure(self, error: str, *, now: datetime) -> None:
        self.last_error = error
        self.consecutive_failures += 1
        if self.consecutive_failures >= FAILURES_TO_OPEN or self.opened_at is not None:
            self.opened_at = now  # a failed half-open try opens it again

    def disable(self, reason: str) -> None:
        self.disabled_reason = reason
        self.last_error = reason
