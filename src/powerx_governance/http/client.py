"""HTTP requests to PowerX services with timeouts, capped bodies and retries (tenacity).

Retried: connection failures, timeouts, dropped connections, HTTP 408, 429 and 5xx, with
exponential backoff and full jitter, honouring `Retry-After` up to a cap. Never retried: any
other 4xx or 3xx, a body over its size limit. Every failed attempt is reported to an optional
`on_error(source_name, kind)` callback so the service can count source errors in its metrics.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from types import TracebackType
from typing import Any, Final, Self

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_base, wait_exponential, wait_random_exponential

from powerx_governance import __version__
from powerx_governance.errors import SourceError

ErrorCallback = Callable[[str, str], None]
"""`on_error(source_name, kind)`: called once per failed attempt, from worker threads too."""

_RETRIED_STATUSES: Final = frozenset({408, 429})
_MAX_DRAINED_BYTES: Final = 64 * 1024
_LOG: Final = logging.getLogger(__name__)


class FailureKind(StrEnum):
    """Why one attempt failed: the `kind` passed to `on_error` (a metrics label)."""

    CONNECT = "connect"
    TIMEOUT = "timeout"
    NETWORK = "network"
    TRANSPORT = "transport"
    SERVER_ERROR = "http_5xx"
    RATE_LIMITED = "http_429"
    REQUEST_TIMEOUT = "http_408"
    CLIENT_ERROR = "http_4xx"
    UNEXPECTED_STATUS = "http_other"
    TOO_LARGE = "too_large"


@dataclass(frozen=True, slots=True)
class HttpPolicy:
    """Timeouts (seconds) and retry schedule for one HTTP source."""

    connect_timeout: float = 3.0
    read_timeout: float = 10.0
    max_attempts: int = 5
    backoff_base: float = 0.2
    backoff_cap: float = 5.0
    jitter: bool = True
    max_retry_after: float = 30.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if min(self.connect_timeout, self.read_timeout) <= 0:
            raise ValueError("timeouts must be positive")
        if min(self.backoff_base, self.backoff_cap, self.max_retry_after) < 0:
            raise ValueError("backoff and Retry-After limits must not be negative")

    def timeout(self) -> httpx.Timeout:
        """The httpx timeout: `read_timeout` bounds each read and write, and the wait for a connection."""
        return httpx.Timeout(self.read_timeout, connect=self.connect_timeout)


class HttpSourceError(SourceError):
    """A request that failed for good (after its retries, or at once when not retryable)."""

    def __init__(
        self, source: str, *, method: str, url: str, detail: str, kind: FailureKind, attempts: int
    ) -> None:
        self.url = url
        self.detail = detail
        self.kind = kind
        self.attempts = attempts
        super().__init__(source, f"{self.summary}: {method} {url}")

    @property
    def summary(self) -> str:
        """What went wrong and how often it was tried, without the URL."""
        plural = "attempt" if self.attempts == 1 else "attempts"
        return f"{self.detail} after {self.attempts} {plural}"


class HttpStatusError(HttpSourceError):
    """The service answered with a non-2xx status."""

    def __init__(
        self,
        source: str,
        *,
        method: str,
        url: str,
        detail: str,
        kind: FailureKind,
        attempts: int,
        status: int,
    ) -> None:
        self.status = status
        super().__init__(source, method=method, url=url, detail=detail, kind=kind, attempts=attempts)


class HttpTransportError(HttpSourceError):
    """No usable answer: connection refused or reset, timeout, protocol error."""


class ResponseTooLargeError(HttpSourceError):
    """The answer's body is larger than the caller's limit."""


class _AttemptError(Exception):
    """One failed attempt; becomes a public HttpSourceError once retrying stops."""

    def __init__(
        self, kind: FailureKind, detail: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.status = status
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        return self.kind not in (
            FailureKind.TRANSPORT,
            FailureKind.CLIENT_ERROR,
            FailureKind.UNEXPECTED_STATUS,
            FailureKind.TOO_LARGE,
        )

    def public(self, source: str, method: str, url: str, attempts: int) -> HttpSourceError:
        common: dict[str, Any] = {
            "method": method,
            "url": url,
            "detail": self.detail,
            "kind": self.kind,
            "attempts": attempts,
        }
        if self.status is not None:
            return HttpStatusError(source, status=self.status, **common)
        if self.kind is FailureKind.TOO_LARGE:
            return ResponseTooLargeError(source, **common)
        return HttpTransportError(source, **common)


def retry_after_seconds(value: str | None, *, now: datetime) -> float | None:
    """Seconds asked for by a `Retry-After` header (delta-seconds or HTTP-date), None if unusable."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; a zone-less parse means "-0000"
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


