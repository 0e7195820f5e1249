"""POSTing signed CloudEvents to a subscriber's URL.

The URL must pass the IM webhooks' allow-list (`webhooks.allow_hosts` and `require_https` of
the notification routes file), checked just before every request, addresses included. No
redirects are followed. Any answer but 2xx is a failure; `Retry-After` is passed on.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Final

import httpx

from powerx_governance.http.allow_list import AllowList
from powerx_governance.http.client import request_headers, retry_after_seconds
from powerx_governance.notifications.channels.interface import DestinationRefusedError, TransientChannelError
from powerx_governance.notifications.channels.webhook import Resolver, check_destination, resolve

CHANNEL: Final = "events"
_MAX_RESPONSE_BYTES: Final = 64 * 1024


class DeliveryError(Exception):
    """A request that failed; `permanent` when retrying cannot help (a refused destination, a bad URL)."""

    def __init__(self, detail: str, *, permanent: bool = False, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.permanent = permanent
        self.retry_after = retry_after


class EventPoster:
    """One shared httpx client (thread-safe), no keep-alive, no redirects; timeouts per request."""

    def __init__(self, resolver: Resolver = resolve) -> None:
        self._resolver = resolver
        self._client = httpx.Client(
            follow_redirects=False,
            headers=request_headers(None),
            limits=httpx.Limits(max_connections=20, max_keepalive_connections=0),
        )

    def check(self, url: str, allow: AllowList, *, require_https: bool) -> None:
        """Refuse a destination off the allow-list (permanent) or one that does not resolve (transient)."""
        try:
            check_destination(CHANNEL, url, allow, require_https=require_https, resolver=self._resolver)
        except DestinationRefusedError as exc:
            raise DeliveryError(exc.detail, permanent=True) from exc
        except TransientChannelError as exc:
            raise DeliveryError(exc.detail) from exc

    def post(self, url: str, body: bytes, headers: Mapping[str, str], *, timeout: httpx.Timeout) -> None:
        """Send one request; DeliveryError unless the answer is 2xx."""
        try:
            with self._client.stream(
                "POST", url, content=body, headers=dict(headers), timeout=timeout
            ) as answer:
                _drain(answer)
        except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from exc
        except httpx.HTTPError as exc:  # unsupported scheme, bad URL: will not improve by itself
            raise DeliveryError(f"{type(exc).__name__}: {exc}", permanent=True) from exc
        if not answer.is_success:
            hint = retry_after_seconds(answer.headers.get("retry-after"), now=datetime.now(UTC))
            raise DeliveryError(
                f"HTTP {answer.status_code} {answer.reason_phrase}".rstrip(), retry_after=hint
            )

    def close(self) -> None:
        self._client.close()


def _drain(answer: httpx.Response) -> None:
    """Read (a capped part of) the answer so the connection closes cleanly; only its status matters."""
    size = 0
    for chunk in answer.iter_bytes():
        size += len(chunk)
        if size > _MAX_RESPONSE_BYTES:
            return
