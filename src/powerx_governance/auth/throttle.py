"""Failed authentication, throttled per client address and per token prefix (moving windows, `limits`).

A client over either limit is refused with 429 and Retry-After *before* its token is checked,
so a lockout never tells a guesser which guess was right. Only failures count: a valid token
costs nothing. Each failure is logged with a fingerprint of the token (never the token) and
counted in /metrics. The windows live in this process; every instance throttles on its own.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from enum import StrEnum
from typing import Final

from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from powerx_governance.observability.metrics import Metrics

log = logging.getLogger("powerx.auth")
PREFIX_LENGTH: Final = 12  # what `token list` shows of a token: enough to tell tokens apart


class Channel(StrEnum):
    API = "api"  # a bearer token on an API request
    CONSOLE = "console"  # a token typed into the console's sign-in form


_FAILED_MESSAGE: Final = {Channel.API: "authentication failed", Channel.CONSOLE: "console sign-in failed"}


def parse_limit(text: str, variable: str) -> RateLimitItem:
    """`30/minute`, `100/hour`...; ValueError naming the environment variable otherwise."""
    try:
        return parse(text)
    except ValueError as exc:
        raise ValueError(f"{variable} must be a rate such as 30/minute, not {text!r}") from exc


def fingerprint(presented: str) -> str:
    """A stable, non-secret name for a presented token: tells repeated attempts apart in logs."""
    return "sha256:" + hashlib.sha256(presented.encode()).hexdigest()[:16]


class AuthThrottle:
    def __init__(self, per_address: RateLimitItem, per_token: RateLimitItem, metrics: Metrics) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._per_address, self._per_token, self._metrics = per_address, per_token, metrics

    def _windows(self, address: str, presented: str) -> list[tuple[RateLimitItem, str, str]]:
        return [
            (self._per_address, "address", address),
            (self._per_token, "token", presented[:PREFIX_LENGTH]),
        ]

    def retry_after(self, channel: Channel, address: str, presented: str) -> int | None:
        """Seconds until this client may try again, when it is locked out; None otherwise."""
        for limit, kind, key in self._windows(address, presented):
            if not self._limiter.test(limit, kind, key):
                reset_at, _ = self._limiter.get_window_stats(limit, kind, key)
                self._metrics.auth_throttled_total.labels(channel=channel.value).inc()
                log.warning(
                    "authentication throttled",
                    extra={"channel": channel.value, "client": address, "limit": kind},
                )
                return max(1, math.ceil(reset_at - time.time()))
        return None

    def failed(self, channel: Channel, address: str, presented: str) -> None:
        """Count a failed attempt against the client's address and the token's prefix."""
        for limit, kind, key in self._windows(address, presented):
            self._limiter.hit(limit, kind, key)
        self._metrics.auth_failures_total.labels(channel=channel.value).inc()
        log.warning(
            _FAILED_MESSAGE[channel],
            extra={"channel": channel.value, "client": address, "token_fingerprint": fingerprint(presented)},
        )