class _BackoffOrRetryAfter(wait_base):
    """Exponential backoff (full jitter when asked), or the server's `Retry-After` when longer."""

    def __init__(self, policy: HttpPolicy) -> None:
        self._backoff: wait_base = (
            wait_random_exponential(multiplier=policy.backoff_base, max=policy.backoff_cap)
            if policy.jitter
            else wait_exponential(multiplier=policy.backoff_base, max=policy.backoff_cap)
        )
        self._max_retry_after = policy.max_retry_after

    def __call__(self, retry_state: RetryCallState) -> float:
        backoff = self._backoff(retry_state)
        failure = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(failure, _AttemptError) and failure.retry_after is not None:
            return max(backoff, min(failure.retry_after, self._max_retry_after))
        return backoff


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, _AttemptError) and exc.retryable


def _status_failure(response: httpx.Response) -> _AttemptError:
    status = response.status_code
    detail = f"HTTP {status} {response.reason_phrase}".rstrip()
    if status >= 500 or status in _RETRIED_STATUSES:
        kind = {429: FailureKind.RATE_LIMITED, 408: FailureKind.REQUEST_TIMEOUT}.get(
            status, FailureKind.SERVER_ERROR
        )
        hint = retry_after_seconds(response.headers.get("retry-after"), now=datetime.now(UTC))
        return _AttemptError(kind, detail, status=status, retry_after=hint)
    kind = FailureKind.CLIENT_ERROR if 400 <= status < 500 else FailureKind.UNEXPECTED_STATUS
    return _AttemptError(kind, detail, status=status)


def _transport_failure(exc: httpx.RequestError) -> _AttemptError:
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return _AttemptError(FailureKind.CONNECT, f"cannot connect ({detail})")
    if isinstance(exc, httpx.TimeoutException):
        return _AttemptError(FailureKind.TIMEOUT, f"timed out ({detail})")
    if isinstance(exc, httpx.NetworkError | httpx.RemoteProtocolError):
        return _AttemptError(FailureKind.NETWORK, f"connection failed ({detail})")
    return _AttemptError(FailureKind.TRANSPORT, detail)


def _read_capped(response: httpx.Response, limit: int) -> bytes:
    """The (decoded) body, refusing more than `limit` bytes before reading it all."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _AttemptError(FailureKind.TOO_LARGE, f"body of {declared} bytes is over the {limit} limit")
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > limit:
            raise _AttemptError(FailureKind.TOO_LARGE, f"body is over the {limit} byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


def _drain(response: httpx.Response) -> None:
    """Read a small error body so its connection goes back to the pool; a large one is dropped."""
    read = 0
    try:
        for chunk in response.iter_raw():
            read += len(chunk)
            if read > _MAX_DRAINED_BYTES:
                return
    except httpx.HTTPError:
        return  # the status is the failure that counts; this connection is simply not reused


def request_headers(token: str | None) -> dict[str, str]:
    """JSON in, our user agent, and the bearer token when there is one."""
    headers = {"Accept": "application/json", "User-Agent": f"powerx-governance/{__version__}"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


class RetryingClient:
    """A sync httpx client that applies an HttpPolicy; thread-safe; close it (or use `with`)."""

    def __init__(
        self,
        source: str,
        policy: HttpPolicy,
        *,
        headers: Mapping[str, str],
        on_error: ErrorCallback | None = None,
        max_connections: int = 10,
    ) -> None:
        self.source = source
        self.policy = policy
        self._on_error = on_error
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self._client = httpx.Client(headers=dict(headers), timeout=policy.timeout(), limits=limits)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the pooled connections."""
        self._client.close()

    def request(
        self,
        method: str,
        url: str,
        *,
        limit: int,
        params: Mapping[str, str | int] | None = None,
        json: Any = None,
    ) -> bytes:
        """The body of a 2xx answer, retrying as the policy says; HttpSourceError when it fails for good."""
        retrying = Retrying(
            stop=stop_after_attempt(self.policy.max_attempts),
            wait=_BackoffOrRetryAfter(self.policy),
            retry=retry_if_exception(_is_retryable),
            before_sleep=self._log_retry,
            reraise=True,
        )
        try:
            return retrying(self._attempt, method, url, limit, params, json)
        except _AttemptError as exc:
            attempts = int(retrying.statistics.get("attempt_number", 1))
            raise exc.public(self.source, method, url, attempts) from exc

    def _attempt(
        self, method: str, url: str, limit: int, params: Mapping[str, str | int] | None, json: Any
    ) -> bytes:
        try:
            with self._client.stream(method, url, params=params, json=json) as response:
                if not response.is_success:
                    _drain(response)
                    raise _status_failure(response)
                return _read_capped(response, limit)
        except httpx.RequestError as exc:
            raise self._reported(_transport_failure(exc)) from exc
        except _AttemptError as exc:
            raise self._reported(exc) from None

    def _reported(self, failure: _AttemptError) -> _AttemptError:
        if self._on_error is not None:
            self._on_error(self.source, failure.kind.value)
        return failure

    def _log_retry(self, retry_state: RetryCallState) -> None:
        failure = retry_state.outcome.exception() if retry_state.outcome else None
        delay = retry_state.next_action.sleep if retry_state.next_action else 0.0
        _LOG.info(
            "%s: %s; retry %d of %d in %.2f s",
            self.source,
            failure,
            retry_state.attempt_number,
            self.policy.max_attempts - 1,
            delay,
        )
